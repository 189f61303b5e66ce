package meshnet_test

import (
	"context"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/meshnet"
)

// testProto is the protocol the tests listen on.
var testProto = mesh.MustProtocol("meshnet/test")

// setupTimeout bounds the start-up and handshakes of a test's nodes.
const setupTimeout = 20 * time.Second

// startNode starts a mesh on a random port of 127.0.0.1, closed when the
// test ends.
func startNode(t testing.TB, cfg mesh.Config) *mesh.Mesh {
	t.Helper()
	if cfg.ListenAddr == "" && cfg.Conn == nil {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	m, err := mesh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// directPair starts two nodes with a direct session, up on both sides.
func directPair(t testing.TB) (a, b *mesh.Mesh) {
	t.Helper()
	a, b = startNode(t, mesh.Config{}), startNode(t, mesh.Config{})
	connect(t, a, b)
	return a, b
}

// connect connects a to b directly and waits until b has the session up
// too.
func connect(t testing.TB, a, b *mesh.Mesh) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := a.Connect(ctx, b.Addr(), mesh.Pin{Key: b.Identity().PublicKey()}); err != nil {
		t.Fatal(err)
	}
	waitUp(t, b, a.ID())
}

// relayedPair starts a — r — b where a and b cannot reach each other
// (their sockets drop each other's packets), with a session between a
// and b relayed by r and up on both sides.
func relayedPair(t testing.TB) (a, b *mesh.Mesh) {
	t.Helper()
	ca := meshtest.Listen(t, meshtest.Options{Seed: 1})
	cb := meshtest.Listen(t, meshtest.Options{Seed: 2})
	r := startNode(t, mesh.Config{})
	relay := []mesh.Relay{{Addr: r.Addr(), Pin: mesh.Pin{Key: r.Identity().PublicKey()}}}
	a = startNode(t, mesh.Config{Conn: ca, Relays: relay})
	b = startNode(t, mesh.Config{Conn: cb, Relays: relay})
	ca.Block(b.Addr())
	cb.Block(a.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	waitUp(t, a, r.ID())
	waitUp(t, b, r.ID())
	p, err := a.ConnectNode(ctx, b.ID(), b.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if path := p.Stats().Path; path != "relayed" {
		t.Fatalf("a reaches b on a %s path, want relayed", path)
	}
	waitUp(t, b, a.ID())
	return a, b
}

// waitUp waits until m has a session with id.
func waitUp(t testing.TB, m *mesh.Mesh, id identity.NodeID) {
	t.Helper()
	waitFor(t, "a session with "+id.Short()+" is up", func() bool {
		p := m.Peer(id)
		return p != nil && p.IsUp()
	})
}

// dialAccept opens a connection from a to b on testProto through l, b's
// listener, and returns both ends, closed when the test ends.
func dialAccept(t testing.TB, a, b *mesh.Mesh, l *meshnet.Listener) (ac, bc *meshnet.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	ac, err := meshnet.Dial(ctx, a, b.ID(), testProto)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	bc = c.(*meshnet.Conn)
	t.Cleanup(func() { ac.Close(); bc.Close() })
	return ac, bc
}

// listen listens on testProto on m until the test ends.
func listen(t testing.TB, m *mesh.Mesh) *meshnet.Listener {
	t.Helper()
	l, err := meshnet.Listen(m, testProto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// waitFor waits until cond holds, failing the test after setupTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(setupTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
