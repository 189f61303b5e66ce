package mesh

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
)

// Route choice: fewer hops wins; equal hops go to the neighbour with the
// lower RTT; static beats announced beats reverse; learned routes expire.
func TestRouteSelection(t *testing.T) {
	m := startNode(t)
	dst := identity.NodeID{9}
	fast, slow := identity.NodeID{1}, identity.NodeID{2}
	m.tr.hs.mu.Lock()
	for id, rtt := range map[identity.NodeID]time.Duration{fast: time.Millisecond, slow: 20 * time.Millisecond} {
		p := m.tr.peerLocked(id, nil)
		p.rtt.Store(int64(rtt))
	}
	m.tr.hs.mu.Unlock()
	via := func() identity.NodeID {
		r, _ := m.tr.routes.get(dst)
		return r.via
	}
	soon := m.tr.now() + int64(time.Hour)

	m.tr.learnRoute(dst, route{via: slow, hops: 3, kind: routeAnnounced, expires: soon})
	m.tr.learnRoute(dst, route{via: fast, hops: 4, kind: routeAnnounced, expires: soon})
	if via() != slow {
		t.Fatal("a longer route replaced a shorter one")
	}
	m.tr.learnRoute(dst, route{via: fast, hops: 3, kind: routeAnnounced, expires: soon})
	if via() != fast {
		t.Fatal("equal hops did not go to the neighbour with the lower RTT")
	}
	m.tr.learnRoute(dst, route{via: slow, hops: 3, kind: routeAnnounced, expires: soon})
	if via() != fast {
		t.Fatal("a slower neighbour took an equal route")
	}
	m.tr.learnRoute(dst, route{via: slow, hops: 1, kind: routeReverse, expires: soon})
	if via() != fast {
		t.Fatal("a reverse route replaced an announced one")
	}
	m.AddRoute(dst, slow)
	if via() != slow {
		t.Fatal("a static route did not win")
	}

	other := identity.NodeID{8}
	m.tr.learnRoute(other, route{via: fast, hops: 2, kind: routeAnnounced, expires: m.tr.now() + int64(50*time.Millisecond)})
	time.Sleep(60 * time.Millisecond)
	m.tr.routes.expire(m.tr.now())
	_, kept := m.tr.routes.get(other)
	_, static := m.tr.routes.get(dst)
	if kept || !static {
		t.Fatalf("after expiry: expired route kept=%v, static route kept=%v", kept, static)
	}
}

// expire walks the table only once the earliest expiry has passed, and
// every learned route still goes at its time; static routes stay.
func TestRouteExpiryWhenDue(t *testing.T) {
	var rt routeTable
	rt.init()
	a, b, static := identity.NodeID{1}, identity.NodeID{2}, identity.NodeID{3}
	via := identity.NodeID{9}
	rt.set(a, route{via: via, hops: 2, kind: routeAnnounced, expires: 100})
	rt.set(b, route{via: via, hops: 2, kind: routeAnnounced, expires: 200})
	rt.set(static, route{via: via, hops: 1, kind: routeStatic})
	check := func(now int64, due int64, present ...identity.NodeID) {
		t.Helper()
		rt.expire(now)
		if rt.due != due || len(rt.routes) != len(present) {
			t.Fatalf("at %d: due %d, %d routes; want due %d, %d routes", now, rt.due, len(rt.routes), due, len(present))
		}
		for _, id := range present {
			if _, ok := rt.get(id); !ok {
				t.Fatalf("at %d: the route to %v is gone", now, id)
			}
		}
	}
	check(50, 100, a, b, static)
	check(100, 100, a, b, static) // expires after its expiry, not at it
	check(101, 200, b, static)
	rt.set(b, route{via: via, hops: 2, kind: routeAnnounced, expires: 300}) // a refresh
	check(250, 300, b, static)                                              // a walk finds nothing: due moves on
	check(301, 0, static)
	check(1000, 0, static)
}

