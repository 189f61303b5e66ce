package mesh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// Handshakes.
//
// The initiator's side is a dial: one per Connect call, rekey or dead-peer
// recovery. Each attempt of a dial is a fresh Noise handshake (new
// ephemeral key and timestamp) under a fresh receiver index, sent every
// HandshakeRetransmit (with jitter) until one completes or HandshakeGiveUp
// passes. The timer loop drives retransmits; the handshake worker does the
// Diffie-Hellman work; the socket reader only checks MACs, cookies and rate
// limits, so a flood of handshakes never stalls established sessions.
//
// Only a dial's latest attempt can complete it: the responder keeps one
// pending session per peer, which a newer initiation replaces. An attempt a
// retransmission replaced, or whose dial ended (another session came up,
// or it failed), stays in m.pending until HandshakeGiveUp after it was
// sent, so that a late answer to it is recognised and ignored rather than
// counted as unknown_index. When both nodes start a handshake at once,
// both complete and both nodes keep the same one (keepsOwnLocked).
//
//	IK: initiator --init-ik--> responder: session pending ("next")
//	    initiator <-response-- responder
//	    initiator: session current; sends a ping, which confirms the
//	    responder's pending session.
//	XX: initiator --init-xx--> responder (no identity yet)
//	    initiator <-response-- responder (responder's identity)
//	    initiator --final----> responder: session current
//	    initiator <-keepalive- responder: confirms; the initiator resends
//	    final until it arrives.

// Pin names the peer that Connect expects. The zero Pin accepts whichever
// node answers at the address. With Key set, the handshake is the
// one-round-trip IK; with only ID set it is XX and the answer must carry
// that NodeID.
type Pin struct {
	Key ed25519.PublicKey
	ID  identity.NodeID
}

// dial is the initiator's side of a handshake.
type dial struct {
	path    *endpoint
	pin     Pin
	started int64
	nextAt  int64 // mono ns of the next retransmit
	tries   int
	hs      *handshake // current attempt
	session *session   // XX: sent final, waiting for the responder's confirmation

	done   chan struct{}
	peer   *Peer
	err    error
	closed bool
}

// handshake is one in-progress Noise handshake, either side.
type handshake struct {
	local   uint32
	remote  uint32 // responder: the initiator's index
	noise   *noise.Handshake
	dial    *dial // nil for the responder
	path    *endpoint
	created int64
	pkt     []byte // initiator: the last message sent, for cookie resends
	mac1    [wire.MACSize]byte
}

// hsJob is a handshake message waiting for the worker.
type hsJob struct {
	pkt []byte
	src *endpoint
}

