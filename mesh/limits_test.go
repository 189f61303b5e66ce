package mesh

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
)

// Guards XX dials that race to one node: two concurrent Connect calls
// with the zero Pin to a new node both complete with the same peer, and no
// dial is left waiting (the second dial's session was once confirmed but
// never installed, so its Connect hung until its context ended).
func TestConcurrentXXConnects(t *testing.T) {
	for round := range 5 {
		a, b := startNode(t), startNode(t)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var wg sync.WaitGroup
		peers, errs := make([]*Peer, 2), make([]error, 2)
		for i := range 2 {
			wg.Go(func() { peers[i], errs[i] = a.Connect(ctx, b.Addr(), Pin{}) })
		}
		wg.Wait()
		cancel()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: connect %d: %v", round, i, err)
			}
		}
		if peers[0] != peers[1] {
			t.Fatalf("round %d: the connects returned different peers", round)
		}
		// Both directions work on whichever sessions the sides kept.
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := a.SendDatagram(dctx, peers[0], []byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, MaxDatagramSize)
		_, from, err := b.ReadDatagram(dctx, buf)
		if err != nil {
			t.Fatalf("round %d: a to b: %v", round, err)
		}
		if err := b.SendDatagram(dctx, from, []byte("pong")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.ReadDatagram(dctx, buf); err != nil {
			t.Fatalf("round %d: b to a: %v", round, err)
		}
		dcancel()
		a.tr.hs.mu.Lock()
		n := len(a.tr.hs.confirming)
		a.tr.hs.mu.Unlock()
		if n != 0 {
			t.Fatalf("round %d: %d dials still wait for confirmation", round, n)
		}
	}
}

// Guards against muxes on demand: a frame on a protocol that nobody
// takes streams on is dropped and counted without building a stream.Mux
// (a goroutine and its buffers, kept for the session: one empty frame per
// protocol once cost ~192 goroutines and ~8 MiB per peer).
func TestNoMuxForUnheardProtocols(t *testing.T) {
	a, b, pb := pair(t)
	before := drops(b, DropNoHandler)
	const n = 200
	for i := range n {
		proto := Protocol{name: fmt.Sprint("unheard/", i), id: wire.Proto(minNamedProto + i)}
		for a.SendFrame(pb, proto, nil) != nil {
			time.Sleep(time.Millisecond)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for drops(b, DropNoHandler)-before < n && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	pa := b.Peer(a.ID())
	for _, pm := range pa.streams.all() {
		if pm.proto >= minNamedProto {
			t.Fatalf("b built a Mux for protocol %d, which nobody listens on (%d muxes in all)", pm.proto, len(pa.streams.all()))
		}
	}
}

// Guards MaxPeers against strangers: IK initiations that are never
// completed (one packet each, from any address) make peers that never come
// up, and these must give way to a node that completes its handshake
// rather than lock it out, while peers that came up stay.
func TestUnconfirmedPeersGiveWay(t *testing.T) {
	const max = 8
	b := startNode(t, func(c *Config) { c.MaxPeers = max })
	c := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	raw := rawSocket(t)
	dst := net.UDPAddrFromAddrPort(b.Addr())
	for i := range 2 * max {
		raw.WriteToUDP(ikInitiation(t, b.id.PublicKey(), uint32(100+i)), dst)
	}
	deadline := time.Now().Add(3 * time.Second)
	for b.tr.stats.handshakesProcessed.Load() < 2*max+1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	a := startNode(t)
	if _, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()}); err != nil {
		t.Fatalf("a genuine node cannot connect after %d unanswered initiations (peer_limit drops %d): %v", 2*max, drops(b, DropPeerLimit), err)
	}
	if n := len(b.Peers()); n > max {
		t.Fatalf("b keeps %d peers, MaxPeers is %d", n, max)
	}
	if p := b.Peer(c.ID()); p == nil || !p.IsUp() {
		t.Fatal("a confirmed peer was forgotten to make room")
	}
}

