package mesh

import (
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Route choice: fewer hops wins; equal hops go to the neighbour with the
// lower RTT; static beats announced beats reverse; learned routes expire.
func TestRouteSelection(t *testing.T) {
	m := startNode(t)
	dst := identity.NodeID{9}
	fast, slow := identity.NodeID{1}, identity.NodeID{2}
	m.mu.Lock()
	for id, rtt := range map[identity.NodeID]time.Duration{fast: time.Millisecond, slow: 20 * time.Millisecond} {
		p := m.peerLocked(id, nil)
		p.rtt.Store(int64(rtt))
	}
	m.mu.Unlock()
	via := func() identity.NodeID {
		m.mu.RLock()
		defer m.mu.RUnlock()
		return m.routes[dst].via
	}
	soon := m.now() + int64(time.Hour)

	m.learnRoute(dst, route{via: slow, hops: 3, kind: routeAnnounced, expires: soon})
	m.learnRoute(dst, route{via: fast, hops: 4, kind: routeAnnounced, expires: soon})
	if via() != slow {
		t.Fatal("a longer route replaced a shorter one")
	}
	m.learnRoute(dst, route{via: fast, hops: 3, kind: routeAnnounced, expires: soon})
	if via() != fast {
		t.Fatal("equal hops did not go to the neighbour with the lower RTT")
	}
	m.learnRoute(dst, route{via: slow, hops: 3, kind: routeAnnounced, expires: soon})
	if via() != fast {
		t.Fatal("a slower neighbour took an equal route")
	}
	m.learnRoute(dst, route{via: slow, hops: 1, kind: routeReverse, expires: soon})
	if via() != fast {
		t.Fatal("a reverse route replaced an announced one")
	}
	m.AddRoute(dst, slow)
	if via() != slow {
		t.Fatal("a static route did not win")
	}

	other := identity.NodeID{8}
	m.learnRoute(other, route{via: fast, hops: 2, kind: routeAnnounced, expires: m.now() + int64(50*time.Millisecond)})
	time.Sleep(60 * time.Millisecond)
	m.mu.Lock()
	m.expireRoutesLocked(m.now())
	_, kept := m.routes[other]
	_, static := m.routes[dst]
	m.mu.Unlock()
	if kept || !static {
		t.Fatalf("after expiry: expired route kept=%v, static route kept=%v", kept, static)
	}
}