// Connect establishes a session with the node at addr, or returns the peer
// if one is already up there. It blocks until the handshake completes, ctx
// ends or the handshake gives up.
func (m *Mesh) Connect(ctx context.Context, addr netip.AddrPort, pin Pin) (*Peer, error) {
	if !m.started.Load() {
		return nil, ErrNotStarted
	}
	if m.closed.Load() {
		return nil, ErrClosed
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.IsValid() || addr.Port() == 0 {
		return nil, fmt.Errorf("mesh: connect: invalid address %v", addr)
	}
	if pin.Key != nil {
		if len(pin.Key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("mesh: connect: pinned key is %d bytes, want %d", len(pin.Key), ed25519.PublicKeySize)
		}
		id := identity.NodeIDFromKey(pin.Key)
		if !pin.ID.IsZero() && pin.ID != id {
			return nil, fmt.Errorf("%w: pinned key has id %s, pinned id is %s", ErrPeerMismatch, id, pin.ID)
		}
		pin.ID = id
	}
	sock := m.sockFor(addr)
	if sock == nil {
		return nil, fmt.Errorf("%w: %v", ErrNoAddress, addr)
	}
	path := &endpoint{addr: addr, sock: sock}
	m.mu.Lock()
	if p := m.findPeerLocked(addr, pin.ID); p != nil && p.current != nil {
		m.mu.Unlock()
		if ep := p.ep.Load(); ep != nil && ep.relay != nil {
			m.probeDirect(p, path)
		}
		return p, nil
	}
	if pin.Key == nil && !pin.ID.IsZero() {
		if p := m.peers[pin.ID]; p != nil {
			pin.Key = p.key // seen before: IK saves a round trip
		}
	}
	d := m.newDialLocked(path, pin)
	m.mu.Unlock()
	return m.waitDial(ctx, d)
}

// waitDial waits for d to finish or ctx to end, which abandons it.
func (m *Mesh) waitDial(ctx context.Context, d *dial) (*Peer, error) {
	select {
	case <-d.done:
		return d.peer, d.err
	case <-ctx.Done():
		m.mu.Lock()
		m.finishDialLocked(d, nil, ctx.Err())
		m.mu.Unlock()
		return nil, ctx.Err()
	}
}

// findPeerLocked returns the peer with id, or without an id the peer whose
// endpoint is addr.
func (m *Mesh) findPeerLocked(addr netip.AddrPort, id identity.NodeID) *Peer {
	if !id.IsZero() {
		return m.peers[id]
	}
	for _, p := range m.peers {
		if p.Endpoint() == addr {
			return p
		}
	}
	return nil
}

func (m *Mesh) newDialLocked(path *endpoint, pin Pin) *dial {
	d := &dial{path: path, pin: pin, started: m.now(), done: make(chan struct{})}
	if p := m.peers[pin.ID]; p != nil && p.dial == nil && !pin.ID.IsZero() {
		p.dial = d
	}
	m.attemptLocked(d)
	return d
}

// attemptLocked starts a new handshake attempt of d and sends its
// initiation.
func (m *Mesh) attemptLocked(d *dial) {
	now := m.now()
	d.tries++
	d.nextAt = now + int64(noise.RetransmitDelay(m.t.retransmit, d.tries-1, nil))
	hs, err := noise.NewInitiator(noise.Config{Identity: m.id, PeerKey: d.pin.Key, PeerID: d.pin.ID, Incarnation: m.incarnation}, time.Now())
	if err != nil {
		m.finishDialLocked(d, nil, err)
		return
	}
	msg, err := hs.WriteMessage(nil)
	if err != nil {
		m.finishDialLocked(d, nil, err)
		return
	}
	typ, key := wire.TypeInitXX, &m.macs.mac1Anon
	if d.pin.Key != nil {
		typ, key = wire.TypeInitIK, &macKey{key: mac1Key(d.pin.Key)}
	}
	h := &handshake{local: m.newIndexLocked(), noise: hs, dial: d, path: d.path, created: now}
	h.pkt = wire.AppendHandshake(nil, wire.Handshake{Type: typ, Sender: h.local, Noise: msg})
	h.mac1 = setMAC1(h.pkt, key)
	d.hs = h
	m.pending[h.local] = h
	m.stats.handshakesInitiated.Add(1)
	m.sendTo(d.path, h.pkt)
}

// live reports whether h is the attempt that can still complete its dial.
// The caller holds m.mu.
func (h *handshake) live() bool { return h.dial.hs == h && !h.dial.closed }

// finishDialLocked completes d with a result, waking Connect. An XX
// session of d that another session beat is retired rather than
// forgotten: the responder may have made it current and seal on it.
func (m *Mesh) finishDialLocked(d *dial, p *Peer, err error) {
	if d.closed {
		return
	}
	d.closed = true
	d.peer, d.err = p, err
	delete(m.confirming, d)
	switch s := d.session; {
	case s == nil || p != nil && p.current == s:
	case p != nil:
		p.retireLocked(s)
	default:
		delete(m.sessions, s.local)
	}
	for _, q := range m.peers {
		if q.dial == d {
			q.dial = nil
		}
	}
	close(d.done)
}

// newIndexLocked returns a random receiver index in use by nothing else.
func (m *Mesh) newIndexLocked() uint32 {
	for {
		i := rand.Uint32()
		if i == 0 {
			continue
		}
		if _, ok := m.sessions[i]; ok {
			continue
		}
		if _, ok := m.pending[i]; ok {
			continue
		}
		return i
	}
}

// receiveHandshake runs on a socket reader: it does the cheap checks and
// queues the message for the worker.
func (m *Mesh) receiveHandshake(b []byte, src endpoint) {
	h, err := wire.ParseHandshake(b)
	if err != nil {
		m.dropWire(err)
		return
	}
	if h.Type.IsInitiation() {
		key := &m.macs.mac1Anon
		if h.Type == wire.TypeInitIK {
			key = &m.macs.mac1Own
		}
		if !validMAC1(b, key) {
			m.stats.drop(DropBadMAC)
			return
		}
		// Relayed handshakes arrive over an authenticated session with the
		// relay; cookies prove source addresses, so they apply to direct
		// ones only, and under load a relay may pass on HandshakeRate
		// initiations per second.
		switch {
		case !m.underLoad():
		case src.relay != nil:
			if !m.relayLimit.allow(src.relay.id, time.Now()) {
				m.stats.drop(DropRateLimited)
				return
			}
		default:
			if !m.macs.validMAC2(b, src.addr) {
				seal := &m.macs.cookieAnon
				if h.Type == wire.TypeInitIK {
					seal = &m.macs.cookieOwn
				}
				if m.sendTo(&src, m.macs.cookieReply(b, h.Sender, src.addr, seal)) == nil {
					m.stats.cookiesSent.Add(1)
				}
				m.stats.drop(DropCookieRequired)
				return
			}
			if !m.limit.allow(src.addr.Addr(), time.Now()) {
				m.stats.drop(DropRateLimited)
				return
			}
		}
	}
	job := hsJob{pkt: append([]byte(nil), b...), src: &src}
	select {
	case m.hsq <- job:
	default:
		m.stats.drop(DropQueueFull)
	}
	if len(m.hsq) >= cap(m.hsq)/8 {
		m.underLoadUntil.Store(m.now() + int64(underLoadHold))
	}
}

func (m *Mesh) underLoad() bool { return m.now() < m.underLoadUntil.Load() }

// checkPendingLocked puts the node under load while the pending table is
// half full (see maxResponderPending).
func (m *Mesh) checkPendingLocked() {
	if len(m.pending) >= maxResponderPending/2 {
		m.underLoadUntil.Store(m.now() + int64(underLoadHold))
	}
}

// evictPendingLocked forgets the oldest responder's XX handshake. It scans
// the table, but runs only when the table is full, which takes the node
// under load first.
func (m *Mesh) evictPendingLocked() {
	var oldest *handshake
	for _, h := range m.pending {
		if h.dial == nil && (oldest == nil || h.created < oldest.created) {
			oldest = h
		}
	}
	if oldest != nil {
		delete(m.pending, oldest.local)
	}
}

// dropWire counts a wire decoding error.
func (m *Mesh) dropWire(err error) {
	switch {
	case errors.Is(err, wire.ErrSize):
		m.stats.drop(DropOversized)
	case errors.Is(err, wire.ErrType):
		m.stats.drop(DropUnknownType)
	default:
		m.stats.drop(DropShort)
	}
}

// dropNoise counts a failed Noise step by its cause.
func (m *Mesh) dropNoise(err error) {
	switch {
	case errors.Is(err, noise.ErrKeyMismatch):
		m.stats.drop(DropPinMismatch)
	case errors.Is(err, noise.ErrBadSignature):
		m.stats.drop(DropBadIdentity)
	default:
		m.stats.drop(DropBadHandshake)
	}
}

// receiveCookie handles a cookie reply to one of our initiations: it stores
// nothing and resends the same initiation with MAC2 set.
func (m *Mesh) receiveCookie(b []byte) {
	c, err := wire.ParseCookieReply(b)
	if err != nil {
		m.dropWire(err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.pending[c.Receiver]
	if h == nil || h.dial == nil {
		m.stats.drop(DropUnknownIndex)
		return
	}
	seal := cookieKey(h.dial.pin.Key)
	cookie, ok := openCookie(c, &seal, h.mac1[:])
	if !ok {
		m.stats.drop(DropBadMAC)
		return
	}
	if !h.live() {
		return // for an attempt that was replaced or whose dial ended
	}
	setMAC2(h.pkt, &cookie)
	m.sendTo(h.path, h.pkt)
}

func (m *Mesh) handshakeWorker() {
	defer m.wg.Done()
	for {
		select {
		case j := <-m.hsq:
			m.processHandshake(j)
		case <-m.ctx.Done():
			return
		}
	}
}

func (m *Mesh) processHandshake(j hsJob) {
	h, err := wire.ParseHandshake(j.pkt)
	if err != nil {
		m.dropWire(err)
		return
	}
	switch h.Type {
	case wire.TypeInitIK, wire.TypeInitXX:
		m.respond(h, j)
	case wire.TypeResponse:
		m.handleResponse(h, j)
	case wire.TypeFinal:
		m.handleFinal(h, j)
	}
}

// respond answers an initiation.
func (m *Mesh) respond(h wire.Handshake, j hsJob) {
	pattern := noise.PatternXX
	if h.Type == wire.TypeInitIK {
		pattern = noise.PatternIK
	}
	hs, err := noise.NewResponder(m.id, pattern, m.incarnation)
	if err != nil {
		return
	}
	m.stats.handshakesProcessed.Add(1)
	if err := hs.ReadMessage(h.Noise); err != nil {
		m.dropNoise(err)
		return
	}
	mac1 := &m.macs.mac1Anon
	var peer noise.Peer
	if pattern == noise.PatternIK {
		// Drop a replayed initiation before doing the response's DH work.
		peer = hs.Peer()
		m.mu.Lock()
		if !m.admitLocked(peer.ID) {
			m.mu.Unlock()
			m.stats.drop(DropPeerLimit)
			return
		}
		p := m.peerLocked(peer.ID, peer.Key)
		ts := uint64(peer.InitiationTime.UnixNano())
		stale := ts <= p.lastInit
		if !stale {
			p.lastInit = ts
		}
		m.mu.Unlock()
		if stale {
			m.stats.drop(DropStaleInitiation)
			return
		}
		mac1 = &macKey{key: mac1Key(peer.Key)}
	}
	msg, err := hs.WriteMessage(nil)
	if err != nil {
		m.dropNoise(err)
		return
	}
	m.mu.Lock()
	local := m.newIndexLocked()
	if pattern == noise.PatternXX {
		m.checkPendingLocked()
		if len(m.pending) >= maxResponderPending {
			m.evictPendingLocked()
		}
		m.pending[local] = &handshake{local: local, remote: h.Sender, noise: hs, path: j.src, created: m.now()}
	} else {
		keys, err := hs.Keys()
		if err != nil {
			m.mu.Unlock()
			m.dropNoise(err)
			return
		}
		p := m.peerLocked(peer.ID, peer.Key)
		s := m.newSession(p, local, h.Sender, keys, false, j.src)
		if p.next != nil {
			delete(m.sessions, p.next.local)
		}
		p.next = s
		m.sessions[local] = s
	}
	m.mu.Unlock()
	pkt := wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeResponse, Sender: local, Receiver: h.Sender, Noise: msg})
	setMAC1(pkt, mac1)
	m.sendTo(j.src, pkt)
}

// handleResponse completes (IK) or advances (XX) one of our dials.
func (m *Mesh) handleResponse(h wire.Handshake, j hsJob) {
	m.mu.Lock()
	hs := m.pending[h.Receiver]
	live := hs != nil && hs.dial != nil && hs.live()
	m.mu.Unlock()
	if hs == nil || hs.dial == nil {
		m.stats.drop(DropUnknownIndex)
		return
	}
	key := &m.macs.mac1Anon
	if hs.noise.Pattern() == noise.PatternIK {
		key = &m.macs.mac1Own
	}
	if !validMAC1(j.pkt, key) {
		m.stats.drop(DropBadMAC)
		return
	}
	if !live {
		// A late answer to an attempt that a retransmission replaced (the
		// responder has replaced the session it made for it, or will when
		// the newer initiation arrives) or whose dial ended: using it
		// would leave the two sides on different sessions.
		return
	}
	m.stats.handshakesProcessed.Add(1)
	if err := hs.noise.ReadMessage(h.Noise); err != nil {
		m.dropNoise(err)
		if errors.Is(err, noise.ErrKeyMismatch) {
			m.mu.Lock()
			m.finishDialLocked(hs.dial, nil, fmt.Errorf("%w: %v", ErrPeerMismatch, err))
			m.mu.Unlock()
		}
		return
	}
	var final []byte
	if hs.noise.Pattern() == noise.PatternXX {
		msg, err := hs.noise.WriteMessage(nil)
		if err != nil {
			m.dropNoise(err)
			return
		}
		final = wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeFinal, Sender: hs.local, Receiver: h.Sender, Noise: msg})
	}
	keys, err := hs.noise.Keys()
	if err != nil {
		m.dropNoise(err)
		return
	}
	d := hs.dial
	m.mu.Lock()
	if m.pending[hs.local] != hs || !hs.live() {
		m.mu.Unlock() // superseded by a newer attempt, or abandoned
		return
	}
	delete(m.pending, hs.local)
	d.hs = nil
	if !d.pin.ID.IsZero() && d.pin.ID != keys.Peer.ID {
		m.stats.drop(DropPinMismatch)
		m.finishDialLocked(d, nil, fmt.Errorf("%w: %s answered, want %s", ErrPeerMismatch, keys.Peer.ID, d.pin.ID))
		m.mu.Unlock()
		return
	}
	p := m.peerLocked(keys.Peer.ID, keys.Peer.Key)
	path := j.src
	if hs.path.same(path) {
		path = hs.path // keeps the reason the dial chose it
	}
	s := m.newSession(p, hs.local, h.Sender, keys, true, path)
	if final == nil {
		m.establishLocked(p, s)
		m.finishDialLocked(d, p, nil)
		m.mu.Unlock()
		m.ping(p) // confirms the responder's session and measures RTT
		return
	}
	setMAC1(final, &macKey{key: mac1Key(keys.Peer.Key)})
	s.final, s.dial = final, d
	d.session = s
	m.confirming[d] = struct{}{}
	if p.dial == nil {
		p.dial = d
	}
	m.sessions[s.local] = s
	d.nextAt = m.now() + int64(m.t.retransmit)
	m.mu.Unlock()
	m.sendTo(j.src, final)
}

