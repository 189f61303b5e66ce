package rpc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
	"github.com/netmesh/netmesh/mesh/stream"
)

// openStream opens a stream from a to b on the rpc protocol, which b
// holds open until the test ends.
func openStream(t *testing.T, a *mesh.Mesh, ab *mesh.Peer, b *mesh.Mesh) *mesh.Stream {
	t.Helper()
	ctx := testnode.Context(t, 10*time.Second)
	l, err := b.HandleStreams(protocol, func(st *mesh.Stream, _ *mesh.Peer) {
		select {
		case <-st.Done():
		case <-ctx.Done():
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	st, err := a.OpenStreamOn(ctx, ab, protocol, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Reset(resetDone) })
	return st
}

// TestCallWatchStale: a pooled callWatch's timer may fire for an arming
// that was stopped or replaced (Stop came too late, the fire waited for
// the lock), and its ended may run for a stream that ended, even after
// the callWatch went to another call. Such a fire must neither reset the
// current call's stream nor end its handler's context, and such an ended
// must leave a live call alone; only the current arming's fire, and the
// current stream's reset, act.
func TestCallWatchStale(t *testing.T) {
	a, b, ab := testnode.Pair(t)
	st := openStream(t, a, ab, b)
	cc := new(callCtx)

	cw := startCallWatch(nil, st, cc, time.Hour)
	cw.fire() // a late fire of the callWatch's previous use
	if err := st.Err(); err != nil {
		t.Fatalf("a stale fire in the request phase reset the stream: %v", err)
	}
	cw.ended() // a late ended of the previous use: its stream was reset
	if err := cc.Err(); err != nil {
		t.Fatalf("a stale ended cancelled a live call: %v", err)
	}
	cw.arm(phaseHandler, time.Hour)
	cw.fire()
	if err := cc.Err(); err != nil {
		t.Fatalf("a stale fire in the handler phase ended the context: %v", err)
	}
	cw.arm(phaseEnding, time.Hour)
	cw.fire()
	cw.disarm()
	cw.fire()
	cw.release()
	cw.fire() // pooled: it belongs to no call
	cw.ended()
	if err := st.Err(); err != nil {
		t.Fatalf("a stale fire reset the stream: %v", err)
	}

	// The fire of the current arming acts.
	cw = startCallWatch(nil, st, cc, time.Hour)
	defer cw.release()
	cw.arm(phaseHandler, time.Millisecond)
	select {
	case <-cc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's deadline did not end its context")
	}
	if !errors.Is(cc.Err(), context.DeadlineExceeded) || !errors.Is(cc.causeErr(), context.DeadlineExceeded) {
		t.Fatalf("context ended with %v (cause %v), want the deadline", cc.Err(), cc.causeErr())
	}
	cw.arm(phaseRequest, time.Millisecond)
	select {
	case <-st.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the request timer did not reset the stream")
	}
	var re *stream.ResetError
	if !errors.As(st.Err(), &re) || re.Remote || re.Code != resetAbandoned {
		t.Fatalf("stream ended with %v, want a local reset (abandoned)", st.Err())
	}

	// The end of the current call's stream, a reset, cancels the call.
	cc = new(callCtx)
	cw2 := startCallWatch(nil, st, cc, time.Hour)
	defer cw2.release()
	cw2.ended()
	if !errors.Is(cc.causeErr(), errCallerReset) || !errors.Is(cc.Err(), context.Canceled) {
		t.Fatalf("context ended with %v (cause %v), want the caller's reset", cc.Err(), cc.causeErr())
	}
}
