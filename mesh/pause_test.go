package mesh

import (
	"context"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh/meshtest"
)

// A node whose timer loop could not run for longer than HandshakeGiveUp
// (its process got no CPU: a loaded or suspended machine) must not take
// down a peer whose handshake was under way when the pause began: the
// pause is the node's silence, not the peer's. The handshake goes on
// with the time it had left.
func TestTimerPauseIsNotPeerSilence(t *testing.T) {
	fc := meshtest.Listen(t, meshtest.Options{Seed: 1})
	a := startNode(t, func(c *Config) { c.Conn = fc })
	b := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pb, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	giveUp := a.tr.t.giveUp
	before := pb.Stats().Handshakes

	fc.Block(b.Addr()) // a's rekey goes unanswered for now
	done := a.RekeyNow(pb)
	if done == nil {
		t.Fatal("no rekey started")
	}
	// The pause: the timer loop and the handshake workers wait for the
	// lock for longer than the handshake may take.
	a.tr.hs.mu.Lock()
	time.Sleep(giveUp + giveUp/4)
	a.tr.hs.mu.Unlock()
	// The loop runs again while b is still unreachable: counting the
	// pause, the dial is past HandshakeGiveUp and b would go down now.
	time.Sleep(giveUp / 4)
	fc.Unblock(b.Addr())

	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the rekey never ended")
	}
	if !pb.IsUp() {
		t.Fatal("b went down after a's pause")
	}
	if got := pb.Stats().Handshakes; got != before+1 {
		t.Fatalf("%d handshakes after the pause, want %d: the rekey did not complete", got, before+1)
	}
}
