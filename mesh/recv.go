package mesh

import (
	"errors"

	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// Handler receives the frames of one protocol. It runs on the socket's
// reader goroutine: it must not block, and body is valid only during the
// call (copy what you keep).
type Handler func(from *Peer, body []byte)

// Handle registers h for the raw frames of proto (see SendFrame). It
// fails with ErrProtoInUse if proto's number already has a handler or a
// stream listener on this node.
func (m *Mesh) Handle(proto Protocol, h Handler) error {
	if h == nil {
		return errors.New("mesh: Handle with a nil handler")
	}
	return m.protos.add(&registration{proto: proto, frames: h})
}

// reader holds one socket reader's state: its nonce buffer lets Open run
// without allocating.
type reader struct {
	m     *Mesh
	sock  *socket
	nonce noise.Nonce
}

// receive handles one packet that arrived over src: a datagram from a
// socket, or the inner packet of a routed frame. Cheap prefix checks come
// first; no crypto runs for a packet that cannot belong to a session or
// handshake.
func (r *reader) receive(b []byte, src *endpoint) {
	m := r.m
	if len(b) == 0 {
		m.stats.drop(DropShort)
		return
	}
	if len(b) > wire.MaxPacketSize {
		m.stats.drop(DropOversized)
		return
	}
	switch t := wire.Type(b[0]); {
	case t == wire.TypeData:
		r.receiveData(b, src)
	case t.IsHandshake():
		m.receiveHandshake(b, *src)
	case t == wire.TypeCookie:
		m.receiveCookie(b)
	case wire.IsSTUN(b) && src.relay == nil:
		if h := m.stun.Load(); h != nil {
			(*h)(b, src.addr)
			return
		}
		m.stats.drop(DropUnknownType)
	default:
		m.stats.drop(DropUnknownType)
	}
}

func (r *reader) receiveData(b []byte, src *endpoint) {
	m := r.m
	h, err := wire.ParseDataHeader(b)
	if err != nil {
		m.stats.drop(DropShort)
		return
	}
	m.mu.RLock()
	s := m.sessions[h.Receiver]
	m.mu.RUnlock()
	if s == nil {
		m.stats.drop(DropUnknownIndex)
		return
	}
	now := m.now()
	if now-s.created > int64(m.t.rejectAfter) {
		m.stats.drop(DropExpired)
		return
	}
	if !s.replay.Check(h.Counter) {
		m.stats.drop(DropReplay)
		return
	}
	hdr, ct := b[:wire.DataHeaderSize], b[wire.DataHeaderSize:]
	pt, err := s.recv.Open(ct[:0], &r.nonce, h.Counter, ct, hdr)
	if err != nil {
		m.stats.drop(DropBadTag)
		return
	}
	if !s.replay.Accept(h.Counter) {
		m.stats.drop(DropReplay)
		return
	}
	p := s.peer
	if src.relay != nil && src.node != p.id {
		// A relay delivered another node's session packet as if from p.
		m.stats.drop(DropBadRoute)
		return
	}
	p.received(len(b), src, now)
	if src.relay != nil {
		m.learnReverseRoute(p.id, src.relay) // p sealed it: the route is real
	}
	if !s.confirmed.Load() {
		m.confirm(s)
	}
	proto, body, err := wire.ParseFrame(pt)
	if err != nil {
		m.stats.drop(DropShort)
		return
	}
	r.dispatch(p, proto, body)
}

// dispatch hands a decrypted frame to its protocol: the session's own
// here, any other through the registry.
func (r *reader) dispatch(p *Peer, proto wire.Proto, body []byte) {
	m := r.m
	switch proto {
	case protoKeepalive.id:
	case protoDatagram.id:
		if len(body) > MaxDatagramSize {
			m.stats.drop(DropOversized)
			return
		}
		in := getIn()
		in.n = copy(in.buf[:], body)
		in.from = p.id
		select {
		case m.dgram <- in:
		default:
			putIn(in)
			m.stats.drop(DropQueueFull)
		}
	case protoPing.id:
		if len(body) == wire.PingSize {
			m.sendFrame(p, protoPong.id, body, nil)
		}
	case protoPong.id:
		if len(body) == wire.PingSize {
			m.pong(p, body)
		}
	case protoRoute.id:
		r.receiveRouted(p, body)
	default:
		m.deliver(p, proto, body)
	}
}

// deliver hands a frame to its registered protocol: a raw frame to its
// Handler, a stream frame to the peer's Mux for the protocol (made on
// first use). A frame of a protocol this node neither registered nor
// opened streams on is dropped; if it opens a stream, the stream is
// refused, without building a Mux for it.
func (m *Mesh) deliver(p *Peer, proto wire.Proto, body []byte) {
	reg := m.protos.lookup(proto)
	switch {
	case reg != nil && reg.frames != nil:
		reg.frames(p, body)
		return
	case reg != nil:
		m.muxFor(p, proto).mux.HandleFrame(body)
		return
	}
	m.mu.RLock()
	pm := p.muxes[proto]
	m.mu.RUnlock()
	if pm != nil {
		pm.mux.HandleFrame(body) // streams this node opened
		return
	}
	m.refuseStream(p, proto, body)
	m.stats.drop(DropNoHandler)
}

// receiveRouted handles a routed packet that neighbour from handed us:
// ours to open, or to forward one hop closer to its destination.
func (r *reader) receiveRouted(from *Peer, body []byte) {
	m := r.m
	rh, inner, err := wire.ParseRoute(body)
	if err != nil {
		m.stats.drop(DropShort)
		return
	}
	if rh.Hops == 0 && rh.Src != from.id {
		// The first hop must be the sender itself: no one can put
		// packets on the mesh in another node's name.
		m.stats.drop(DropBadRoute)
		return
	}
	if rh.Dst == m.id.NodeID() {
		if from.ep.Load() != nil && from.ep.Load().relay != nil {
			m.stats.drop(DropBadRoute) // no relaying through relayed sessions
			return
		}
		// No reverse route yet: rh.Src is unproven until a session
		// with it opens the inner packet (receiveData learns it then).
		src := endpoint{relay: from, node: rh.Src}
		r.receive(inner, &src)
		return
	}
	if m.cfg.DisableRelay {
		m.stats.drop(DropRelayDisabled)
		return
	}
	if rh.Hops >= wire.MaxHops {
		m.stats.drop(DropHopLimit)
		return
	}
	next := m.nextHop(rh.Dst, from)
	if next == nil {
		m.stats.drop(DropNoRoute)
		return
	}
	m.learnReverseRoute(rh.Src, from)
	pkt := getOut(routedHeadroom + len(inner) + wire.TagSize)
	n := copy(pkt.buf[routedHeadroom:], inner)
	rh.Hops++
	if m.forward(pkt, n, next, rh) == nil {
		m.stats.relayed.Add(1)
	}
}

// confirm marks s as proven by the peer: the responder's pending session
// becomes current (unless it lost a crossing, see keepsOwnLocked), and the
// XX dial waiting for s's confirmation completes.
func (m *Mesh) confirm(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.confirmed.Load() {
		return
	}
	s.confirmed.Store(true)
	p := s.peer
	if p.next == s && m.keepsOwnLocked(p, s) {
		p.next = nil
		p.retireLocked(s) // the peer seals on it until it has taken ours
		return
	}
	if p.current != s && (p.next == s || s.dial != nil && !s.dial.closed) {
		m.establishLocked(p, s)
	}
	if s.dial != nil {
		m.finishDialLocked(s.dial, p, nil) // if it was not p.dial
	}
}
