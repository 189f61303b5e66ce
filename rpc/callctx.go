package rpc

import (
	"context"
	"errors"
	"sync"
	"time"
)

// callCtx is the context a handler runs with: one allocation per call
// that carries the caller, the call's deadline and its cancellation. It
// has no parent: the server cancels it when the call ends, when the
// caller cancels or goes away, when the deadline passes (the call's
// callWatch), and when the server closes (Server.stop walks its active
// calls). Its Err is context.DeadlineExceeded when a deadline ended it,
// the server's own or the caller's (the reset that says the caller's
// deadline passed), and context.Canceled otherwise; as the type is not
// one of package context's, context.Cause(ctx) returns Err too. The
// server reads the precise cause with causeErr.
type callCtx struct {
	caller Caller // set before the handler runs, read-only after

	mu       sync.Mutex // guards the fields below
	deadline time.Time  // zero: none
	done     chan struct{}
	err      error // set once, when the context ends
	cause    error
	// afters, made by the first AfterFunc, ends when cc does; AfterFunc
	// leaves its functions to it.
	afters    context.Context
	endAfters context.CancelFunc
}

// closedChan is the Done channel of a context that ended before anyone
// asked for it.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Deadline returns the call's deadline, if the request carried one.
func (cc *callCtx) Deadline() (time.Time, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.deadline, !cc.deadline.IsZero()
}

// Done returns a channel that is closed when the context ends. It is made
// on the first call, so a handler that never asks costs no channel.
func (cc *callCtx) Done() <-chan struct{} {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.done == nil {
		if cc.err != nil {
			return closedChan
		}
		cc.done = make(chan struct{})
	}
	return cc.done
}

// Err returns nil until the context ends, then context.DeadlineExceeded
// or context.Canceled.
func (cc *callCtx) Err() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err
}

// Value returns a pointer to the caller for callerKey (see CallerInfo),
// and nil for any other key.
func (cc *callCtx) Value(key any) any {
	if _, ok := key.(callerKey); ok {
		return &cc.caller
	}
	return nil
}

// AfterFunc arranges for f to run in a goroutine of its own when the
// context ends, as context.AfterFunc does; package context uses it for
// the contexts a handler derives, so they need no goroutine to follow
// this one.
func (cc *callCtx) AfterFunc(f func()) (stop func() bool) {
	cc.mu.Lock()
	if cc.afters == nil {
		cc.afters, cc.endAfters = context.WithCancel(context.Background())
		if cc.err != nil {
			cc.endAfters()
		}
	}
	afters := cc.afters
	cc.mu.Unlock()
	return context.AfterFunc(afters, f)
}

// String names the context, as package context's types do.
func (cc *callCtx) String() string { return "rpc.handlerContext" }

// setDeadline gives the context the deadline the request carried.
func (cc *callCtx) setDeadline(t time.Time) {
	cc.mu.Lock()
	cc.deadline = t
	cc.mu.Unlock()
}

// cancel ends the context with cause (see causeErr) unless it has ended.
func (cc *callCtx) cancel(cause error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err, cc.cause = context.Canceled, cause
	if errors.Is(cause, context.DeadlineExceeded) {
		cc.err = context.DeadlineExceeded
	}
	if cc.done == nil {
		cc.done = closedChan
	} else {
		close(cc.done)
	}
	endAfters := cc.endAfters
	cc.mu.Unlock()
	if endAfters != nil {
		endAfters()
	}
}

// causeErr returns why the context ended (nil while it has not):
// context.DeadlineExceeded for the call's deadline, errCallerDeadline,
// errCallerReset, or context.Canceled when the server closed or the call
// is over.
func (cc *callCtx) causeErr() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.cause
}
