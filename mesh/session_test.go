package mesh_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPeerRestart(t *testing.T) {
	idB, _ := identity.Generate()
	a := newNode(t, func(c *mesh.Config) { c.DeadPeerTimeout = 400 * time.Millisecond })
	b := newNode(t, func(c *mesh.Config) { c.Identity = idB })
	p := connect(t, a, b, mesh.Pin{Key: idB.PublicKey()})
	exchange(t, a, p, b, []byte("before"))

	addr := b.Addr()
	b.Close()
	b2 := newNode(t, func(c *mesh.Config) { c.Identity = idB; c.ListenAddr = addr.String() })
	// a's session is stale: b2 drops its packets as unknown_index until a
	// notices the silence and runs a fresh handshake with the same Peer.
	exchange(t, a, p, b2, []byte("after restart"))
	if n := p.Stats().Handshakes; n < 2 {
		t.Errorf("peer handshakes = %d, want a second one after the restart", n)
	}
	if b2.Stats().Drops["unknown_index"] == 0 {
		t.Log("note: a re-handshook before sending on the stale session")
	}
	pa := b2.Peer(a.ID())
	exchange(t, b2, pa, a, []byte("and back"))
}

func TestRestartedPeerDialsBack(t *testing.T) {
	idB, _ := identity.Generate()
	a := newNode(t)
	b := newNode(t, func(c *mesh.Config) { c.Identity = idB })
	p := connect(t, a, b, mesh.Pin{Key: idB.PublicKey()})
	addr := b.Addr()
	b.Close()
	b2 := newNode(t, func(c *mesh.Config) { c.Identity = idB; c.ListenAddr = addr.String() })
	pa := connect(t, b2, a, mesh.Pin{Key: a.Identity().PublicKey()})
	// a accepts the newer initiation and replaces the old session.
	exchange(t, b2, pa, a, []byte("i am back"))
	exchange(t, a, p, b2, []byte("welcome back"))
}