// sendForged makes a send n routed frames to b's peer pb with hop count 1
// (so the source is not checked against the sender), made-up sources and
// a 1-byte inner packet, and returns the sources.
func sendForged(t *testing.T, a *Mesh, pb *Peer, dst identity.NodeID, n int) map[identity.NodeID]bool {
	t.Helper()
	srcs := make(map[identity.NodeID]bool, n)
	body := make([]byte, wire.RouteHeaderSize+1)
	for i := 0; i < n; i++ {
		var src identity.NodeID
		rand.Read(src[:])
		srcs[src] = true
		wire.PutRouteHeader(body, wire.RouteHeader{Hops: 1, Src: src, Dst: dst})
		body[wire.RouteHeaderSize] = 0xFF
		for a.SendFrame(pb, protoRoute, body) != nil {
			time.Sleep(time.Millisecond)
		}
		if i%256 == 255 {
			time.Sleep(2 * time.Millisecond) // let the receiver keep up
		}
	}
	return srcs
}

// Guards the route table against forged sources: a routed packet for this
// node teaches it a reverse route only once the source's session has
// opened the inner packet (a peer's made-up sources once added one route
// each, without bound).
func TestForgedSourcesLearnNoRoute(t *testing.T) {
	a, b, pb := pair(t)
	const n = 1500
	before := drops(b, DropUnknownType)
	srcs := sendForged(t, a, pb, b.ID(), n)
	deadline := time.Now().Add(5 * time.Second)
	for drops(b, DropUnknownType)-before < n && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond) // the inner packets are junk
	}
	rt := &b.tr.routes
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	learned := 0
	for dst := range rt.routes {
		if srcs[dst] {
			learned++
		}
	}
	if learned > 0 || rt.reverse > 0 {
		t.Fatalf("%d routes (%d reverse) learned from %d packets with forged sources", learned, rt.reverse, n)
	}
}

// Guards the bound on what a relay learns: it cannot check the source of
// what it forwards, so one neighbour gets at most maxReverseRoutesPerPeer
// reverse routes, and the rest are refused and counted while the packets
// are still forwarded.
func TestRelayReverseRoutesBounded(t *testing.T) {
	a, b, pb := pair(t)
	c := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Connect(ctx, c.Addr(), Pin{Key: c.id.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	const n = maxReverseRoutesPerPeer + 200
	sendForged(t, a, pb, c.ID(), n)
	deadline := time.Now().Add(5 * time.Second)
	for b.tr.stats.relayed.Load()+b.tr.stats.routesRefused.Load() < n && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	b.tr.routes.mu.RLock()
	via, total := b.tr.routes.reverseVia[a.ID()], b.tr.routes.reverse
	b.tr.routes.mu.RUnlock()
	st := b.Stats()
	t.Logf("b: %d reverse routes via a, %d in all, %d refused, %d relayed", via, total, st.RoutesRefused, st.Relayed)
	if via > maxReverseRoutesPerPeer || total > maxReverseRoutesPerPeer {
		t.Fatalf("%d reverse routes via one neighbour (%d in all), want at most %d", via, total, maxReverseRoutesPerPeer)
	}
	if st.RoutesRefused == 0 || st.Relayed < n/2 {
		t.Fatalf("refused %d routes, relayed %d of %d packets", st.RoutesRefused, st.Relayed, n)
	}
}

// A node found in the index is one ConnectNode reaches, even before the
// engine reports the route its announcement taught (it indexes first):
// ConnectNode takes the route from the node's record.
func TestConnectNodeFoundBeforeItsRoute(t *testing.T) {
	a, b, _ := pair(t)
	c := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	if err := c.AnnounceCapabilities(capability.Set{Tags: []string{"far"}}); err != nil {
		t.Fatal(err)
	}
	for len(a.FindNodes(capability.HasTag("far"))) == 0 {
		if ctx.Err() != nil {
			t.Fatal("a never learned of c")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The moment between indexing and reporting the route, made to last.
	a.tr.routes.mu.Lock()
	a.tr.routes.deleteLocked(c.ID())
	a.tr.routes.mu.Unlock()

	p, err := a.ConnectNode(ctx, c.ID(), nil)
	if err != nil {
		t.Fatalf("ConnectNode to a node in the index: %v", err)
	}
	if _, err := a.Ping(ctx, p); err != nil {
		t.Fatal(err)
	}
}
