package mesh_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/mesh"
)

// patient keeps every timer that could take a silent peer down far off,
// so that only a goodbye can.
func patient(c *mesh.Config) {
	c.KeepaliveInterval = time.Hour
	c.DeadPeerTimeout = time.Hour
}

// nextDown returns the next down event about id.
func nextDown(t *testing.T, events <-chan mesh.PeerEvent, id interface{ Short() string }) mesh.PeerEvent {
	t.Helper()
	for {
		select {
		case ev := <-events:
			if !ev.Up && ev.Peer.Short() == id.Short() {
				return ev
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no down event about %s", id.Short())
		}
	}
}

// peerEvents collects m's peer events until the test ends.
func peerEvents(t *testing.T, m *mesh.Mesh) <-chan mesh.PeerEvent {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := make(chan mesh.PeerEvent, 64)
	go func() {
		for ev := range m.WatchPeers(ctx) {
			ch <- ev
		}
	}()
	return ch
}

// TestLeave: a node that leaves is down at its peers, and gone from
// their capability index as having left, as soon as its goodbye arrives,
// with no timer involved; it refuses to be dialled back meanwhile.
func TestLeave(t *testing.T) {
	a, b, c := newNode(t, patient), newNode(t, patient), newNode(t, patient)
	connect(t, a, b, mesh.Pin{})
	connect(t, c, b, mesh.Pin{})
	if err := b.AnnounceCapabilities(capability.Set{Tags: []string{"leaver"}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*mesh.Mesh{a, c} {
		eventually(t, 5*time.Second, "the announcement", func() bool { return len(n.FindNodes(capability.HasTag("leaver"))) == 1 })
	}
	sub := a.SubscribeNodes(0)
	defer sub.Close()
	ea, ec := peerEvents(t, a), peerEvents(t, c)
	if err := b.Leave(ctxT(t)); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, ev := range []mesh.PeerEvent{nextDown(t, ea, b.ID()), nextDown(t, ec, b.ID())} {
		if ev.Reason != "the peer left" {
			t.Errorf("down because %q, want the peer left", ev.Reason)
		}
	}
	select {
	case ev := <-sub.C:
		if ev.Kind != capability.NodeLeft || ev.Node.ID != b.ID() {
			t.Fatalf("index event %v about %s, want left about b", ev.Kind, ev.Node.ID.Short())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a's index did not drop b")
	}
	if st := a.Peer(b.ID()).Stats(); st.Up || st.PathReason != "no session: the peer left" {
		t.Fatalf("a sees b as up=%v %q", st.Up, st.PathReason)
	}
	if _, err := b.Connect(ctxT(t), a.Addr(), mesh.Pin{}); !errors.Is(err, mesh.ErrClosed) {
		t.Fatalf("Connect after Leave: %v, want ErrClosed", err)
	}
}

// TestLeaveRelayed: a peer reached through a relay hears the goodbye
// through it, before the relay hears its own.
func TestLeaveRelayed(t *testing.T) {
	a, r, b, _, _, _, _ := relayedPair(t, patient)
	eventually(t, 5*time.Second, "b to confirm a's session", func() bool { p := b.Peer(a.ID()); return p != nil && p.IsUp() })
	ea, er := peerEvents(t, a), peerEvents(t, r)
	if err := b.Leave(ctxT(t)); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, ev := range []mesh.PeerEvent{nextDown(t, ea, b.ID()), nextDown(t, er, b.ID())} {
		if ev.Reason != "the peer left" {
			t.Errorf("down because %q, want the peer left", ev.Reason)
		}
	}
}

// TestLeavingNodeRefusesHandshakes: while it says goodbye, a node answers
// no handshake, so that no peer dials it back before it is gone. Its
// goodbye to a peer that cannot answer (its packets are lost) keeps it
// leaving for a while.
func TestLeavingNodeRefusesHandshakes(t *testing.T) {
	b, fb := faultNode(t, 1, patient)
	a := newNode(t, patient)
	connect(t, a, b, mesh.Pin{})
	fb.Block(a.Addr()) // the goodbye to a goes unanswered
	left := make(chan error, 1)
	go func() { left <- b.Leave(context.Background()) }()
	eventually(t, 5*time.Second, "b to be leaving", b.Leaving)
	c := newNode(t)
	ctx, cancel := context.WithTimeout(ctxT(t), time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, b.Addr(), mesh.Pin{}); err == nil {
		t.Fatal("a leaving node answered a handshake")
	}
	if n := b.Stats().Drops["leaving"]; n == 0 {
		t.Fatal("no refused handshake counted as leaving")
	}
	if err := <-left; err != nil {
		t.Fatal(err)
	}
}