// handleFinal completes an XX handshake on the responder.
func (m *Mesh) handleFinal(h wire.Handshake, j hsJob) {
	if !validMAC1(j.pkt, &m.macs.mac1Own) {
		m.stats.drop(DropBadMAC)
		return
	}
	m.mu.Lock()
	hs := m.pending[h.Receiver]
	if hs == nil || hs.dial != nil || hs.remote != h.Sender {
		// A resent final for a session we already have: the keepalive
		// that confirmed it was lost, so confirm again.
		s := m.sessions[h.Receiver]
		m.mu.Unlock()
		if s != nil && !s.initiator && s.remote == h.Sender {
			m.sendFrameOn(s, protoKeepalive.id, nil, nil)
			return
		}
		m.stats.drop(DropUnknownIndex)
		return
	}
	delete(m.pending, hs.local)
	m.mu.Unlock()
	m.stats.handshakesProcessed.Add(1)
	if err := hs.noise.ReadMessage(h.Noise); err != nil {
		m.dropNoise(err)
		return
	}
	keys, err := hs.noise.Keys()
	if err != nil {
		m.dropNoise(err)
		return
	}
	m.mu.Lock()
	if !m.admitLocked(keys.Peer.ID) {
		m.mu.Unlock()
		m.stats.drop(DropPeerLimit)
		return
	}
	p := m.peerLocked(keys.Peer.ID, keys.Peer.Key)
	s := m.newSession(p, hs.local, hs.remote, keys, false, j.src)
	s.confirmed.Store(true)
	m.establishLocked(p, s)
	m.mu.Unlock()
	m.sendFrameOn(s, protoKeepalive.id, nil, nil)
}

