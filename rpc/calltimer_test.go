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

// TestCallTimerStaleFire: a pooled callTimer's timer may fire for an
// arming that was stopped or replaced (Stop came too late, the fire
// waited for the lock), even after the callTimer went to another call.
// Such a fire must neither reset the current call's stream nor end its
// handler's context; only the current arming's fire acts.
func TestCallTimerStaleFire(t *testing.T) {
	a, b, ab := testnode.Pair(t)
	st := openStream(t, a, ab, b)
	cc := new(callCtx)

	ct := startCallTimer(st, cc, time.Hour)
	ct.fire() // a late fire of the callTimer's previous use
	if err := st.Err(); err != nil {
		t.Fatalf("a stale fire in the request phase reset the stream: %v", err)
	}
	ct.arm(phaseHandler, time.Hour)
	ct.fire()
	if err := cc.Err(); err != nil {
		t.Fatalf("a stale fire in the handler phase ended the context: %v", err)
	}
	ct.arm(phaseEnding, time.Hour)
	ct.fire()
	ct.disarm()
	ct.fire()
	ct.release()
	ct.fire() // pooled: it belongs to no call
	if err := st.Err(); err != nil {
		t.Fatalf("a stale fire reset the stream: %v", err)
	}

	// The fire of the current arming acts.
	ct = startCallTimer(st, cc, time.Hour)
	defer ct.release()
	ct.arm(phaseHandler, time.Millisecond)
	select {
	case <-cc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's deadline did not end its context")
	}
	if !errors.Is(cc.Err(), context.DeadlineExceeded) || !errors.Is(cc.causeErr(), context.DeadlineExceeded) {
		t.Fatalf("context ended with %v (cause %v), want the deadline", cc.Err(), cc.causeErr())
	}
	ct.arm(phaseRequest, time.Millisecond)
	select {
	case <-st.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the request timer did not reset the stream")
	}
	var re *stream.ResetError
	if !errors.As(st.Err(), &re) || re.Remote || re.Code != resetAbandoned {
		t.Fatalf("stream ended with %v, want a local reset (abandoned)", st.Err())
	}
}
