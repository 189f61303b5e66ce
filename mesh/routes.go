package mesh

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"

	"github.com/netmesh/netmesh/identity"
)

// Routing. A node reaches a peer directly when it can, and otherwise
// through relays: neighbours it has direct sessions with, which forward
// routed frames hop by hop (see wire.RouteHeader). Each node picks the next
// hop for a destination from, in order of preference:
//
//  1. a direct session with the destination;
//  2. a static route (AddRoute);
//  3. a route learned from capability announcements: "origin via the
//     neighbour it came from, h hops"; fewest hops wins, then lowest RTT;
//  4. the reverse route of traffic that came from the destination through
//     a neighbour, so replies retrace the request's path.
//
// Routes never point back at the neighbour a packet came from (split
// horizon), every routed packet carries a hop count that relays cap at
// wire.MaxHops, so a routing loop costs at most MaxHops forwards.

// routeKind orders route sources by preference: lower is better.
type routeKind uint8

const (
	routeStatic routeKind = iota
	routeAnnounced
	routeReverse
)

func (k routeKind) String() string {
	return [...]string{"static", "announced", "reverse"}[k]
}

// route is one way to reach a node.
type route struct {
	via     identity.NodeID
	hops    int
	kind    routeKind
	expires int64 // mono ns; 0 never
}

// better reports whether r should replace o.
func (r route) better(o route, now int64) bool {
	if o.expires != 0 && o.expires < now {
		return true
	}
	if r.kind != o.kind {
		return r.kind < o.kind
	}
	if r.via == o.via {
		return r.hops <= o.hops // a refresh
	}
	return r.hops < o.hops
}

// tie reports whether r and o are equally good but for the neighbour.
func (r route) tie(o route) bool { return r.kind == o.kind && r.hops == o.hops && r.via != o.via }

// routeTable is the node's routes, with a lock of its own: forwarding a
// packet read-locks it, learning a route write-locks it, and neither
// waits on handshakes.
type routeTable struct {
	mu     sync.RWMutex
	routes map[identity.NodeID]route
	// reverse counts the reverse routes in routes, reverseVia those
	// through each neighbour (see maxReverseRoutes).
	reverse    int
	reverseVia map[identity.NodeID]int
	// due is the earliest expiry of a learned route (mono ns), or 0 if
	// none expires: expire walks the table only once it has passed.
	due int64
}

func (rt *routeTable) init() {
	rt.routes = make(map[identity.NodeID]route)
	rt.reverseVia = make(map[identity.NodeID]int)
}

// get returns the route to dst, if any.
func (rt *routeTable) get(dst identity.NodeID) (route, bool) {
	rt.mu.RLock()
	r, ok := rt.routes[dst]
	rt.mu.RUnlock()
	return r, ok
}

// learn records r as the route to dst if it beats the current one.
// faster reports whether neighbour a has a lower measured RTT than b. It
// reports whether a reverse route was refused for want of room.
func (rt *routeTable) learn(dst identity.NodeID, r route, now int64, faster func(a, b identity.NodeID) bool) (refused bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	old, ok := rt.routes[dst]
	if ok && !r.better(old, now) && !(r.tie(old) && faster(r.via, old.via)) {
		return false
	}
	if r.kind == routeReverse && !rt.reverseRoomLocked(old, ok, r.via) {
		return true
	}
	rt.setLocked(dst, r)
	return false
}

// set makes r the route to dst, whatever was there.
func (rt *routeTable) set(dst identity.NodeID, r route) {
	rt.mu.Lock()
	rt.setLocked(dst, r)
	rt.mu.Unlock()
}

// reverseRoomLocked reports whether a reverse route through via may
// replace old (ok: there is one) within maxReverseRoutesPerPeer and
// maxReverseRoutes. Refreshing a reverse route through via always may.
func (rt *routeTable) reverseRoomLocked(old route, ok bool, via identity.NodeID) bool {
	wasReverse := ok && old.kind == routeReverse
	if wasReverse && old.via == via {
		return true
	}
	return rt.reverseVia[via] < maxReverseRoutesPerPeer && (wasReverse || rt.reverse < maxReverseRoutes)
}