// admitLocked reports whether a handshake from id may complete: a known
// peer always may; a new one while the node has fewer than MaxPeers, or
// when it can make room by forgetting the oldest peer that never came up.
// An IK initiation makes a peer before anything proves it (one packet,
// from any address), so such peers must never crowd out confirmed ones;
// and the oldest goes first, so that a flood of them replaces its own
// entries and leaves a genuine initiator the longest time to confirm.
func (m *Mesh) admitLocked(id identity.NodeID) bool {
	if m.peers[id] != nil || len(m.peers) < m.maxPeers {
		return true
	}
	var oldest *Peer
	for _, p := range m.peers {
		if p.handshakes.Load() == 0 && p.current == nil && p.dial == nil &&
			(oldest == nil || p.created < oldest.created) {
			oldest = p
		}
	}
	if oldest == nil {
		return false
	}
	oldest.dropSessionsLocked() // its pending session, if any
	delete(m.peers, oldest.id)
	return true
}

// peerLocked returns the peer with id, creating it.
func (m *Mesh) peerLocked(id identity.NodeID, key ed25519.PublicKey) *Peer {
	p := m.peers[id]
	if p == nil {
		p = &Peer{m: m, id: id, key: key, created: m.now()}
		m.peers[id] = p
	}
	return p
}

