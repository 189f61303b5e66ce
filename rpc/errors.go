package rpc

import (
	"errors"
	"fmt"

	"github.com/netmesh/netmesh/identity"
)

// Status is the code of a failed call, carried by an error frame. Codes
// below StatusAppMin belong to package rpc; StatusAppMin through 0xFFFF are
// the application's (StatusBadRequest and StatusHandlerError are the two
// that typed handlers use).
type Status uint16

// Status codes.
const (
	// StatusOK is never sent: success has its own frames.
	StatusOK Status = 0
	// StatusUnknownService: the node serves no such service.
	StatusUnknownService Status = 1
	// StatusTooLarge: the request exceeds the server's MaxRequestSize.
	StatusTooLarge Status = 2
	// StatusMalformed: the server could not parse the request frame.
	StatusMalformed Status = 3
	// StatusUnavailable: the server is closing or at its MaxConcurrent
	// limit; the handler did not run, so the call is safe to send
	// elsewhere.
	StatusUnavailable Status = 4
	// StatusInternal: the handler panicked.
	StatusInternal Status = 5
	// StatusWrongMode: a unary call to a streaming service or the reverse.
	StatusWrongMode Status = 6
	// StatusPermissionDenied: the service requires a group the caller's
	// membership certificate does not name (RequireGroups); the handler
	// did not run.
	StatusPermissionDenied Status = 7

	// StatusAppMin is the first application status.
	StatusAppMin Status = 0x8000
	// StatusBadRequest: the handler could not decode the request (typed
	// handlers answer it for a body their codec rejects).
	StatusBadRequest Status = 0x8000
	// StatusHandlerError: the handler failed (typed and raw handlers
	// answer it for an error that is not an *Error).
	StatusHandlerError Status = 0x8001
)

// String returns the status's name, or its number in hex for application
// codes without one.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusUnknownService:
		return "unknown service"
	case StatusTooLarge:
		return "request too large"
	case StatusMalformed:
		return "malformed request"
	case StatusUnavailable:
		return "unavailable"
	case StatusInternal:
		return "internal error"
	case StatusWrongMode:
		return "wrong call mode"
	case StatusPermissionDenied:
		return "permission denied"
	case StatusBadRequest:
		return "bad request"
	case StatusHandlerError:
		return "handler error"
	}
	return fmt.Sprintf("status %#04x", uint16(s))
}

// Kind is the stable category of an *Error.
type Kind uint8

// Error kinds.
const (
	// KindNoRoute: no session or route leads to the node (Err says why).
	KindNoRoute Kind = iota + 1
	// KindNoResponders: no node advertises the service, or every one that
	// does is unhealthy (open circuit breakers).
	KindNoResponders
	// KindTimeout: the caller's deadline passed before the reply.
	KindTimeout
	// KindCancelled: the caller's context was cancelled.
	KindCancelled
	// KindServer: the server answered with an error Status and Message.
	KindServer
	// KindTransport: the stream failed (reset by the peer's mesh, peer
	// gone, malformed reply).
	KindTransport
	// KindCodec: a typed call could not encode its request or decode the
	// reply. (A server that cannot decode a typed request answers
	// StatusBadRequest instead.)
	KindCodec
	// KindInvalidRequest: the call was refused before anything was sent:
	// an invalid service name (ErrInvalidService) or a request larger than
	// ClientOptions.MaxMessageSize (ErrTooLarge).
	KindInvalidRequest
	// KindCircuitOpen: the node's circuit breaker is open.
	KindCircuitOpen
)

// String returns the kind's name, for example "no responders".
func (k Kind) String() string {
	switch k {
	case KindNoRoute:
		return "no route"
	case KindNoResponders:
		return "no responders"
	case KindTimeout:
		return "timeout"
	case KindCancelled:
		return "cancelled"
	case KindServer:
		return "server error"
	case KindTransport:
		return "transport"
	case KindCodec:
		return "codec"
	case KindInvalidRequest:
		return "invalid request"
	case KindCircuitOpen:
		return "circuit open"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Error is every error a call returns, and what a handler returns to choose
// the status the caller sees (see Errorf). Use errors.As to read it.
type Error struct {
	Kind Kind
	// Service is the service called; empty in a handler's own error.
	Service string
	// Node is the node called; zero if none was chosen.
	Node identity.NodeID
	// Status and Message are the server's answer (KindServer).
	Status  Status
	Message string
	// Err is the underlying error: context.DeadlineExceeded for a timeout,
	// context.Canceled when cancelled, a mesh or stream error, a codec
	// error, or nil.
	Err error
}

// Errorf returns an *Error of kind KindServer with the status and a
// formatted message, for a handler to return.
func Errorf(status Status, format string, args ...any) error {
	return &Error{Kind: KindServer, Status: status, Message: fmt.Sprintf(format, args...)}
}

// Error implements error.
func (e *Error) Error() string {
	s := "rpc"
	if e.Service != "" {
		s += " " + e.Service
	}
	if e.Node != (identity.NodeID{}) {
		s += " on " + e.Node.Short()
	}
	s += ": " + e.Kind.String()
	if e.Kind == KindServer {
		s += fmt.Sprintf(" %d (%s)", uint16(e.Status), e.Status)
		if e.Message != "" {
			s += ": " + e.Message
		}
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Sentinel errors.
var (
	// ErrTooLarge is the Err of a KindInvalidRequest error for a request
	// over ClientOptions.MaxMessageSize.
	ErrTooLarge = errors.New("rpc: request too large")
	// ErrCircuitOpen is returned by CircuitBreaker.Allow while the breaker
	// is open, and is the Err of KindCircuitOpen errors.
	ErrCircuitOpen = errors.New("rpc: circuit breaker open")
	// ErrServiceExists is returned by Handle for a service already served.
	ErrServiceExists = errors.New("rpc: service already registered")
	// ErrServerClosed is returned by Handle after Close.
	ErrServerClosed = errors.New("rpc: server closed")
)