// Guards streams across a peer's restart: the restarted node reuses
// stream ids its previous run used, so a survivor that kept its streams
// took the new ones for stale and refused them. The handshake's
// incarnation tells the survivor the peer restarted: its old streams end,
// and the restarted node's new streams are accepted, whichever side
// makes the new session (the IK initiation or the IK response carries
// the news).
func TestStreamsAcrossPeerRestart(t *testing.T) {
	for _, survivorDials := range []bool{false, true} {
		t.Run(fmt.Sprintf("survivorDials=%v", survivorDials), func(t *testing.T) {
			ctx := ctxT(t)
			idB, _ := identity.Generate()
			a := newNode(t)
			b := newNode(t, func(c *mesh.Config) { c.Identity = idB })
			p := connect(t, a, b, mesh.Pin{Key: idB.PublicKey()})
			eventually(t, 5*time.Second, "b sees a up", func() bool { q := b.Peer(a.ID()); return q != nil && q.IsUp() })
			pb := b.Peer(a.ID())
			for i := range 3 { // ids the restarted b will use again
				s, err := b.OpenStream(ctx, pb, mesh.StreamConfig{})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.SendBlocking(ctx, []byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
				as, _, err := a.AcceptStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := as.Recv(ctx); err != nil {
					t.Fatal(err)
				}
			}
			old, err := a.OpenStream(ctx, p, mesh.StreamConfig{})
			if err != nil {
				t.Fatal(err)
			}
			if err := old.SendBlocking(ctx, []byte("to b's first run")); err != nil {
				t.Fatal(err)
			}

			addr := b.Addr()
			b.Close()
			b2 := newNode(t, func(c *mesh.Config) { c.Identity = idB; c.ListenAddr = addr.String() })
			if survivorDials {
				done := a.RekeyNow(p)
				if done == nil {
					t.Fatal("a could not start a handshake")
				}
				<-done
				eventually(t, 5*time.Second, "b2 sees a up", func() bool { q := b2.Peer(a.ID()); return q != nil && q.IsUp() })
				pb = b2.Peer(a.ID())
			} else {
				pb = connect(t, b2, a, mesh.Pin{Key: a.Identity().PublicKey()})
			}
			// a learns of the restart when the new session is installed;
			// on the responder that is when b2's first packet arrives.
			exchange(t, b2, pb, a, []byte("hello again"))

			s, err := b2.OpenStream(ctx, pb, mesh.StreamConfig{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SendBlocking(ctx, []byte("from b's second run")); err != nil {
				t.Fatal(err)
			}
			as, _, err := a.AcceptStream(ctx)
			if err != nil {
				t.Fatalf("a never accepted the restarted node's stream: %v", err)
			}
			if msg, err := as.Recv(ctx); err != nil || string(msg) != "from b's second run" {
				t.Fatalf("a read %q, %v", msg, err)
			}
			if _, err := old.Recv(ctx); err == nil || ctx.Err() != nil {
				t.Fatalf("a's stream to b's first run: Recv = %v, want it ended by the restart", err)
			}
		})
	}
}

func TestRoaming(t *testing.T) {
	fc := meshtest.Listen(t, meshtest.Options{Seed: 1})
	a := newNode(t, func(c *mesh.Config) { c.Conn = fc })
	b := newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	exchange(t, a, pb, b, []byte("from the old port"))
	old := fc.LocalAddr()
	if err := fc.Rebind(); err != nil {
		t.Fatal(err)
	}
	if fc.LocalAddr() == old {
		t.Fatal("rebind kept the port")
	}
	pa := b.Peer(a.ID())
	if pa.Endpoint().Port() != old.Port() {
		t.Fatalf("b sees a at %v, want port %d", pa.Endpoint(), old.Port())
	}
	// a keeps talking from its new port; b follows once the old one has
	// been silent for RoamSilence, and its replies reach a there.
	exchange(t, a, pb, b, []byte("from the new port"))
	eventually(t, 3*time.Second, "b to move a's endpoint", func() bool {
		a.SendDatagram(context.Background(), pb, []byte("x"))
		return pa.Endpoint().Port() == fc.LocalAddr().Port()
	})
	exchange(t, b, pa, a, []byte("reply to the new port"))
}

func TestRoamingHysteresis(t *testing.T) {
	// Two live addresses delivering the same session's packets must not
	// make the endpoint flap: a duplicating path replays packets from a
	// second source, which the replay window drops, and fresh packets from
	// the second address do not move an endpoint that is still talking.
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	exchange(t, a, pb, b, []byte("x"))
	pa := b.Peer(a.ID())
	ep := pa.Endpoint()
	for range 50 {
		a.SendDatagram(context.Background(), pb, []byte("steady"))
		time.Sleep(time.Millisecond)
	}
	if pa.Endpoint() != ep {
		t.Fatalf("endpoint moved from %v to %v with one live address", ep, pa.Endpoint())
	}
}

func TestRekey(t *testing.T) {
	rekey := func(c *mesh.Config) {
		c.RekeyAfter = 300 * time.Millisecond
		c.RejectAfter = 3 * time.Second
	}
	a, b := newNode(t, rekey), newNode(t, rekey)
	pb := connect(t, a, b, mesh.Pin{})
	// Traffic flows while the sessions turn over: three handshakes mean
	// the session was replaced twice under it. How soon depends on the
	// machine, so the test waits for them rather than counting in a window.
	deadline := time.Now().Add(30 * time.Second)
	n := 0
	for pb.Stats().Handshakes < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handshakes in 30 s with rekey every 300 ms, want >= 3", pb.Stats().Handshakes)
		}
		exchange(t, a, pb, b, fmt.Appendf(nil, "msg %d", n))
		n++
		time.Sleep(10 * time.Millisecond)
	}
	// A session never outlives RejectAfter, however slow the machine.
	if age := pb.Stats().SessionAge; age > 3*time.Second {
		t.Fatalf("session age %v: it was not replaced", age)
	}
	t.Logf("%d datagrams across %d sessions", n, pb.Stats().Handshakes)
}

func TestIPv6(t *testing.T) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	c.Close()
	v6 := func(c *mesh.Config) { c.ListenAddr = "[::1]:0" }
	a, b := newNode(t, v6), newNode(t, v6)
	if !b.Addr().Addr().Is6() {
		t.Fatalf("b listens on %v", b.Addr())
	}
	p := connect(t, a, b, mesh.Pin{Key: b.Identity().PublicKey()})
	exchange(t, a, p, b, []byte("over ipv6"))
}