func (m *Mesh) newSession(p *Peer, local, remote uint32, k *noise.Keys, initiator bool, path *endpoint) *session {
	return &session{
		peer: p, local: local, remote: remote, send: k.Send, recv: k.Recv,
		initiator: initiator, created: m.now(), path: path, incarnation: k.Peer.Incarnation,
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
func (m *Mesh) keepsOwnLocked(p *Peer, s *session) bool {
	c := p.current
	if c == nil || !c.initiator || c.created <= s.created {
		return false
	}
	own := m.id.NodeID()
	return bytes.Compare(own[:], p.id[:]) < 0
}

// establishLocked makes s the peer's current session, points the peer at
// the address the handshake came from, and satisfies any dial waiting for
// the peer.
func (m *Mesh) establishLocked(p *Peer, s *session) {
	if c := p.current; c != nil && c.incarnation != s.incarnation {
		m.restartedLocked(p)
	}
	cameUp := p.installLocked(s)
	p.setPathLocked(s.path)
	p.lastRecv.Store(m.now())
	p.handshakes.Add(1)
	m.stats.handshakesCompleted.Add(1)
	if d := p.dial; d != nil {
		m.finishDialLocked(d, p, nil) // its attempt's answer is ignored now
	}
	if cameUp {
		m.log.Info("peer up", "peer", p.id.Short(), "path", s.path)
		m.notifyLocked(PeerEvent{Peer: p.id, Up: true})
		m.notifyEnginesLocked(p.id, true)
	}
}

// restartedLocked forgets what belonged to the peer's previous run, whose
// incarnation a new session has just replaced: its streams (the
// restarted node has none of them, and would take the ids it reuses for
// stale ones), so they end with ErrMuxClosed. Watchers and engines see
// the peer go down and, when the session is installed, come up again,
// as after any other loss of the peer.
func (m *Mesh) restartedLocked(p *Peer) {
	m.log.Info("peer restarted; its streams end", "peer", p.id.Short())
	p.closeStreamsLocked()
	if p.up {
		p.up = false
		m.notifyLocked(PeerEvent{Peer: p.id, Up: false})
		m.notifyEnginesLocked(p.id, false)
	}
}
