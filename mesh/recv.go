package mesh

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// Handler receives the frames of one subprotocol. It runs on the socket's
// reader goroutine: it must not block, and body is valid only during the
// call (copy what you keep).
type Handler func(from *Peer, body []byte)

// Handle registers h for subprotocol id, which must be at least
// wire.ProtoUserMin unless the caller is a netmesh engine.
func (m *Mesh) Handle(id wire.Proto, h Handler) error {
	if !m.handlers[id].CompareAndSwap(nil, &h) {
		return ErrProtoInUse
	}
	return nil
}

// reader holds one socket reader's state: its nonce buffer lets Open run
// without allocating.
type reader struct {
	m     *Mesh
	sock  *socket
	nonce noise.Nonce
}

// receive handles one datagram. Cheap prefix checks come first; no crypto
// runs for a packet that cannot belong to a session or handshake.
func (r *reader) receive(b []byte, src netip.AddrPort) {
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
		m.receiveHandshake(b, src, r.sock)
	case t == wire.TypeCookie:
		m.receiveCookie(b)
	default:
		m.stats.drop(DropUnknownType)
	}
}

func (r *reader) receiveData(b []byte, src netip.AddrPort) {
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
	p.received(len(b), src, r.sock, now)
	if !s.confirmed.Load() {
		m.confirm(s)
	}
	proto, _, body, err := wire.ParseFrame(pt)
	if err != nil {
		m.stats.drop(DropShort)
		return
	}
	m.dispatch(p, proto, body)
}

// dispatch hands a decrypted frame to its subprotocol.
func (m *Mesh) dispatch(p *Peer, proto wire.Proto, body []byte) {
	switch proto {
	case wire.ProtoKeepalive:
	case wire.ProtoDatagram:
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
	case wire.ProtoPing:
		if len(body) == wire.PingSize {
			m.sendFrame(p, wire.ProtoPong, body)
		}
	case wire.ProtoPong:
		if len(body) == wire.PingSize {
			sent := int64(binary.LittleEndian.Uint64(body))
			if rtt := m.now() - sent; rtt > 0 && sent > 0 {
				p.updateRTT(time.Duration(rtt))
			}
		}
	default:
		h := m.handlers[proto].Load()
		if h == nil {
			m.stats.drop(DropNoHandler)
			return
		}
		(*h)(p, body)
	}
}

// confirm marks s as proven by the peer: the responder's pending session
// becomes current, and a dial waiting for confirmation completes.
func (m *Mesh) confirm(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.confirmed.Load() {
		return
	}
	s.confirmed.Store(true)
	p := s.peer
	if p.current != s && (p.next == s || p.dial != nil && p.dial.session == s) {
		m.establishLocked(p, s)
	}
}
