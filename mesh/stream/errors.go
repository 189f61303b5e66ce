package stream

import (
	"errors"
	"fmt"
)

// Sentinel errors of package stream.
var (
	// ErrBackpressure means a bounded window or queue is full. It is a
	// signal, not a failure: nothing was sent, and the caller decides
	// whether to retry (SendWithRetry), wait (SendBlocking) or drop.
	// A Link returns an error wrapping it when its socket queue is full.
	ErrBackpressure = errors.New("stream: back-pressure: window full")
	// ErrTooLarge means a message exceeds Config.MaxMessageSize, or a frame
	// exceeds Link.MaxFrameSize.
	ErrTooLarge = errors.New("stream: message too large")
	// ErrClosed is returned by Send on a stream whose send side was
	// closed, and by calls on a stream that finished.
	ErrClosed = errors.New("stream: closed")
	// ErrMuxClosed is returned by calls on a closed Mux and its streams.
	ErrMuxClosed = errors.New("stream: mux closed")
)

// Reset codes at and above CodeReservedMin belong to the engine; the
// application uses the codes below.
const (
	// CodeReservedMin is the first reset code reserved for the engine.
	CodeReservedMin uint32 = 0xFFFF_0000
	// CodeRefused: the peer refused the stream (accept backlog or stream
	// limit reached).
	CodeRefused uint32 = 0xFFFF_0001
	// CodeMuxClosed: the Mux closed (the peer session ended or the node
	// shut down).
	CodeMuxClosed uint32 = 0xFFFF_0002
	// CodeTooLarge: the peer sent a message larger than the receiver's
	// MaxMessageSize.
	CodeTooLarge uint32 = 0xFFFF_0003
	// CodeCloseTimeout: a graceful Close gave up waiting for
	// acknowledgements.
	CodeCloseTimeout uint32 = 0xFFFF_0004
	// CodeProtocol: the peer violated the stream protocol (for example it
	// changed a stream's reliability or moved its FIN).
	CodeProtocol uint32 = 0xFFFF_0005
	// CodeIdle: nothing arrived from the peer on the stream, and the
	// application sent nothing on it, for MuxConfig.IdleTimeout.
	CodeIdle uint32 = 0xFFFF_0006
)

// ResetError is the error of every call on a stream that was reset. Use
// errors.As to read the code.
type ResetError struct {
	// Code is the code given to Reset, or an engine code (CodeRefused, ...).
	Code uint32
	// Remote is true when the peer reset the stream, false when this side
	// did.
	Remote bool
}

// Error implements error.
func (e *ResetError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by peer"
	}
	return fmt.Sprintf("stream: reset %s with code %#x", who, e.Code)
}
