package mesh

import (
	"context"
	"crypto/ed25519"
	"fmt"

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

// fasterLocked reports whether neighbour a has a lower measured RTT than b.
func (m *Mesh) fasterLocked(a, b identity.NodeID) bool {
	pa, pb := m.peers[a], m.peers[b]
	return pa != nil && pa.RTT() > 0 && (pb == nil || pb.RTT() == 0 || pa.RTT() < pb.RTT())
}

// AddRoute makes via, a directly connected peer, the next hop towards dst.
// Static routes are preferred over learned ones and never expire.
func (m *Mesh) AddRoute(dst, via identity.NodeID) {
	m.mu.Lock()
	m.setRouteLocked(dst, route{via: via, hops: 1, kind: routeStatic})
	m.mu.Unlock()
}

// learnRoute records a learned route if it beats the current one.
func (m *Mesh) learnRoute(dst identity.NodeID, r route) {
	if dst == m.id.NodeID() || dst == r.via {
		return
	}
	now := m.now()
	m.mu.Lock()
	if old, ok := m.routes[dst]; !ok || r.better(old, now) || r.tie(old) && m.fasterLocked(r.via, old.via) {
		if r.kind != routeReverse || m.reverseRoomLocked(old, ok, r.via) {
			m.setRouteLocked(dst, r)
		} else {
			m.stats.routesRefused.Add(1)
		}
	}
	m.mu.Unlock()
}

// reverseRoomLocked reports whether a reverse route through via may
// replace old (ok: there is one) within maxReverseRoutesPerPeer and
// maxReverseRoutes. Refreshing a reverse route through via always may.
func (m *Mesh) reverseRoomLocked(old route, ok bool, via identity.NodeID) bool {
	wasReverse := ok && old.kind == routeReverse
	if wasReverse && old.via == via {
		return true
	}
	return m.reverseVia[via] < maxReverseRoutesPerPeer && (wasReverse || m.reverseRoutes < maxReverseRoutes)
}

// setRouteLocked makes r the route to dst, keeping count of reverse
// routes.
func (m *Mesh) setRouteLocked(dst identity.NodeID, r route) {
	m.deleteRouteLocked(dst)
	if r.kind == routeReverse {
		m.reverseRoutes++
		m.reverseVia[r.via]++
	}
	m.routes[dst] = r
}

// deleteRouteLocked forgets the route to dst, keeping count of reverse
// routes.
func (m *Mesh) deleteRouteLocked(dst identity.NodeID) {
	old, ok := m.routes[dst]
	if !ok {
		return
	}
	delete(m.routes, dst)
	if old.kind != routeReverse {
		return
	}
	m.reverseRoutes--
	if m.reverseVia[old.via]--; m.reverseVia[old.via] == 0 {
		delete(m.reverseVia, old.via)
	}
}

// learnReverseRoute notes that src's traffic reached us through
// neighbour from. src is authenticated only when this node opened the
// packet; a relay takes the routed header's word for it, which the
// bounds on reverse routes contain.
func (m *Mesh) learnReverseRoute(src identity.NodeID, from *Peer) {
	if src == from.id {
		return
	}
	m.mu.RLock()
	old, ok := m.routes[src]
	m.mu.RUnlock()
	now := m.now()
	// Refreshing an existing reverse route through the same neighbour
	// costs only a read lock on most packets.
	if ok && old.kind == routeReverse && old.via == from.id && old.expires-now > int64(reverseRouteLifetime)/2 {
		return
	}
	m.learnRoute(src, route{via: from.id, hops: 1, kind: routeReverse, expires: now + int64(reverseRouteLifetime)})
}

// nextHop returns the directly reachable peer that packets for dst should
// go to, never from (split horizon); nil if there is none.
func (m *Mesh) nextHop(dst identity.NodeID, from *Peer) *Peer {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.nextHopLocked(dst, from)
}

func (m *Mesh) nextHopLocked(dst identity.NodeID, from *Peer) *Peer {
	direct := func(p *Peer) bool {
		if p == nil || p == from || p.cur.Load() == nil {
			return false
		}
		ep := p.ep.Load()
		return ep != nil && ep.relay == nil
	}
	if p := m.peers[dst]; direct(p) {
		return p
	}
	if r, ok := m.routes[dst]; ok && (r.expires == 0 || r.expires > m.now()) {
		if p := m.peers[r.via]; direct(p) {
			return p
		}
	}
	return nil
}

// ConnectNode establishes an end-to-end session with the node id, or
// returns the peer if one is up. With no direct address for it, the
// handshake runs over a routed path: a route from AddRoute or from
// announcements, else one of Config.Relays. Giving key makes the handshake
// one round trip (IK); nil runs XX pinned to id.
func (m *Mesh) ConnectNode(ctx context.Context, id identity.NodeID, key ed25519.PublicKey) (*Peer, error) {
	if !m.started.Load() {
		return nil, ErrNotStarted
	}
	if m.closed.Load() {
		return nil, ErrClosed
	}
	pin := Pin{Key: key, ID: id}
	if key != nil && identity.NodeIDFromKey(key) != id {
		return nil, fmt.Errorf("%w: key has id %s, want %s", ErrPeerMismatch, identity.NodeIDFromKey(key), id)
	}
	m.mu.Lock()
	p := m.peers[id]
	if p != nil && p.current != nil {
		m.mu.Unlock()
		return p, nil
	}
	if pin.Key == nil && p != nil {
		pin.Key = p.key
	}
	if pin.Key == nil {
		if n, ok := m.caps.Index().Lookup(id); ok {
			pin.Key = n.Key // announced and signed: IK saves a round trip
		}
	}
	var path *endpoint
	switch via := m.nextHopLocked(id, nil); {
	case p != nil && p.ep.Load() != nil:
		path = p.ep.Load() // the last path that worked
	case via != nil && via.id == id:
		path = via.ep.Load()
	case via != nil:
		path = &endpoint{relay: via, node: id, why: "no direct address known; routed via " + via.id.Short()}
	default:
		if r := m.upRelayLocked(); r != nil {
			path = &endpoint{relay: r, node: id, why: "no direct address known; relayed by " + r.id.Short()}
		}
	}
	if path == nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNoRoute, id)
	}
	d := m.newDialLocked(path, pin)
	m.mu.Unlock()
	return m.waitDial(ctx, d)
}

// upRelayLocked returns a configured relay with a direct session.
func (m *Mesh) upRelayLocked() *Peer {
	for _, r := range m.cfg.Relays {
		if p := m.findPeerLocked(r.Addr, r.Pin.ID); p != nil && p.cur.Load() != nil {
			if ep := p.ep.Load(); ep != nil && ep.relay == nil {
				return p
			}
		}
	}
	return nil
}

// expireRoutesLocked forgets learned routes past their lifetime.
func (m *Mesh) expireRoutesLocked(now int64) {
	for dst, r := range m.routes {
		if r.expires != 0 && r.expires < now {
			m.deleteRouteLocked(dst)
		}
	}
}

// keepRelays connects to every configured relay that is down. The timer
// loop calls it every relayRetry.
func (m *Mesh) keepRelays() {
	for _, r := range m.cfg.Relays {
		m.mu.RLock()
		p := m.findPeerLocked(r.Addr, r.Pin.ID)
		up := p != nil && p.cur.Load() != nil
		m.mu.RUnlock()
		if up {
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			ctx, cancel := context.WithTimeout(m.ctx, m.t.giveUp)
			defer cancel()
			if _, err := m.Connect(ctx, r.Addr, r.Pin); err != nil {
				m.log.Warn("relay unreachable", "addr", r.Addr, "err", err)
			}
		}()
	}
}
