package mesh

import (
	"crypto/ed25519"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// Peer is a remote node this node has (or had) a session with. A Peer
// value stays valid for the life of the mesh; its session comes and goes.
type Peer struct {
	m   *Mesh
	id  identity.NodeID
	key ed25519.PublicKey

	// Guarded by m.mu.
	current *session // sends use this one
	// retired are the sessions current replaced, newest first: they
	// still decrypt what the peer sealed on them until they are
	// RejectAfter old (see installLocked).
	retired  [maxRetired]*session
	next     *session // responder side: waits for the initiator's first packet
	dial     *dial    // handshake in progress that we started, if any
	lastInit uint64   // newest initiation timestamp accepted from this peer
	up       bool
	created  int64 // mono ns; without a session, the peer is forgotten ForgetAfter after this or lastRecv, whichever is later

	cur   atomic.Pointer[session]  // mirrors current for lock-free sends
	ep    atomic.Pointer[endpoint] // where packets to the peer go
	muxes map[wire.Proto]*protoMux // streams by protocol; guarded by m.mu

	// fallback is the relayed path a direct one replaced: used again if
	// the direct path goes silent.
	fallback atomic.Pointer[endpoint]

	lastRecv   atomic.Int64 // mono ns of the last authenticated packet
	lastSent   atomic.Int64 // mono ns of the last packet sent
	epLastRecv atomic.Int64 // mono ns of the last authenticated packet from ep
	rtt        atomic.Int64 // smoothed RTT in ns, 0 until measured
	txBytes    atomic.Uint64
	rxBytes    atomic.Uint64
	txPackets  atomic.Uint64
	rxPackets  atomic.Uint64
	handshakes atomic.Uint64
}

// endpoint is a path to a peer: a direct address on one of our sockets,
// or through a relay, a directly connected peer that forwards to node.
type endpoint struct {
	addr  netip.AddrPort // direct
	sock  *socket        // direct
	relay *Peer          // relayed: the first hop
	node  identity.NodeID
	why   string // for relayed paths: why not direct (shown in Stats)
}

// same reports whether e and o are the same path.
func (e *endpoint) same(o *endpoint) bool {
	if e.relay != nil || o.relay != nil {
		return e.relay == o.relay
	}
	return e.addr == o.addr
}

// LogValue makes a path print as its String in structured logs.
func (e *endpoint) LogValue() slog.Value { return slog.StringValue(e.String()) }

func (e *endpoint) String() string {
	if e == nil {
		return "none"
	}
	if e.relay != nil {
		return "via " + e.relay.id.Short()
	}
	return e.addr.String()
}

// ID returns the peer's NodeID.
func (p *Peer) ID() identity.NodeID { return p.id }

// PublicKey returns the peer's ed25519 public key.
func (p *Peer) PublicKey() ed25519.PublicKey { return p.key }

// Endpoint returns the address packets to the peer are sent to, or the
// zero AddrPort when they go through a relay (see Via).
func (p *Peer) Endpoint() netip.AddrPort {
	if ep := p.ep.Load(); ep != nil {
		return ep.addr
	}
	return netip.AddrPort{}
}

// Via returns the relay that packets to the peer go through, or the zero
// NodeID when the path is direct.
func (p *Peer) Via() identity.NodeID {
	if ep := p.ep.Load(); ep != nil && ep.relay != nil {
		return ep.relay.id
	}
	return identity.NodeID{}
}

// IsUp reports whether the peer has an established session.
func (p *Peer) IsUp() bool { return p.cur.Load() != nil }

// RTT returns the smoothed round-trip time, or 0 if not measured yet.
func (p *Peer) RTT() time.Duration { return time.Duration(p.rtt.Load()) }

// Stats returns a snapshot of the peer's counters.
func (p *Peer) Stats() PeerStats {
	m := p.m
	st := PeerStats{
		ID:         p.id,
		Endpoint:   p.Endpoint(),
		TxBytes:    p.txBytes.Load(),
		RxBytes:    p.rxBytes.Load(),
		TxPackets:  p.txPackets.Load(),
		RxPackets:  p.rxPackets.Load(),
		Handshakes: p.handshakes.Load(),
		RTT:        p.RTT(),
	}
	st.Streams, st.StreamMTU = p.streamStats()
	if t := p.lastRecv.Load(); t != 0 {
		st.LastSeen = m.epoch.Add(time.Duration(t))
	}
	if s := p.cur.Load(); s != nil {
		st.Up = true
		st.SessionAge = time.Duration(m.now() - s.created)
		if ep := p.ep.Load(); ep != nil && ep.relay != nil {
			st.Path, st.Via, st.PathReason = "relayed", ep.relay.id, ep.why
			if st.PathReason == "" {
				st.PathReason = "the session came up through relay " + ep.relay.id.Short() + "; no direct address known"
			}
		} else {
			st.Path, st.PathReason = "direct", "peer answers at its address"
		}
	} else {
		st.Path = "none"
		st.PathReason = "no session"
	}
	return st
}

// setPathLocked points the peer at path, after a handshake over it. The
// caller holds m.mu.
func (p *Peer) setPathLocked(path *endpoint) {
	if ep := p.ep.Load(); ep != nil && ep.same(path) {
		return
	}
	p.ep.Store(path)
	p.epLastRecv.Store(p.m.now())
	p.resetPathMTULocked()
}

// received accounts an authenticated packet of n bytes that arrived over
// src, and is the one place that moves the peer's path (so roaming, relay
// fallback and hole punching cannot fight over it):
//   - a packet over the current path refreshes it;
//   - a direct packet replaces a relayed path at once: direct is better,
//     and only the peer could have sealed it;
//   - any other path wins only after the current one has been silent for
//     RoamSilence, so two live paths cannot make it flap.
func (p *Peer) received(n int, src *endpoint, now int64) {
	p.rxBytes.Add(uint64(n))
	p.rxPackets.Add(1)
	p.lastRecv.Store(now)
	ep := p.ep.Load()
	if ep != nil && ep.same(src) {
		p.epLastRecv.Store(now)
		return
	}
	upgrade := ep != nil && ep.relay != nil && src.relay == nil
	if ep != nil && !upgrade && now-p.epLastRecv.Load() <= int64(p.m.t.roamSilence) {
		return
	}
	moved := *src
	if moved.relay != nil {
		moved.why = "the direct path went silent"
	}
	p.switchPath(&moved, now)
	if upgrade {
		p.fallback.Store(ep)
	}
	p.m.mu.RLock()
	p.resetPathMTULocked()
	p.m.mu.RUnlock()
}

// switchPath makes path the peer's path.
func (p *Peer) switchPath(path *endpoint, now int64) {
	p.m.log.Info("peer path changed", "peer", p.id.Short(), "from", p.ep.Load(), "to", path)
	p.ep.Store(path)
	p.epLastRecv.Store(now)
}

// checkPathLocked falls back to the relayed path when the direct path that
// replaced it has gone silent for half the dead-peer timeout. The timer
// loop calls it.
func (p *Peer) checkPathLocked(now int64) {
	fb := p.fallback.Load()
	ep := p.ep.Load()
	if fb == nil || ep == nil || ep.relay != nil || now-p.lastRecv.Load() <= int64(p.m.t.dead/2) {
		return
	}
	back := *fb
	back.why = "the direct path stopped answering"
	p.switchPath(&back, now)
	p.fallback.Store(nil)
	p.resetPathMTULocked()
}

// updateRTT folds a sample into the smoothed RTT (RFC 6298: 7/8 old + 1/8 new).
func (p *Peer) updateRTT(sample time.Duration) {
	old := p.rtt.Load()
	if old == 0 {
		p.rtt.Store(int64(sample))
		return
	}
	p.rtt.Store(old - old/8 + int64(sample)/8)
}

// session is one set of transport keys with a peer.
type session struct {
	peer      *Peer
	local     uint32 // our receiver index: the peer puts it in its packets
	remote    uint32 // the peer's receiver index: we put it in ours
	send      *noise.Cipher
	recv      *noise.Cipher
	initiator bool
	created   int64     // mono ns
	path      *endpoint // where the handshake came from or went to
	// incarnation is the peer's, as its handshake told.
	incarnation uint64

	sendCounter atomic.Uint64
	confirmed   atomic.Bool // an authenticated packet arrived on it

	replay noise.ReplayWindow // has its own lock

	// final is the XX initiator's third handshake message, resent until
	// the responder confirms the session; dial is the dial that the
	// confirmation completes.
	final []byte
	dial  *dial
}

// installLocked makes s the peer's current session and reports whether the
// peer just came up. The session s replaces is retired, not forgotten: its
// index keeps working for what the peer sealed on it, however late that
// arrives (the peer keeps sealing on it until it has switched too, which a
// responder does when the initiator's first packet on s arrives, and
// packets sealed before may still be queued or in flight for longer than
// any timer could promise). Only the oldest of maxRetired retired sessions
// is forgotten here; otherwise the timer loop drops a retired session at
// RejectAfter, when the receive path refuses it anyway.
func (p *Peer) installLocked(s *session) (cameUp bool) {
	m := p.m
	if p.next == s {
		p.next = nil
	}
	if c := p.current; c != nil && c != s {
		p.retireLocked(c)
	}
	p.current = s
	p.cur.Store(s)
	m.sessions[s.local] = s
	cameUp = !p.up
	p.up = true
	return cameUp
}

// retireLocked adds s to the peer's retired sessions, which forgets the
// oldest one when there are maxRetired already.
func (p *Peer) retireLocked(s *session) {
	if old := p.retired[maxRetired-1]; old != nil {
		delete(p.m.sessions, old.local)
	}
	copy(p.retired[1:], p.retired[:maxRetired-1])
	p.retired[0] = s
}

// dropSessionsLocked forgets every session of the peer.
func (p *Peer) dropSessionsLocked() {
	for _, s := range append([]*session{p.current, p.next}, p.retired[:]...) {
		if s != nil {
			delete(p.m.sessions, s.local)
		}
	}
	p.current, p.next, p.retired = nil, nil, [maxRetired]*session{}
	p.cur.Store(nil)
	p.up = false
}
