package mesh

import (
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// reader holds one socket reader's state: its nonce buffer lets Open run
// without allocating.
type reader struct {
	t     *transport
	sock  *socket
	nonce noise.Nonce
}

// receive handles one packet that arrived over src: a datagram from a
// socket, or the inner packet of a routed frame. Cheap prefix checks come
// first; no crypto runs for a packet that cannot belong to a session or
// handshake.
func (r *reader) receive(b []byte, src *endpoint) {
	t := r.t
	if len(b) == 0 {
		t.stats.drop(DropShort)
		return
	}
	if len(b) > wire.MaxPacketSize {
		t.stats.drop(DropOversized)
		return
	}
	switch typ := wire.Type(b[0]); {
	case typ == wire.TypeData:
		r.receiveData(b, src)
	case typ.IsHandshake() || typ == wire.TypeCookie:
		t.receiveHandshake(b, src)
	case wire.IsSTUN(b) && src.relay == nil:
		if h := t.stun.Load(); h != nil {
			(*h)(b, src.addr)
			return
		}
		t.stats.drop(DropUnknownType)
	default:
		t.stats.drop(DropUnknownType)
	}
}

// receiveData opens a data packet on the session its receiver index
// names and hands its frame on. It takes no lock but the session index's
// read lock.
func (r *reader) receiveData(b []byte, src *endpoint) {
	t := r.t
	h, err := wire.ParseDataHeader(b)
	if err != nil {
		t.stats.drop(DropShort)
		return
	}
	s := t.index.get(h.Receiver)
	if s == nil {
		t.stats.drop(DropUnknownIndex)
		return
	}
	now := t.now()
	if now-s.created > int64(t.t.rejectAfter) {
		t.stats.drop(DropExpired)
		return
	}
	if !s.replay.Check(h.Counter) {
		t.stats.drop(DropReplay)
		return
	}
	hdr, ct := b[:wire.DataHeaderSize], b[wire.DataHeaderSize:]
	pt, err := s.recv.Open(ct[:0], &r.nonce, h.Counter, ct, hdr)
	if err != nil {
		t.stats.drop(DropBadTag)
		return
	}
	if !s.replay.Accept(h.Counter) {
		t.stats.drop(DropReplay)
		return
	}
	p := s.peer
	if src.relay != nil && src.node != p.id {
		// A relay delivered another node's session packet as if from p.
		t.stats.drop(DropBadRoute)
		return
	}
	p.received(len(b), src, now)
	if src.relay != nil {
		t.learnReverseRoute(p.id, src.relay) // p sealed it: the route is real
	}
	proto, body, err := wire.ParseFrame(pt)
	if !s.confirmed.Load() {
		if err == nil && proto == protoRefuse.id && t.refused(s, body) {
			return // the responder refused this node's membership
		}
		t.confirm(s)
	}
	if err != nil {
		t.stats.drop(DropShort)
		return
	}
	r.dispatch(p, proto, body)
}

// dispatch hands a decrypted frame to its protocol: the session's own
// here, any other to the layers above (upper.deliver).
func (r *reader) dispatch(p *Peer, proto wire.Proto, body []byte) {
	t := r.t
	switch proto {
	case protoKeepalive.id:
	case protoDatagram.id:
		if len(body) > MaxDatagramSize {
			t.stats.drop(DropOversized)
			return
		}
		in := getIn()
		in.n = copy(in.buf[:], body)
		in.from = p.id
		select {
		case t.dgram <- in:
		default:
			putIn(in)
			t.stats.drop(DropQueueFull)
		}
	case protoPing.id:
		if len(body) == wire.PingSize {
			t.sendFrame(p, protoPong.id, body, nil)
		}
	case protoPong.id:
		if len(body) == wire.PingSize {
			t.pong(p, body)
		}
	case protoRoute.id:
		r.receiveRouted(p, body)
	default:
		t.up.deliver(p, proto, body)
	}
}

// receiveRouted handles a routed packet that neighbour from handed us:
// ours to open, or to forward one hop closer to its destination.
func (r *reader) receiveRouted(from *Peer, body []byte) {
	t := r.t
	rh, inner, err := wire.ParseRoute(body)
	if err != nil {
		t.stats.drop(DropShort)
		return
	}
	if !t.isMember(from) {
		// A closed mesh routes between members only (admission.go).
		t.stats.drop(DropNotMember)
		return
	}
	if rh.Hops == 0 && rh.Src != from.id {
		// The first hop must be the sender itself: no one can put
		// packets on the mesh in another node's name.
		t.stats.drop(DropBadRoute)
		return
	}
	if rh.Dst == t.id.NodeID() {
		if ep := from.ep.Load(); ep != nil && ep.relay != nil {
			t.stats.drop(DropBadRoute) // no relaying through relayed sessions
			return
		}
		// No reverse route yet: rh.Src is unproven until a session
		// with it opens the inner packet (receiveData learns it then).
		src := endpoint{relay: from, node: rh.Src}
		r.receive(inner, &src)
		return
	}
	if t.cfg.DisableRelay {
		t.stats.drop(DropRelayDisabled)
		return
	}
	if rh.Hops >= wire.MaxHops {
		t.stats.drop(DropHopLimit)
		return
	}
	next := t.nextHop(rh.Dst, from)
	if next == nil {
		t.stats.drop(DropNoRoute)
		return
	}
	if !t.isMember(next) {
		t.stats.drop(DropNotMember)
		return
	}
	t.learnReverseRoute(rh.Src, from)
	pkt := getOut(routedHeadroom + len(inner) + wire.TagSize)
	n := copy(pkt.buf[routedHeadroom:], inner)
	rh.Hops++
	if t.forward(pkt, n, next, rh) == nil {
		t.stats.relayed.Add(1)
	}
}
