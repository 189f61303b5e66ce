package mesh

import (
	"bytes"
	"crypto/ed25519"
	"sync/atomic"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/noise"
)

// Sessions: every transition of a session lives in this file.
//
// A session is made by a completed handshake (handshake.go) and sits in
// one of a peer's slots:
//
//   - next: the IK responder's session, waiting for the initiator's first
//     packet on it (confirm moves it to current, unless it lost a crossing;
//     the timer loop drops it after HandshakeGiveUp);
//   - current: the one sends use (Peer.cur mirrors it for lock-free reads);
//   - retired: up to maxRetired sessions current replaced, which still
//     decrypt what the peer sealed on them until RejectAfter;
//   - the XX initiator's session waits in its dial (dial.session) until the
//     responder confirms it.
//
// A session leaves the index, and stops decrypting, when it is RejectAfter
// old, when it is the oldest retired one and another retires, or when the
// peer goes down (its dial gave up while the peer was silent, or the
// session expired) or is forgotten (ForgetAfter without a session). All of
// it happens under hs.mu: the data path only reads Peer.cur and the index.

// session is one set of transport keys with a peer.
type session struct {
	peer      *Peer
	local     uint32 // our receiver index: the peer puts it in its packets
	remote    uint32 // the peer's receiver index: we put it in ours
	send      *noise.Cipher
	recv      *noise.Cipher
	suite     noise.Suite // of send and recv
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
	// confirmation completes. Guarded by hs.mu.
	final []byte
	dial  *dial

	// initiation and response are an IK responder's pending session's
	// handshake: the initiator's Noise message and the packet that
	// answered it, sent again when the initiation is resent (see
	// handshake.go). Guarded by hs.mu; dropped when the session is
	// installed.
	initiation []byte
	response   []byte
}

// nextFor returns p's pending session if it was made for the IK
// initiation msg from sender index sender; p may be nil. The caller holds
// hs.mu.
func (p *Peer) nextFor(sender uint32, msg []byte) *session {
	if p == nil {
		return nil
	}
	if n := p.next; n != nil && n.remote == sender && n.response != nil && bytes.Equal(n.initiation, msg) {
		return n
	}
	return nil
}

