package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/bootstrap"
	"github.com/netmesh/netmesh/dialaddr"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/dnstest"
	"github.com/netmesh/netmesh/mesh"
)

// setupTimeout bounds each wait of a test.
const setupTimeout = 20 * time.Second

// fast are session timers that notice a dead peer within a second.
var fast = mesh.Config{
	KeepaliveInterval:   100 * time.Millisecond,
	DeadPeerTimeout:     300 * time.Millisecond,
	HandshakeRetransmit: 50 * time.Millisecond,
	HandshakeGiveUp:     time.Second,
}

// fastKeeper are keeper timings for tests.
func fastKeeper(logs *syncBuffer) bootstrap.Options {
	return bootstrap.Options{
		ConnectTimeout: 2 * time.Second,
		BackoffMin:     20 * time.Millisecond,
		BackoffMax:     200 * time.Millisecond,
		Recheck:        100 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(logs, nil)),
	}
}

// TestKeepReconnects starts a keeper before its peer exists, then
// restarts the peer and checks that the keeper brings the session back.
func TestKeepReconnects(t *testing.T) {
	idB, _ := identity.Generate()
	addrB := freeAddr(t)
	a := startNode(t, fast)
	var logs syncBuffer
	keep(t, a, []string{addrB.String() + ",key=" + hexKey(idB)}, fastKeeper(&logs))

	up := func() bool { p := a.Peer(idB.NodeID()); return p != nil && p.IsUp() }
	waitFor(t, "the keeper to log a failed attempt", func() bool { return strings.Contains(logs.String(), "bootstrap peer unreachable") })
	cfgB := fast
	cfgB.Identity, cfgB.ListenAddr = idB, addrB.String()
	b := startNode(t, cfgB)
	waitFor(t, "the first session", up)

	b.Close()
	waitFor(t, "a to see b down", func() bool { return !up() })
	startNode(t, cfgB)
	waitFor(t, "the session to come back", up)
	waitFor(t, "the keeper to log the reconnect", func() bool { return strings.Contains(logs.String(), "bootstrap peer down, reconnecting") })
}

// TestKeeperStatus: a keeper says why a peer it cannot reach is down and
// when it tries next, and that a peer it reached is up.
func TestKeeperStatus(t *testing.T) {
	idB, _ := identity.Generate()
	addrB := freeAddr(t)
	a := startNode(t, fast)
	var logs syncBuffer
	k := keep(t, a, []string{addrB.String() + ",key=" + hexKey(idB)}, fastKeeper(&logs))
	waitFor(t, "a failed attempt in the status", func() bool {
		st := k.Status()
		return len(st) == 1 && st[0].Err != nil && !st[0].Retry.IsZero() && !st[0].Up
	})
	if st := k.Status()[0]; st.ID != idB.NodeID() || st.Peer.String() != addrB.String()+",key="+hexKey(idB) {
		t.Fatalf("status %+v: want the pinned id and the dial string", st)
	}
	cfgB := fast
	cfgB.Identity, cfgB.ListenAddr = idB, addrB.String()
	startNode(t, cfgB)
	waitFor(t, "the peer up in the status", func() bool {
		st := k.Status()[0]
		return st.Up && st.Err == nil && st.Retry.IsZero()
	})
}

// TestKeepFollowsDNS names the peer by a DNS name and moves the name: the
// keeper reaches the peer at the address the name has at each attempt.
func TestKeepFollowsDNS(t *testing.T) {
	var current atomic.Pointer[netip.AddrPort]
	point := func(ap netip.AddrPort) { current.Store(&ap) }
	point(freeAddr(t)) // nobody there yet
	r := dnstest.Resolver(t, func(name string) (netip.Addr, bool) {
		return current.Load().Addr(), name == "peer.example.com."
	})
	// The name resolves to an address; the port is the dial string's, so
	// both homes of the peer use one port, on two loopback addresses.
	port := current.Load().Port()
	idB, _ := identity.Generate()
	a := startNode(t, fast)
	var logs syncBuffer
	opts := fastKeeper(&logs)
	opts.Resolver = r
	keep(t, a, []string{"peer.example.com:" + strconv.Itoa(int(port)) + ",key=" + hexKey(idB)}, opts)
	up := func() bool { p := a.Peer(idB.NodeID()); return p != nil && p.IsUp() }

	waitFor(t, "a failed attempt at the empty address", func() bool { return strings.Contains(logs.String(), "bootstrap peer unreachable") })
	cfgB := fast
	cfgB.Identity, cfgB.ListenAddr = idB, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port).String()
	b := startNode(t, cfgB)
	point(b.Addr())
	waitFor(t, "the session at the name's new address", up)
	if got := a.Peer(idB.NodeID()).Endpoint(); got != b.Addr() {
		t.Fatalf("session endpoint %s, want %s", got, b.Addr())
	}

	// The peer moves to another address; the name follows it.
	b.Close()
	cfgB.ListenAddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), port).String()
	b = startNode(t, cfgB)
	point(b.Addr())
	waitFor(t, "the session at the moved address", func() bool {
		p := a.Peer(idB.NodeID())
		return p != nil && p.IsUp() && p.Endpoint() == b.Addr()
	})
}

// TestKeepByID reaches a peer with no address through a relay.
func TestKeepByID(t *testing.T) {
	r := startNode(t, mesh.Config{})
	relay := []mesh.Relay{{Addr: r.Addr(), Pin: mesh.Pin{Key: r.Identity().PublicKey()}}}
	cfgB := fast
	cfgB.Relays = relay
	b := startNode(t, cfgB)
	waitFor(t, "b to reach the relay", func() bool { p := b.Peer(r.ID()); return p != nil && p.IsUp() })
	cfgA := fast
	cfgA.Relays = relay
	a := startNode(t, cfgA)
	var logs syncBuffer
	keep(t, a, []string{"id=" + b.ID().String()}, fastKeeper(&logs))
	waitFor(t, "a session with b", func() bool { p := a.Peer(b.ID()); return p != nil && p.IsUp() })
}

// keep runs bootstrap.Keep for the dial strings until the test ends, and
// checks that it returns once its context ends.
func keep(t *testing.T, m *mesh.Mesh, dial []string, opts bootstrap.Options) *bootstrap.Keeper {
	t.Helper()
	var peers []dialaddr.Addr
	for _, s := range dial {
		a, err := dialaddr.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	k := bootstrap.New(m, peers, opts)
	go func() {
		k.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(setupTimeout):
			t.Error("Keep did not return after its context ended")
		}
	})
	return k
}

// startNode starts a mesh (on a random port of 127.0.0.1 unless cfg says
// otherwise), closed when the test ends.
func startNode(t *testing.T, cfg mesh.Config) *mesh.Mesh {
	t.Helper()
	if cfg.ListenAddr == "" {
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

// freeAddr returns an address of 127.0.0.1 with a port no node listens
// on, found by starting a node there and closing it.
func freeAddr(t *testing.T) netip.AddrPort {
	m := startNode(t, mesh.Config{})
	defer m.Close()
	return m.Addr()
}

// waitFor waits until cond holds, failing the test after setupTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(setupTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hexKey is id's public key as a dial string's key pin writes it.
func hexKey(id *identity.Identity) string { return hex.EncodeToString(id.PublicKey()) }

// syncBuffer is a bytes.Buffer safe for the keeper's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
