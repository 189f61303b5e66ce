package daemon

import (
	"context"
	"errors"
	"strings"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// Code is the stable category of a daemon error. It travels between
// nodes as its text.
type Code string

// The codes.
const (
	// CodeNotReady: the daemon is arriving on this node and does not
	// serve yet, or the runtime is not serving. Senders retry.
	CodeNotReady Code = "NOT_READY"
	// CodeShuttingDown: the runtime or the daemon is stopping.
	CodeShuttingDown Code = "SHUTTING_DOWN"
	// CodeFactoryNotFound: the node has no factory for the kind.
	CodeFactoryNotFound Code = "FACTORY_NOT_FOUND"
	// CodeRequirementsNotMet: the node's capabilities do not meet the
	// kind's requirements.
	CodeRequirementsNotMet Code = "REQUIREMENTS_NOT_MET"
	// CodePlacementFailed: no node matching the kind, its requirements and
	// the filter took the daemon; the message gives each refusal.
	CodePlacementFailed Code = "PLACEMENT_FAILED"
	// CodeNotFound: no daemon with that id lives here (or anywhere the
	// runtime asked).
	CodeNotFound Code = "NOT_FOUND"
	// CodeBackpressure: the daemon's inbox is full; the event was not
	// accepted. Send it again later.
	CodeBackpressure Code = "BACKPRESSURE"
	// CodeResourceExhausted: the node holds as many daemons or transfers
	// as it takes (or as many of this owner's).
	CodeResourceExhausted Code = "RESOURCE_EXHAUSTED"
	// CodeUnreachable: the node holding the daemon, or a migration's
	// target, cannot be reached.
	CodeUnreachable Code = "UNREACHABLE"
	// CodeSnapshotFailed: the daemon's Snapshot failed or its state is
	// too large.
	CodeSnapshotFailed Code = "SNAPSHOT_FAILED"
	// CodeRestoreFailed: the factory or the daemon's Restore failed.
	CodeRestoreFailed Code = "RESTORE_FAILED"
	// CodeTimeout: the deadline passed.
	CodeTimeout Code = "TIMEOUT"
	// CodeAborted: the caller cancelled, or the other side aborted.
	CodeAborted Code = "ABORTED"
	// CodeKeyRefused: a sealed daemon key could not be opened by this
	// node, or does not belong to the daemon it came with.
	CodeKeyRefused Code = "KEY_REFUSED"
	// CodeHandlerError: the daemon's Handle returned an error. The event
	// was applied (it has a sequence number).
	CodeHandlerError Code = "HANDLER_ERROR"
	// CodeLimitExceeded: an event, output, state or log is larger than
	// the configured bound.
	CodeLimitExceeded Code = "LIMIT_EXCEEDED"
	// CodeNotOwner: only the daemon's owner (the node that spawned it)
	// or its host may stop, snapshot, migrate or fork it.
	CodeNotOwner Code = "NOT_OWNER"
	// CodeBusy: the daemon is migrating or being forked already.
	CodeBusy Code = "BUSY"
	// CodeInvalid: the request is not valid (a kind name, a target that
	// is the source, a malformed message).
	CodeInvalid Code = "INVALID"
)

// Error is the error of a daemon operation. Use errors.As to read it, or
// errors.Is with the sentinel of its code (errors.Is(err,
// daemon.ErrNotFound)).
type Error struct {
	Code Code `json:"code"`
	// Message says what happened, for people.
	Message string `json:"message,omitempty"`
	// Daemon is the daemon concerned; zero if none.
	Daemon ID `json:"daemon,omitzero"`
	// Kind is the kind concerned, set on spawn errors.
	Kind string `json:"kind,omitempty"`
	// Node is the node concerned (the host, a target); zero if none.
	Node identity.NodeID `json:"node,omitzero"`
	// Phase is the migration phase that failed; zero outside migrations.
	Phase Phase `json:"phase,omitempty"`
	// Err is an underlying error (an rpc error, say), or nil.
	Err error `json:"-"`
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("daemon")
	if !e.Daemon.IsZero() {
		b.WriteString(" " + e.Daemon.String())
	}
	if e.Kind != "" {
		b.WriteString(" kind " + e.Kind)
	}
	if !e.Node.IsZero() {
		b.WriteString(" on " + e.Node.Short())
	}
	if e.Phase != 0 {
		b.WriteString(" in " + e.Phase.String())
	}
	b.WriteString(": " + string(e.Code))
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error of the same code with nothing
// else set: a sentinel such as ErrNotFound.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Err == nil && t.Daemon.IsZero() && t.Node.IsZero() && t.Phase == 0 && t.Code == e.Code
}

// Sentinels, one per code, for errors.Is.
var (
	ErrNotReady           = &Error{Code: CodeNotReady}
	ErrShuttingDown       = &Error{Code: CodeShuttingDown}
	ErrFactoryNotFound    = &Error{Code: CodeFactoryNotFound}
	ErrRequirementsNotMet = &Error{Code: CodeRequirementsNotMet}
	ErrPlacementFailed    = &Error{Code: CodePlacementFailed}
	ErrNotFound           = &Error{Code: CodeNotFound}
	ErrBackpressure       = &Error{Code: CodeBackpressure}
	ErrResourceExhausted  = &Error{Code: CodeResourceExhausted}
	ErrUnreachable        = &Error{Code: CodeUnreachable}
	ErrSnapshotFailed     = &Error{Code: CodeSnapshotFailed}
	ErrRestoreFailed      = &Error{Code: CodeRestoreFailed}
	ErrTimeout            = &Error{Code: CodeTimeout}
	ErrAborted            = &Error{Code: CodeAborted}
	ErrKeyRefused         = &Error{Code: CodeKeyRefused}
	ErrHandlerError       = &Error{Code: CodeHandlerError}
	ErrLimitExceeded      = &Error{Code: CodeLimitExceeded}
	ErrNotOwner           = &Error{Code: CodeNotOwner}
	ErrBusy               = &Error{Code: CodeBusy}
	ErrInvalid            = &Error{Code: CodeInvalid}
)

// Errors of the API that are not about a daemon.
var (
	// ErrKindExists is returned by Register for a kind already registered.
	ErrKindExists = errors.New("daemon: kind already registered")
	// ErrInvalidKind reports a kind Register refuses; the error says why.
	ErrInvalidKind = errors.New("daemon: invalid kind")
	// ErrClosed is returned by calls on a closed Runtime.
	ErrClosed = errors.New("daemon: runtime closed")
	// ErrMalformed reports bytes that are not a well-formed daemon
	// message.
	ErrMalformed = errors.New("daemon: malformed message")
	// ErrInvalidID reports text that is not a daemon id.
	ErrInvalidID = errors.New("daemon: invalid daemon id")
)

// statusDaemonError is the rpc status of a refusal by a runtime: its
// message is "<CODE>: <message>".
const statusDaemonError rpc.Status = 0x8200

// remoteError turns the error of a handler into the rpc error that
// carries its code.
func remoteError(err error) error {
	var de *Error
	if errors.As(err, &de) {
		return rpc.Errorf(statusDaemonError, "%s: %s", de.Code, truncate(de.Message, maxMessage-maxLabel))
	}
	return rpc.Errorf(statusDaemonError, "%s: %s", CodeInvalid, truncate(err.Error(), maxMessage-maxLabel))
}

// callError classifies the error of a call to node: a runtime's refusal
// keeps its code; a call that could not reach the node is UNREACHABLE;
// the caller's context ending is TIMEOUT or ABORTED.
func callError(err error, node identity.NodeID) *Error {
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	e := &Error{Node: node, Err: err}
	var re *rpc.Error
	switch {
	case errors.As(err, &re) && re.Kind == rpc.KindServer && re.Status == statusDaemonError:
		code, msg, _ := strings.Cut(re.Message, ": ")
		if !validCode(code) {
			code = string(CodeInvalid)
		}
		return &Error{Code: Code(code), Message: msg, Node: node}
	case errors.As(err, &re) && re.Kind == rpc.KindServer && re.Status == rpc.StatusUnknownService:
		e.Code, e.Message, e.Err = CodeFactoryNotFound, "the node runs no daemon runtime", nil
	case errors.As(err, &re) && re.Kind == rpc.KindServer && re.Status == rpc.StatusUnavailable:
		e.Code = CodeShuttingDown
	case errors.As(err, &re) && re.Kind == rpc.KindServer:
		e.Code = CodeInvalid
	case errors.Is(err, context.DeadlineExceeded):
		e.Code = CodeTimeout
	case errors.Is(err, context.Canceled):
		e.Code = CodeAborted
	default:
		e.Code = CodeUnreachable
	}
	return e
}

// ctxError is the *Error of a context that ended.
func ctxError(ctx context.Context) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Error{Code: CodeTimeout, Err: ctx.Err()}
	}
	return &Error{Code: CodeAborted, Err: ctx.Err()}
}

// with returns a copy of e naming the daemon (and the node, phase, kind
// when they are not set yet).
func (e *Error) with(id ID, node identity.NodeID) *Error {
	c := *e
	if c.Daemon.IsZero() {
		c.Daemon = id
	}
	if c.Node.IsZero() {
		c.Node = node
	}
	return &c
}

// validCode reports whether c is a code a peer may send: upper case
// letters and underscores, 1 to maxLabel bytes. Unknown codes are kept (a
// newer peer may know more), malformed ones are not.
func validCode(c string) bool {
	if len(c) == 0 || len(c) > maxLabel {
		return false
	}
	for i := 0; i < len(c); i++ {
		if (c[i] < 'A' || c[i] > 'Z') && c[i] != '_' {
			return false
		}
	}
	return true
}

// truncate shortens s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
