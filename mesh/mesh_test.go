package mesh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
	"github.com/netmesh/netmesh/noise"
)

func TestMain(m *testing.M) {
	if mesh.FloodChild() {
		os.Exit(0) // it was a flooder for the flood benchmarks
	}
	goleak.VerifyTestMain(m)
}

// newNode starts a node with fast timers (testnode.FastTimers), closed
// when the test ends. The failure detector's timeouts stay at seconds:
// a test machine whose cores are busy can leave a live peer (another
// node of the same process) silent for longer than 3 keepalives, and a
// test that is not about liveness must not see it die. Tests about dead
// peers set DeadPeerTimeout and ProbeTimeout themselves.
func newNode(t testing.TB, mod ...func(*mesh.Config)) *mesh.Mesh {
	t.Helper()
	slowDead := func(c *mesh.Config) {
		c.DeadPeerTimeout = 3 * time.Second
		c.ProbeTimeout = 5 * time.Second
	}
	return testnode.Start(t, append([]func(*mesh.Config){testnode.FastTimers, slowDead}, mod...)...)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connect(t testing.TB, a, b *mesh.Mesh, pin mesh.Pin) *mesh.Peer {
	t.Helper()
	p, err := a.Connect(ctxT(t), b.Addr(), pin)
	if err != nil {
		t.Fatalf("connect %s -> %s: %v", a.ID().Short(), b.ID().Short(), err)
	}
	if p.ID() != b.ID() {
		t.Fatalf("connected to %s, want %s", p.ID(), b.ID())
	}
	return p
}

// exchange sends a datagram from a to peer and checks b receives it intact.
func exchange(t testing.TB, a *mesh.Mesh, peer *mesh.Peer, b *mesh.Mesh, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	buf := make([]byte, mesh.MaxDatagramSize)
	// Datagrams are unreliable: resend until one arrives.
	for {
		if err := a.SendDatagram(ctx, peer, msg); err != nil {
			t.Fatalf("send: %v", err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		n, from, err := b.ReadDatagram(rctx, buf)
		rcancel()
		if err == nil {
			if from == nil || from.ID() != a.ID() {
				t.Fatalf("datagram from %v, want %s", from, a.ID())
			}
			if !bytes.Equal(buf[:n], msg) {
				t.Fatalf("got %q, want %q", buf[:n], msg)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no datagram arrived: %v", err)
		}
	}
}

func TestHandshakeXXAndIK(t *testing.T) {
	for _, tc := range []struct {
		name string
		pin  func(b *mesh.Mesh) mesh.Pin
	}{
		{"XX", func(*mesh.Mesh) mesh.Pin { return mesh.Pin{} }},
		{"XX-pinned-id", func(b *mesh.Mesh) mesh.Pin { return mesh.Pin{ID: b.ID()} }},
		{"IK", func(b *mesh.Mesh) mesh.Pin { return mesh.Pin{Key: b.Identity().PublicKey()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newNode(t), newNode(t)
			pb := connect(t, a, b, tc.pin(b))
			exchange(t, a, pb, b, []byte("hello from a"))
			pa := b.Peer(a.ID())
			if pa == nil {
				t.Fatal("b does not know a")
			}
			exchange(t, b, pa, a, []byte("hello from b"))
			if s := a.Stats(); s.HandshakesCompleted != 1 {
				t.Errorf("a completed %d handshakes, want 1", s.HandshakesCompleted)
			}
		})
	}
}

// Every packet a node sends is counted once in PacketsWritten, and each
// system call that wrote some once in SocketWrites.
func TestSocketWrites(t *testing.T) {
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{Key: b.Identity().PublicKey()})
	before := a.Stats()
	if before.SocketWrites == 0 || before.PacketsWritten < before.SocketWrites {
		t.Fatalf("after a handshake: %d packets in %d writes", before.PacketsWritten, before.SocketWrites)
	}
	const senders, each = 8, 25
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range each {
				if err := a.SendDatagram(ctxT(t), pb, []byte("count me")); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); ; {
		after := a.Stats()
		packets, writes := after.PacketsWritten-before.PacketsWritten, after.SocketWrites-before.SocketWrites
		if packets >= senders*each {
			if writes == 0 || writes > packets {
				t.Fatalf("%d packets in %d writes", packets, writes)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d datagrams counted as written", packets, senders*each)
		}
		time.Sleep(time.Millisecond)
	}
}

// The initiator's Config.CipherSuite decides a session's suite, whatever
// the responder's own; both ends report it, and data flows both ways.
// (The retransmit interval is the default's: an AES-GCM initiation
// unanswered for one falls back to ChaCha20-Poly1305, and a busy machine
// may take longer than the tests' usual 50 ms to answer; a fallback,
// counted, is the one way to another suite.)
func TestCipherSuites(t *testing.T) {
	suites := []noise.Suite{noise.SuiteChaChaPoly, noise.SuiteAESGCM}
	for _, mine := range suites {
		for _, theirs := range suites {
			t.Run(fmt.Sprintf("%v-to-%v", mine, theirs), func(t *testing.T) {
				a := newNode(t, func(c *mesh.Config) { c.CipherSuite, c.HandshakeRetransmit = mine, time.Second })
				b := newNode(t, func(c *mesh.Config) { c.CipherSuite = theirs })
				pb := connect(t, a, b, mesh.Pin{Key: b.Identity().PublicKey()})
				exchange(t, a, pb, b, []byte("hello from a"))
				pa := b.Peer(a.ID())
				exchange(t, b, pa, a, []byte("hello from b"))
				want := mine
				if a.Stats().SuiteFallbacks > 0 {
					want = noise.SuiteChaChaPoly // no answer within a second: a very busy machine
				}
				if got, back := pb.Stats().CipherSuite, pa.Stats().CipherSuite; got != want || back != want {
					t.Fatalf("sessions of suites %v and %v, want %v", got, back, want)
				}
				if n := b.Stats().Drops["suite_refused"]; n != 0 && noise.HardwareAES() {
					t.Fatalf("a node with AES instructions refused %d AES-GCM initiations", n)
				}
			})
		}
	}
	if _, err := mesh.New(mesh.Config{CipherSuite: 9}); err == nil {
		t.Fatal("New took an unknown cipher suite")
	}
}

// A node without AES instructions refuses AES-GCM initiations (software
// AES is not constant time), as a node older than the suite byte cannot
// answer them; an AES-GCM initiator falls back to ChaCha20-Poly1305 when
// it retransmits, with IK and XX alike, and so does its rekey.
func TestCipherSuiteFallback(t *testing.T) {
	for name, pin := range map[string]func(*mesh.Mesh) mesh.Pin{
		"IK": func(b *mesh.Mesh) mesh.Pin { return mesh.Pin{Key: b.Identity().PublicKey()} },
		"XX": func(b *mesh.Mesh) mesh.Pin { return mesh.Pin{ID: b.ID()} },
	} {
		t.Run(name, func(t *testing.T) {
			a := newNode(t, func(c *mesh.Config) { c.CipherSuite = noise.SuiteAESGCM })
			b := newNode(t, func(c *mesh.Config) { c.CipherSuite = noise.SuiteAESGCM })
			b.RefuseAESGCM(true)
			pb := connect(t, a, b, pin(b))
			exchange(t, a, pb, b, []byte("hello from a"))
			pa := b.Peer(a.ID())
			exchange(t, b, pa, a, []byte("hello from b"))
			if got, back := pb.Stats().CipherSuite, pa.Stats().CipherSuite; got != noise.SuiteChaChaPoly || back != noise.SuiteChaChaPoly {
				t.Fatalf("sessions of suites %v and %v, want %v", got, back, noise.SuiteChaChaPoly)
			}
			if n := a.Stats().SuiteFallbacks; n == 0 {
				t.Error("no fallback counted")
			}
			if n := b.Stats().Drops["suite_refused"]; n == 0 {
				t.Error("no refused initiation counted")
			}
			// The rekey tries AES-GCM again and falls back again.
			before := a.Stats().SuiteFallbacks
			done := a.RekeyNow(pb)
			if done == nil {
				t.Fatal("no rekey started")
			}
			<-done
			if n := a.Stats().SuiteFallbacks; n != before+1 {
				t.Errorf("%d fallbacks after the rekey, want %d", n, before+1)
			}
			exchange(t, a, pb, b, []byte("after the rekey"))
			if got := pb.Stats().CipherSuite; got != noise.SuiteChaChaPoly {
				t.Errorf("rekeyed to %v", got)
			}
		})
	}
}

func TestConnectPinMismatch(t *testing.T) {
	a, b := newNode(t), newNode(t)
	other, _ := identity.Generate()
	for _, pin := range []mesh.Pin{{ID: other.NodeID()}, {Key: other.PublicKey()}} {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		_, err := a.Connect(ctx, b.Addr(), pin)
		cancel()
		if err == nil {
			t.Fatalf("pin %v: connect succeeded to the wrong node", pin)
		}
	}
	if a.Peer(b.ID()) != nil && a.Peer(b.ID()).IsUp() {
		t.Error("a has a session with the unpinned node")
	}
}

func TestFullMesh10(t *testing.T) {
	const n = 10
	nodes := make([]*mesh.Mesh, n)
	for i := range nodes {
		nodes[i] = newNode(t)
	}
	for i := range nodes {
		for j := i + 1; j < n; j++ {
			connect(t, nodes[i], nodes[j], mesh.Pin{Key: nodes[j].Identity().PublicKey()})
		}
	}
	for i, a := range nodes {
		for j, b := range nodes {
			if i == j {
				continue
			}
			p := a.Peer(b.ID())
			if p == nil {
				t.Fatalf("node %d does not know node %d", i, j)
			}
			exchange(t, a, p, b, fmt.Appendf(nil, "%d->%d", i, j))
		}
	}
}

func TestDatagramTooLarge(t *testing.T) {
	a, b := newNode(t), newNode(t)
	p := connect(t, a, b, mesh.Pin{})
	err := a.SendDatagram(context.Background(), p, make([]byte, mesh.MaxDatagramSize+1))
	if err == nil {
		t.Fatal("oversized datagram accepted")
	}
	exchange(t, a, p, b, make([]byte, mesh.MaxDatagramSize))
}

func TestPing(t *testing.T) {
	a, b := newNode(t), newNode(t)
	p := connect(t, a, b, mesh.Pin{})
	var wg sync.WaitGroup
	for range 4 { // concurrent pings each get their own answer
		wg.Add(1)
		go func() {
			defer wg.Done()
			rtt, err := a.Ping(ctxT(t), p)
			if err != nil || rtt <= 0 || rtt > time.Second {
				t.Errorf("ping: %v, %v", rtt, err)
			}
		}()
	}
	wg.Wait()
	if p.RTT() <= 0 {
		t.Fatal("no smoothed RTT after pings")
	}
	b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := a.Ping(ctx, p); err == nil {
		t.Fatal("ping to a closed node answered")
	}
}

// TestWrongPinnedKeyIsReported: a pinned key the node at the address does
// not hold gets no answer to its IK initiation (its MAC cannot verify
// there), so after a retransmit interval the dialler asks the address
// who it is, and fails with an error that names the node there, with the
// default timers well before the handshake would time out.
func TestWrongPinnedKeyIsReported(t *testing.T) {
	a, b := testnode.Start(t), testnode.Start(t)
	other, _ := identity.Generate()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a handshake times out after 15 s
	defer cancel()
	start := time.Now()
	_, err := a.Connect(ctx, b.Addr(), mesh.Pin{Key: other.PublicKey()})
	var pm *mesh.PinMismatchError
	if !errors.As(err, &pm) || !errors.Is(err, mesh.ErrPeerMismatch) {
		t.Fatalf("connect with a wrong key: %v, want a PinMismatchError", err)
	}
	want := fmt.Sprintf("pin mismatch: %s is node %s with key %x, not the pinned key", b.Addr(), b.ID(), []byte(b.Identity().PublicKey()))
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	t.Logf("reported after %v", time.Since(start).Round(time.Millisecond))
	if p := a.Peer(b.ID()); p != nil && p.IsUp() {
		t.Fatal("a made a session with the node it did not pin")
	}
	// The right pin connects.
	if _, err := a.Connect(ctxT(t), b.Addr(), mesh.Pin{Key: b.Identity().PublicKey()}); err != nil {
		t.Fatalf("connect with the right key: %v", err)
	}
}