// setLocked makes r the route to dst, keeping count of reverse routes.
func (rt *routeTable) setLocked(dst identity.NodeID, r route) {
	rt.deleteLocked(dst)
	if r.kind == routeReverse {
		rt.reverse++
		rt.reverseVia[r.via]++
	}
	rt.routes[dst] = r
	if r.expires != 0 && (rt.due == 0 || r.expires < rt.due) {
		rt.due = r.expires
	}
}

// deleteLocked forgets the route to dst, keeping count of reverse routes.
func (rt *routeTable) deleteLocked(dst identity.NodeID) {
	old, ok := rt.routes[dst]
	if !ok {
		return
	}
	delete(rt.routes, dst)
	if old.kind != routeReverse {
		return
	}
	rt.reverse--
	if rt.reverseVia[old.via]--; rt.reverseVia[old.via] == 0 {
		delete(rt.reverseVia, old.via)
	}
}

// expire forgets learned routes past their lifetime. The timer loop
// calls it.
func (rt *routeTable) expire(now int64) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.due == 0 || rt.due >= now {
		return
	}
	rt.due = 0
	for dst, r := range rt.routes {
		switch {
		case r.expires == 0:
		case r.expires < now:
			rt.deleteLocked(dst)
		case rt.due == 0 || r.expires < rt.due:
			rt.due = r.expires
		}
	}
}

// faster reports whether neighbour a has a lower measured RTT than b.
func (t *transport) faster(a, b identity.NodeID) bool {
	pa, pb := t.peers.get(a), t.peers.get(b)
	return pa != nil && pa.RTT() > 0 && (pb == nil || pb.RTT() == 0 || pa.RTT() < pb.RTT())
}

// AddRoute makes via, a directly connected peer, the next hop towards dst.
// Static routes are preferred over learned ones and never expire.
func (m *Mesh) AddRoute(dst, via identity.NodeID) {
	m.tr.routes.set(dst, route{via: via, hops: 1, kind: routeStatic})
}

// learnRoute records a learned route if it beats the current one.
func (t *transport) learnRoute(dst identity.NodeID, r route) {
	if dst == t.id.NodeID() || dst == r.via {
		return
	}
	if t.routes.learn(dst, r, t.now(), t.faster) {
		t.stats.routesRefused.Add(1)
		return
	}
	t.routeWait.notify()
}

// learnReverseRoute notes that src's traffic reached us through
// neighbour from. src is authenticated only when this node opened the
// packet; a relay takes the routed header's word for it, which the
// bounds on reverse routes contain.
func (t *transport) learnReverseRoute(src identity.NodeID, from *Peer) {
	if src == from.id {
		return
	}
	old, ok := t.routes.get(src)
	now := t.now()
	// Refreshing an existing reverse route through the same neighbour
	// costs only a read lock on most packets.
	if ok && old.kind == routeReverse && old.via == from.id && old.expires-now > int64(reverseRouteLifetime)/2 {
		return
	}
	t.learnRoute(src, route{via: from.id, hops: 1, kind: routeReverse, expires: now + int64(reverseRouteLifetime)})
}

// nextHop returns the directly reachable peer that packets for dst should
// go to, never from (split horizon); nil if there is none.
func (t *transport) nextHop(dst identity.NodeID, from *Peer) *Peer {
	direct := func(p *Peer) bool {
		if p == nil || p == from || p.cur.Load() == nil {
			return false
		}
		ep := p.ep.Load()
		return ep != nil && ep.relay == nil
	}
	if p := t.peers.get(dst); direct(p) {
		return p
	}
	if r, ok := t.routes.get(dst); ok && (r.expires == 0 || r.expires > t.now()) {
		if p := t.peers.get(r.via); direct(p) {
			return p
		}
	}
	return nil
}