// Guards the order in which unconfirmed peers give way at MaxPeers: the
// oldest goes first, so a stream of strangers replaces its own entries
// and the newest initiator, the one most likely to be completing its
// handshake, stays longest.
func TestUnconfirmedPeersOldestGivesWay(t *testing.T) {
	const max = 4
	b := startNode(t, func(c *Config) { c.MaxPeers = max })
	raw := rawSocket(t)
	dst := net.UDPAddrFromAddrPort(b.Addr())
	known := map[identity.NodeID]bool{}
	var order []identity.NodeID
	initiate := func(i int) {
		t.Helper()
		raw.WriteToUDP(ikInitiation(t, b.id.PublicKey(), uint32(100+i)), dst)
		deadline := time.Now().Add(3 * time.Second)
		for {
			for _, p := range b.Peers() {
				if !known[p.ID()] {
					known[p.ID()] = true
					order = append(order, p.ID())
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("initiation %d made no peer (peer_limit drops: %d)", i, drops(b, DropPeerLimit))
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range max + 4 {
		initiate(i)
	}
	for i, id := range order {
		kept := b.Peer(id) != nil
		if want := i >= 4; kept != want {
			t.Errorf("stranger %d of %d: kept=%v, want %v (the oldest four give way)", i, len(order), kept, want)
		}
	}
}

// Guards the XX pending table: XX initiations that are never completed
// (no identity, spoofable source) must not keep it full. From half full
// the node demands cookies, and a full table gives up its oldest entry,
// so a genuine XX handshake still completes.
func TestXXPendingTableFull(t *testing.T) {
	b := startNode(t, func(c *Config) { c.HandshakeGiveUp = 10 * time.Second })
	// The state a slow stream of spoofed initiations leaves behind.
	b.tr.hs.mu.Lock()
	for range maxResponderPending {
		i := b.tr.newIndexLocked()
		b.tr.hs.pending[i] = &handshake{local: i, remote: i, created: b.tr.now()}
	}
	b.tr.hs.mu.Unlock()
	deadline := time.Now().Add(3 * time.Second)
	for !b.tr.underLoad() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !b.tr.underLoad() {
		t.Fatal("a full pending table does not put the node under load")
	}
	a := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := a.Connect(ctx, b.Addr(), Pin{}); err != nil {
		t.Fatalf("genuine XX handshake refused (queue_full drops %d): %v", drops(b, DropQueueFull), err)
	}
	b.tr.hs.mu.Lock()
	n := len(b.tr.hs.pending)
	b.tr.hs.mu.Unlock()
	if n > maxResponderPending {
		t.Fatalf("pending table holds %d entries, bound %d", n, maxResponderPending)
	}
	if b.tr.stats.cookiesSent.Load() == 0 {
		t.Fatal("no cookie was demanded")
	}
}

// Guards relayed initiations: under load, one peer may relay at most
// HandshakeRate initiations a second; beyond that they are dropped
// before any Diffie-Hellman work (they once skipped every check).
func TestRelayedInitiationsRateLimited(t *testing.T) {
	a, b, pb := pair(t)
	b.tr.guard.underLoadUntil.Store(b.tr.now() + int64(time.Hour))
	const n = 100
	bodies := make([][]byte, n) // made first: under the race detector each takes a while
	for i := range bodies {
		pkt := ikInitiation(t, b.id.PublicKey(), uint32(1000+i))
		body := make([]byte, wire.RouteHeaderSize+len(pkt))
		wire.PutRouteHeader(body, wire.RouteHeader{Src: a.ID(), Dst: b.ID()})
		copy(body[wire.RouteHeaderSize:], pkt)
		bodies[i] = body
	}
	before := b.tr.stats.handshakesProcessed.Load()
	for _, body := range bodies {
		for a.SendFrame(pb, protoRoute, body) != nil {
			time.Sleep(time.Millisecond)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.tr.stats.handshakesProcessed.Load()-before+drops(b, DropRateLimited) < n && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	limited := drops(b, DropRateLimited)
	if limited < n/2 {
		t.Fatalf("%d of %d relayed initiations rate limited (%d processed)", limited, n, b.tr.stats.handshakesProcessed.Load()-before)
	}
}
