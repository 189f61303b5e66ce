package mesh

import (
	"crypto/ed25519"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Peer is a remote node this node has (or had) a session with. A Peer
// value stays valid for the life of the mesh; its session comes and goes.
type Peer struct {
	t   *transport
	id  identity.NodeID
	key ed25519.PublicKey

	// Guarded by t.hs.mu (see session.go).
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
	// Failure detection (timers.go): while probeSince is set the peer is
	// suspected, probes counts the probes sent since then, and the next
	// is due at probeAt (mono ns).
	probeSince, probeAt int64
	probes              int

	cur atomic.Pointer[session]  // mirrors current for lock-free sends
	ep  atomic.Pointer[endpoint] // where packets to the peer go

	// fallback is the relayed path a direct one replaced: used again if
	// the direct path goes silent.
	fallback atomic.Pointer[endpoint]

	lastRecv   atomic.Int64 // mono ns of the last authenticated packet
	lastSent   atomic.Int64 // mono ns of the last packet sent
	epLastRecv atomic.Int64 // mono ns of the last authenticated packet from ep
	rtt        atomic.Int64 // smoothed RTT in ns, 0 until measured
	// downWhy says why the peer last went down (one of the down...
	// reasons); nil while it never did.
	downWhy    atomic.Pointer[string]
	txBytes    atomic.Uint64
	rxBytes    atomic.Uint64
	txPackets  atomic.Uint64
	rxPackets  atomic.Uint64
	handshakes atomic.Uint64
	// member is the peer's verified membership certificate (admission.go).
	member atomic.Pointer[memberCert]

	// streams are the peer's stream multiplexers, one per protocol
	// (streams.go), under a lock of their own.
	streams peerStreams
}

// Why a peer went down, as PeerEvent.Reason and PeerStats.PathReason
// tell it.
const (
	downLeft      = "the peer left"      // it said goodbye (Leave)
	downRestarted = "the peer restarted" // a new session carried a new incarnation
	downExpired   = "session expired"    // RejectAfter passed without a rekey
	downGaveUp    = "handshake gave up"  // a dial gave up while the peer said nothing
	downClosed    = "this node closed"   // Close
)

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
	t := p.t
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
	if last := p.lastRecv.Load(); last != 0 {
		st.LastSeen = t.epoch.Add(time.Duration(last))
	}
	if s := p.cur.Load(); s != nil {
		st.Up = true
		st.SessionAge = time.Duration(t.now() - s.created)
		st.CipherSuite = s.suite
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
		if why := p.downWhy.Load(); why != nil {
			st.PathReason += ": " + *why
		}
	}
	return st
}

// setPath points the peer at path, after a handshake over it.
func (p *Peer) setPath(path *endpoint) {
	if ep := p.ep.Load(); ep != nil && ep.same(path) {
		return
	}
	p.ep.Store(path)
	p.epLastRecv.Store(p.t.now())
	p.t.up.pathChanged(p)
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
	if ep != nil && !upgrade && now-p.epLastRecv.Load() <= int64(p.t.t.roamSilence) {
		return
	}
	moved := *src
	switch {
	case moved.relay == nil || ep == nil:
		// Direct, or the session's first packet (an IK responder's,
		// before it confirms): there was no path to explain.
	case ep.relay == nil:
		moved.why = "the direct path went silent"
	default:
		moved.why = "relay " + ep.relay.id.Short() + " went silent; no direct address known"
	}
	p.switchPath(&moved, now)
	if upgrade {
		p.fallback.Store(ep)
	}
}

// switchPath makes path the peer's path.
func (p *Peer) switchPath(path *endpoint, now int64) {
	p.t.log.Info("peer path changed", "peer", p.id.Short(), "from", p.ep.Load(), "to", path)
	p.ep.Store(path)
	p.epLastRecv.Store(now)
	p.t.up.pathChanged(p)
}

// checkPath falls back to the relayed path when the direct path that
// replaced it has gone silent for half the dead-peer timeout. The timer
// loop calls it.
func (p *Peer) checkPath(now int64) {
	fb := p.fallback.Load()
	ep := p.ep.Load()
	if fb == nil || ep == nil || ep.relay != nil || now-p.lastRecv.Load() <= int64(p.t.t.dead/2) {
		return
	}
	back := *fb
	back.why = "the direct path stopped answering"
	p.switchPath(&back, now)
	p.fallback.Store(nil)
}

// setDown records why the peer went down.
func (p *Peer) setDown(why string) { p.downWhy.Store(&why) }

// updateRTT folds a sample into the smoothed RTT (RFC 6298: 7/8 old + 1/8 new).
func (p *Peer) updateRTT(sample time.Duration) {
	old := p.rtt.Load()
	if old == 0 {
		p.rtt.Store(int64(sample))
		return
	}
	p.rtt.Store(old - old/8 + int64(sample)/8)
}

// peerTable holds the peers the node knows, by NodeID, with a lock of
// its own: looking a peer up never waits on handshakes.
type peerTable struct {
	mu  sync.RWMutex
	m   map[identity.NodeID]*Peer
	max int // Config.MaxPeers
}

func (pt *peerTable) init(max int) {
	pt.m = make(map[identity.NodeID]*Peer)
	pt.max = max
}

// get returns the peer with id, or nil.
func (pt *peerTable) get(id identity.NodeID) *Peer {
	pt.mu.RLock()
	p := pt.m[id]
	pt.mu.RUnlock()
	return p
}

// all returns every peer.
func (pt *peerTable) all() []*Peer {
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	out := make([]*Peer, 0, len(pt.m))
	for _, p := range pt.m {
		out = append(out, p)
	}
	return out
}

// each calls f for every peer, with the table read-locked: f must not
// take a lock that is ever held while a peer is added.
func (pt *peerTable) each(f func(*Peer)) {
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	for _, p := range pt.m {
		f(p)
	}
}

// len returns the number of peers.
func (pt *peerTable) len() int {
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	return len(pt.m)
}

// add files p, which must not be filed yet.
func (pt *peerTable) add(p *Peer) {
	pt.mu.Lock()
	pt.m[p.id] = p
	pt.mu.Unlock()
}

// remove forgets p, if it is still filed.
func (pt *peerTable) remove(p *Peer) {
	pt.mu.Lock()
	if pt.m[p.id] == p {
		delete(pt.m, p.id)
	}
	pt.mu.Unlock()
}
