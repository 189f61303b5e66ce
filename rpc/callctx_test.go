package rpc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

type testKey struct{}

// TestCallCtx: a handler's context behaves as package context's do:
// Done, Err, Deadline, Value, contexts derived from it, AfterFunc; its
// cause stays readable for the server.
func TestCallCtx(t *testing.T) {
	wait := func(what string, c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not happen", what)
		}
	}

	cc := &callCtx{caller: Caller{ID: identity.NodeID{7}}}
	if _, ok := cc.Deadline(); ok {
		t.Fatal("a deadline without one set")
	}
	dl := time.Now().Add(time.Hour)
	cc.setDeadline(dl)
	if got, ok := cc.Deadline(); !ok || !got.Equal(dl) {
		t.Fatalf("deadline %v, %v; want %v", got, ok, dl)
	}
	ctx := context.WithValue(cc, testKey{}, 1) // as a handler might wrap it
	if c, ok := CallerInfo(ctx); !ok || c.ID != cc.caller.ID {
		t.Fatalf("CallerInfo: %v, %v", c, ok)
	}
	if _, ok := CallerInfo(context.Background()); ok {
		t.Fatal("CallerInfo outside a handler")
	}

	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	stopped := context.AfterFunc(cc, func() { t.Error("a stopped AfterFunc ran") })
	ran := make(chan struct{})
	context.AfterFunc(cc, func() { close(ran) })
	if !stopped() {
		t.Fatal("stop before the end did not stop")
	}
	done := cc.Done()
	if cc.Err() != nil || child.Err() != nil {
		t.Fatal("ended before cancel")
	}

	cc.cancel(errCallerReset)
	wait("Done", done)
	wait("the derived context's end", child.Done())
	wait("AfterFunc", ran)
	if !errors.Is(cc.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("Err %v, derived %v; want context.Canceled", cc.Err(), child.Err())
	}
	if cc.causeErr() != errCallerReset {
		t.Fatalf("cause %v, want %v", cc.causeErr(), errCallerReset)
	}
	cc.cancel(context.DeadlineExceeded) // the first end stays
	if cc.causeErr() != errCallerReset {
		t.Fatalf("a second cancel replaced the cause with %v", cc.causeErr())
	}
	late := make(chan struct{})
	if context.AfterFunc(cc, func() { close(late) })() {
		t.Fatal("stop after the end reported stopping")
	}
	wait("AfterFunc after the end", late)

	// The caller's deadline: Err and context.Cause say DeadlineExceeded,
	// and Done, first asked for after the end, is closed.
	cc = new(callCtx)
	cc.cancel(errCallerDeadline)
	wait("Done after the end", cc.Done())
	if !errors.Is(cc.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(cc), context.DeadlineExceeded) {
		t.Fatalf("Err %v, Cause %v; want the deadline", cc.Err(), context.Cause(cc))
	}
}