// connectNode establishes an end-to-end session with the node id (see
// Mesh.ConnectNode); key may be nil. With no route yet, it waits for one
// while a configured relay may still come up.
func (t *transport) connectNode(ctx context.Context, id identity.NodeID, key ed25519.PublicKey) (*Peer, error) {
	for {
		// Routes appear when a peer comes up (a relay's session) or is
		// announced; asked for before looking, the next one is not missed.
		wake := t.routeWait.wait()
		t.hs.mu.Lock()
		p, path, pin := t.pathToLocked(id, key)
		if p != nil && p.current != nil {
			t.hs.mu.Unlock()
			return p, nil
		}
		if path != nil {
			d := t.newDialLocked(path, pin)
			t.hs.mu.Unlock()
			return t.waitDial(ctx, d)
		}
		t.hs.mu.Unlock()
		if len(t.cfg.Relays) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNoRoute, id)
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s: no relay came up: %w", ErrNoRoute, id, ctx.Err())
		case <-t.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// pathToLocked returns the peer with id if known, the path a dial to it
// should take (nil: no route), and the pin it should carry.
func (t *transport) pathToLocked(id identity.NodeID, key ed25519.PublicKey) (*Peer, *endpoint, Pin) {
	pin := Pin{Key: key, ID: id}
	p := t.peers.get(id)
	if p != nil && p.current != nil {
		return p, nil, pin
	}
	if pin.Key == nil && p != nil {
		pin.Key = p.key
	}
	var path *endpoint
	switch via := t.nextHop(id, nil); {
	case p != nil && p.ep.Load() != nil:
		path = p.ep.Load() // the last path that worked
	case via != nil && via.id == id:
		path = via.ep.Load()
	case via != nil:
		path = &endpoint{relay: via, node: id, why: "no direct address known; routed via " + via.id.Short()}
	default:
		if r := t.upRelay(); r != nil {
			path = &endpoint{relay: r, node: id, why: "no direct address known; relayed by " + r.id.Short()}
		}
	}
	return p, path, pin
}

// signal wakes whoever waits for it, once per wait: the waiters of
// routeWait learn that a route may have appeared.
type signal struct {
	mu sync.Mutex
	ch chan struct{} // nil while nobody waits
}

// wait returns a channel closed by the next notify.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// notify wakes the waiters, if any.
func (s *signal) notify() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// ConnectNode establishes an end-to-end session with the node id, or
// returns the peer if one is up. With no direct address for it, the
// handshake runs over a routed path: a route from AddRoute or from
// announcements, else one of Config.Relays. With no route yet, it fails
// with ErrNoRoute, unless relays are configured: it then waits until one
// is up (a node that has just started dials its relays) or a route is
// learned, and dials at once, or fails with ErrNoRoute when ctx ends.
// Giving key makes the handshake one round trip (IK); nil runs XX pinned
// to id, unless the node is known (a peer, or announced and signed),
// which gives its key.
func (m *Mesh) ConnectNode(ctx context.Context, id identity.NodeID, key ed25519.PublicKey) (*Peer, error) {
	if !m.tr.started.Load() {
		return nil, ErrNotStarted
	}
	if m.tr.closed.Load() || m.tr.leaving.Load() {
		return nil, ErrClosed
	}
	if key != nil && identity.NodeIDFromKey(key) != id {
		return nil, fmt.Errorf("%w: key has id %s, want %s", ErrPeerMismatch, identity.NodeIDFromKey(key), id)
	}
	if n, ok := m.caps.Index().Lookup(id); ok {
		if key == nil && m.tr.peers.get(id) == nil {
			key = n.Key // announced and signed: IK saves a round trip
		}
		// The engine indexes an announcement before it reports the route
		// the announcement taught: a node just found in the index may have
		// no route yet. Its record names the same route.
		if _, known := m.tr.routes.get(id); !known && !n.Via.IsZero() {
			m.learnAnnouncedRoute(id, n.Via, n.Hops, n.Expires)
		}
	}
	return m.tr.connectNode(ctx, id, key)
}

// upRelay returns a configured relay with a direct session.
func (t *transport) upRelay() *Peer {
	for _, r := range t.cfg.Relays {
		if p := t.findPeer(r.Addr, r.Pin.ID); p != nil && p.cur.Load() != nil {
			if ep := p.ep.Load(); ep != nil && ep.relay == nil {
				return p
			}
		}
	}
	return nil
}

// keepRelays connects to every configured relay that is down. The timer
// loop calls it every relayRetry.
func (t *transport) keepRelays() {
	if t.leaving.Load() {
		return
	}
	for _, r := range t.cfg.Relays {
		p := t.findPeer(r.Addr, r.Pin.ID)
		if p != nil && p.cur.Load() != nil {
			continue
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			ctx, cancel := context.WithTimeout(t.ctx, t.t.giveUp)
			defer cancel()
			if _, err := t.connect(ctx, r.Addr, r.Pin); err != nil {
				t.log.Warn("relay unreachable", "addr", r.Addr, "err", err)
			}
		}()
	}
}
