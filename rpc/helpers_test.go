package rpc_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
	"github.com/netmesh/netmesh/rpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newNode starts a node with fast timers (a dead peer is noticed in
// 600 ms) and fast capability gossip, closed when the test ends.
func newNode(t testing.TB, mod ...func(*mesh.Config)) *mesh.Mesh {
	t.Helper()
	gossip := func(c *mesh.Config) {
		c.Capabilities.TTL = 3 * time.Second
		c.Capabilities.MinAnnounceInterval = 100 * time.Millisecond
	}
	return testnode.Start(t, append([]func(*mesh.Config){testnode.FastTimers, gossip}, mod...)...)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connect(t testing.TB, a, b *mesh.Mesh) *mesh.Peer {
	t.Helper()
	p, err := a.Connect(ctxT(t), b.Addr(), mesh.Pin{})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return p
}

func newServer(t testing.TB, m *mesh.Mesh, opts rpc.ServerOptions) *rpc.Server {
	t.Helper()
	srv, err := rpc.NewServer(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
	})
	return srv
}

// setup is one server node and one client node, connected.
type setup struct {
	sm, cm *mesh.Mesh
	srv    *rpc.Server
	c      *rpc.Client
	peer   *mesh.Peer // the server, seen from the client
}

func newSetup(t testing.TB, so rpc.ServerOptions, co rpc.ClientOptions, mod ...func(*mesh.Config)) *setup {
	t.Helper()
	s := &setup{sm: newNode(t, mod...), cm: newNode(t, mod...)}
	s.srv = newServer(t, s.sm, so)
	s.c = rpc.NewClient(s.cm, co)
	s.peer = connect(t, s.cm, s.sm)
	return s
}

func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rpcErr asserts err is an *rpc.Error of kind k and returns it.
func rpcErr(t testing.TB, err error, k rpc.Kind) *rpc.Error {
	t.Helper()
	re, ok := err.(*rpc.Error)
	if !ok {
		t.Fatalf("error %v (%T), want an *rpc.Error of kind %s", err, err, k)
	}
	if re.Kind != k {
		t.Fatalf("error %v: kind %s, want %s", err, re.Kind, k)
	}
	return re
}

// serverErr asserts err is a server error with status st.
func serverErr(t testing.TB, err error, st rpc.Status) *rpc.Error {
	t.Helper()
	re := rpcErr(t, err, rpc.KindServer)
	if re.Status != st {
		t.Fatalf("error %v: status %#x, want %#x", err, uint16(re.Status), uint16(st))
	}
	return re
}