func (t *transport) newSession(p *Peer, local, remote uint32, k *noise.Keys, initiator bool, path *endpoint) *session {
	return &session{
		peer: p, local: local, remote: remote, send: k.Send, recv: k.Recv, suite: k.Suite,
		initiator: initiator, created: t.now(), path: path, incarnation: k.Peer.Incarnation,
	}
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
func (t *transport) installLocked(p *Peer, s *session) (cameUp bool) {
	if p.next == s {
		p.next = nil
	}
	if c := p.current; c != nil && c != s {
		t.retireLocked(p, c)
	}
	p.current = s
	s.initiation, s.response = nil, nil
	p.cur.Store(s)
	t.index.add(s)
	cameUp = !p.up
	p.up = true
	return cameUp
}

// retireLocked adds s to the peer's retired sessions, which forgets the
// oldest one when there are maxRetired already.
func (t *transport) retireLocked(p *Peer, s *session) {
	if old := p.retired[maxRetired-1]; old != nil {
		t.index.remove(old)
	}
	copy(p.retired[1:], p.retired[:maxRetired-1])
	p.retired[0] = s
}

// dropSessionsLocked forgets every session of the peer.
func (t *transport) dropSessionsLocked(p *Peer) {
	for _, s := range append([]*session{p.current, p.next}, p.retired[:]...) {
		if s != nil {
			t.index.remove(s)
		}
	}
	p.current, p.next, p.retired = nil, nil, [maxRetired]*session{}
	p.cur.Store(nil)
	p.up = false
}

// confirm marks s as proven by the peer: the responder's pending session
// becomes current (unless it lost a crossing, see keepsOwnLocked), and the
// XX dial waiting for s's confirmation completes. The receive path calls
// it once per session, for its first packet.
func (t *transport) confirm(s *session) {
	t.hs.mu.Lock()
	defer t.hs.mu.Unlock()
	if s.confirmed.Load() {
		return
	}
	s.confirmed.Store(true)
	p := s.peer
	if p.next == s && t.keepsOwnLocked(p, s) {
		p.next = nil
		t.retireLocked(p, s) // the peer seals on it until it has taken ours
		return
	}
	if p.current != s && (p.next == s || s.dial != nil && !s.dial.closed) {
		t.establishLocked(p, s)
	}
	if s.dial != nil {
		t.finishDialLocked(s.dial, p, nil) // if it was not p.dial
	}
}

// keepsOwnLocked reports whether s, a session the peer started and has now
// confirmed, crossed one this node started and installed after answering
// the peer's initiation (both nodes started a handshake at once, and each
// completed its own and the other's), and this node keeps its own. Each
// node then has both sessions and would send on the one it installed
// last: the two would use different sessions, and the next switch on
// either side would forget the one the other still sends on. So both
// keep the session that the node with the lower NodeID started. Both see
// the crossing the same way: a node answers the other's initiation while
// its own is unanswered, because each initiation left before the answer
// to the other one. The session not kept is retired on both sides and
// still decrypts what was sealed on it.
func (t *transport) keepsOwnLocked(p *Peer, s *session) bool {
	c := p.current
	if c == nil || !c.initiator || c.created <= s.created {
		return false
	}
	own := t.id.NodeID()
	return bytes.Compare(own[:], p.id[:]) < 0
}

// establishLocked makes s the peer's current session, points the peer at
// the address the handshake came from, and satisfies any dial waiting for
// the peer.
func (t *transport) establishLocked(p *Peer, s *session) {
	if c := p.current; c != nil && c.incarnation != s.incarnation {
		t.restartedLocked(p)
	}
	cameUp := t.installLocked(p, s)
	p.setPath(s.path)
	p.lastRecv.Store(t.now())
	p.handshakes.Add(1)
	t.stats.handshakesCompleted.Add(1)
	if d := p.dial; d != nil {
		t.finishDialLocked(d, p, nil) // its attempt's answer is ignored now
	}
	if cameUp {
		t.log.Info("peer up", "peer", p.id.Short(), "path", s.path)
		t.up.peerEvent(p, true)
		t.routeWait.notify() // a relay, or a next hop
	}
}

// restartedLocked forgets what belonged to the peer's previous run, whose
// incarnation a new session has just replaced: its streams (the
// restarted node has none of them, and would take the ids it reuses for
// stale ones), so they end with ErrMuxClosed. Watchers and engines see
// the peer go down and, when the session is installed, come up again,
// as after any other loss of the peer.
func (t *transport) restartedLocked(p *Peer) {
	t.log.Info("peer restarted; its streams end", "peer", p.id.Short())
	t.up.closeStreams(p)
	if p.up {
		p.up = false
		p.setDown(downRestarted)
		t.up.peerEvent(p, false)
	}
}

// downLocked drops the peer's sessions and reports it down.
func (t *transport) downLocked(p *Peer, why string) {
	wasUp := p.up
	t.dropSessionsLocked(p)
	t.up.closeStreams(p)
	if wasUp {
		t.log.Info("peer down", "peer", p.id.Short(), "reason", why)
		p.setDown(why)
		t.up.peerEvent(p, false)
	}
}

// forgetLocked drops a peer that has had no session for ForgetAfter: a
// *Peer held for it stays down for good. The newest initiation time it
// accepted from the peer outlives it (initMemory).
func (t *transport) forgetLocked(p *Peer) {
	t.up.closeStreams(p)
	t.peers.remove(p)
	if p.lastInit > 0 {
		t.hs.recent.put(p.id, p.lastInit, p.handshakes.Load() > 0)
	}
}

// admitLocked reports whether a handshake from id may complete: a known
// peer always may; a new one while the node has fewer than MaxPeers, or
// when it can make room by forgetting the oldest peer that never came up.
// An IK initiation makes a peer before anything proves it (one packet,
// from any address), so such peers must never crowd out confirmed ones;
// and the oldest goes first, so that a flood of them replaces its own
// entries and leaves a genuine initiator the longest time to confirm.
func (t *transport) admitLocked(id identity.NodeID) bool {
	if t.peers.get(id) != nil || t.peers.len() < t.peers.max {
		return true
	}
	var oldest *Peer
	t.peers.each(func(p *Peer) {
		if p.handshakes.Load() == 0 && p.current == nil && p.dial == nil &&
			(oldest == nil || p.created < oldest.created) {
			oldest = p
		}
	})
	if oldest == nil {
		return false
	}
	t.dropSessionsLocked(oldest) // its pending session, if any
	t.peers.remove(oldest)
	return true
}

// peerLocked returns the peer with id, creating it.
func (t *transport) peerLocked(id identity.NodeID, key ed25519.PublicKey) *Peer {
	p := t.peers.get(id)
	if p == nil {
		p = &Peer{t: t, id: id, key: key, created: t.now(), lastInit: t.hs.recent.get(id)}
		t.peers.add(p)
	}
	return p
}