func TestDualStackWildcard(t *testing.T) {
	a := newNode(t, func(c *mesh.Config) { c.ListenAddr = ":0" })
	b := newNode(t)
	if len(a.ListenAddrs()) == 0 {
		t.Fatal("no sockets")
	}
	p := connect(t, b, a, mesh.Pin{})
	exchange(t, b, p, a, []byte("to the wildcard socket"))
}

func TestDatagramsUnderFaults(t *testing.T) {
	fc := meshtest.Listen(t, meshtest.Options{Seed: 42})
	a := newNode(t, func(c *mesh.Config) { c.Conn = fc })
	b := newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	fc.SetFaults(meshtest.Faults{Loss: 0.1, Duplicate: 0.05, Corrupt: 0.05, Reorder: 0.1})
	const n = 2000
	ctx := ctxT(t)
	got := make(map[string]int)
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, mesh.MaxDatagramSize)
		for {
			rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			k, _, err := b.ReadDatagram(rctx, buf)
			cancel()
			if err != nil {
				return
			}
			got[string(buf[:k])]++
			received.Add(1)
		}
	}()
	for i := range n {
		// Stay within the receive queue so that only the injected faults
		// lose datagrams, however slow the machine.
		for int64(i)-received.Load() > 200+int64(i)/4 && ctx.Err() == nil { // a quarter is lost on purpose
			time.Sleep(time.Millisecond)
		}
		for a.SendDatagram(ctx, pb, fmt.Appendf(nil, "%d", i)) == mesh.ErrBackpressure {
			time.Sleep(time.Millisecond)
		}
	}
	<-done
	for k, c := range got {
		if c != 1 {
			t.Fatalf("datagram %s delivered %d times", k, c)
		}
	}
	st := fc.Stats()
	if len(got) < n*7/10 || len(got) == n {
		t.Fatalf("%d of %d delivered with 10%% loss and 5%% corruption (faults: %+v)", len(got), n, st)
	}
	drops := b.Stats().Drops
	if drops["bad_tag"] == 0 || drops["replay"] == 0 {
		t.Fatalf("corruption and duplication not counted: %v (faults %+v)", drops, st)
	}
	t.Logf("delivered %d/%d, drops %v", len(got), n, drops)
}

func TestPeerEvents(t *testing.T) {
	a := newNode(t, func(c *mesh.Config) {
		c.DeadPeerTimeout = 300 * time.Millisecond
		c.HandshakeGiveUp = 500 * time.Millisecond
	})
	b := newNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan mesh.PeerEvent, 8)
	go func() {
		for ev := range a.WatchPeers(ctx) {
			events <- ev
		}
		close(events)
	}()
	time.Sleep(10 * time.Millisecond) // let the watcher register
	connect(t, a, b, mesh.Pin{})
	want := func(up bool) {
		t.Helper()
		select {
		case ev := <-events:
			if ev.Peer != b.ID() || ev.Up != up {
				t.Fatalf("event %+v, want peer %s up=%v", ev, b.ID().Short(), up)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event (want up=%v)", up)
		}
	}
	want(true)
	b.Close()
	want(false)
	cancel()
	for range events {
	}
}

func TestSendAfterClose(t *testing.T) {
	a, b := newNode(t), newNode(t)
	p := connect(t, a, b, mesh.Pin{})
	a.Close()
	if err := a.SendDatagram(context.Background(), p, []byte("x")); err != mesh.ErrClosed {
		t.Fatalf("send after close: %v, want ErrClosed", err)
	}
	if _, _, err := a.ReadDatagram(context.Background(), make([]byte, 10)); err != mesh.ErrClosed {
		t.Fatalf("read after close: %v, want ErrClosed", err)
	}
	if _, err := a.Connect(context.Background(), b.Addr(), mesh.Pin{}); err != mesh.ErrClosed {
		t.Fatalf("connect after close: %v, want ErrClosed", err)
	}
}

func TestZeroAllocDatagramPath(t *testing.T) {
	if mesh.RaceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	a, b := newNode(t), newNode(t)
	p := connect(t, a, b, mesh.Pin{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := make([]byte, 1000)
	buf := make([]byte, mesh.MaxDatagramSize)
	exchange(t, a, p, b, msg)
	// Send and receive one datagram per run: the count covers the sender,
	// the writer and reader goroutines and the receive queue.
	allocs := testing.AllocsPerRun(2000, func() {
		if err := a.SendDatagram(ctx, p, msg); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.ReadDatagram(ctx, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per datagram (send + receive), want 0", allocs)
	}
}

func TestMaxPeers(t *testing.T) {
	b := newNode(t, func(c *mesh.Config) { c.MaxPeers = 2 })
	for range 2 {
		connect(t, newNode(t), b, mesh.Pin{})
	}
	third := newNode(t, func(c *mesh.Config) { c.HandshakeGiveUp = 300 * time.Millisecond })
	if _, err := third.Connect(ctxT(t), b.Addr(), mesh.Pin{}); err == nil {
		t.Fatal("a third peer got in past MaxPeers=2")
	}
	if b.Stats().Drops["peer_limit"] == 0 {
		t.Fatalf("peer_limit not counted: %v", b.Stats().Drops)
	}
	if n := len(b.Peers()); n != 2 {
		t.Fatalf("b keeps %d peers, want 2", n)
	}
}

func TestForgetDownPeers(t *testing.T) {
	b := newNode(t, func(c *mesh.Config) {
		c.ForgetAfter = 200 * time.Millisecond
		c.DeadPeerTimeout = 300 * time.Millisecond
		c.HandshakeGiveUp = 300 * time.Millisecond
	})
	a := newNode(t)
	connect(t, a, b, mesh.Pin{})
	a.Close()
	eventually(t, 5*time.Second, "b to forget the vanished peer", func() bool { return b.Peer(a.ID()) == nil })
}

// TestHandshakeSlowerThanRetransmit: a handshake whose round trip is
// several times the retransmit interval (a starved CPU, a slow link)
// completes. Each resend repeats the same initiation, and the responder
// answers a repeated IK initiation with the response it already sent, so
// the first answer to arrive completes the dial. When every resend was a
// new handshake, each answer came for one a resend had replaced, and the
// dial never completed.
func TestHandshakeSlowerThanRetransmit(t *testing.T) {
	for _, ik := range []bool{true, false} {
		t.Run(map[bool]string{true: "IK", false: "XX"}[ik], func(t *testing.T) {
			node := func() *mesh.Mesh {
				fc := meshtest.Listen(t, meshtest.Options{Seed: 3})
				fc.SetFaults(meshtest.Faults{Delay: 150 * time.Millisecond})
				return newNode(t, func(c *mesh.Config) {
					c.Conn = fc
					c.HandshakeRetransmit = 20 * time.Millisecond // resends every 20-80 ms
					c.HandshakeGiveUp = 5 * time.Second
				})
			}
			a, b := node(), node()
			pin := mesh.Pin{}
			if ik {
				pin.Key = b.Identity().PublicKey()
			}
			p := connect(t, a, b, pin)
			exchange(t, a, p, b, []byte("slow but sure"))
			st := a.Stats()
			if st.HandshakesCompleted != 1 || st.Drops["unknown_index"] != 0 {
				t.Errorf("handshakes completed %d (want 1), drops %v", st.HandshakesCompleted, st.Drops)
			}
		})
	}
}
