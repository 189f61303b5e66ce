package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// SendDatagram sends payload to p as one unreliable datagram: it may be
// lost, duplicated by the network (the receiver drops duplicates) or
// reordered. Payloads above MaxDatagramSize fail with ErrTooLarge; a full
// send queue fails with ErrBackpressure. ctx is checked before sending;
// the call itself never blocks.
func (m *Mesh) SendDatagram(ctx context.Context, p *Peer, payload []byte) error {
	if len(payload) > MaxDatagramSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), MaxDatagramSize)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return m.sendFrame(p, protoDatagram.id, payload, nil)
}

// SendFrame sends body to p as one raw frame of protocol proto, which the
// peer hands to the Handler it registered for proto (see Handle). The
// frame is unreliable like a datagram. body must fit MaxDatagramSize.
func (m *Mesh) SendFrame(p *Peer, proto Protocol, body []byte) error {
	if !proto.valid() {
		return errors.New("mesh: the zero Protocol; make one with NewProtocol")
	}
	if len(body) > MaxDatagramSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(body), MaxDatagramSize)
	}
	return m.sendFrame(p, proto.id, body, nil)
}

// sendFrame seals one frame, head followed by data, on the peer's current
// session and queues it.
func (m *Mesh) sendFrame(p *Peer, proto wire.Proto, head, data []byte) error {
	if m.closed.Load() {
		return ErrClosed
	}
	s := p.cur.Load()
	if s == nil {
		return ErrNoSession
	}
	return m.sendFrameOn(s, proto, head, data)
}

// sendFrameOn seals one frame, head followed by data, on session s, in
// place in a pooled packet, and queues it for the peer's path: straight to
// its address, or wrapped for the relay. It allocates nothing.
func (m *Mesh) sendFrameOn(s *session, proto wire.Proto, head, data []byte) error {
	p := s.peer
	ep := p.ep.Load()
	if ep == nil {
		return ErrNoSession
	}
	off := 0
	if ep.relay != nil {
		off = routedHeadroom
	}
	pkt := getOut(off + wire.DataOverhead + wire.FrameHeaderSize + len(head) + len(data))
	n, err := sealFrame(s, pkt, off, proto, head, data)
	if err != nil {
		putOut(pkt)
		return err
	}
	if ep.relay != nil {
		err = m.forward(pkt, n, ep.relay, wire.RouteHeader{Src: m.id.NodeID(), Dst: p.id})
	} else {
		pkt.n = n
		pkt.addr = ep.addr
		// pkt belongs to the writer once queued: do not touch it after.
		err = m.enqueue(ep.sock, pkt)
	}
	if err != nil {
		return err
	}
	p.lastSent.Store(m.now())
	p.txPackets.Add(1)
	p.txBytes.Add(uint64(n))
	return nil
}

// sealFrame writes a data packet carrying one frame, head followed by
// data, at pkt.buf[off:] and returns its length.
func sealFrame(s *session, pkt *outPacket, off int, proto wire.Proto, head, data []byte) (int, error) {
	counter := s.sendCounter.Add(1) - 1
	if counter >= noise.RejectAfterMessages {
		return 0, ErrNoSession // the timer loop rekeys long before this
	}
	b := pkt.buf[off:]
	if len(head)+len(data) > len(b)-wire.DataOverhead-wire.FrameHeaderSize {
		return 0, ErrTooLarge
	}
	hdr := wire.PutDataHeader(b, wire.DataHeader{Receiver: s.remote, Counter: counter})
	wire.PutFrameHeader(b[wire.DataHeaderSize:], proto)
	n := wire.DataHeaderSize + wire.FrameHeaderSize
	n += copy(b[n:], head)
	n += copy(b[n:], data)
	ct := s.send.Seal(b[wire.DataHeaderSize:wire.DataHeaderSize], &pkt.nonce, counter, b[wire.DataHeaderSize:n], hdr)
	return wire.DataHeaderSize + len(ct), nil
}

// forward sends the packet at pkt.buf[routedHeadroom:][:n] to relay as a
// routed frame with header rh, sealed on the relay's session. It takes
// ownership of pkt. Only a directly reachable peer can be a relay.
func (m *Mesh) forward(pkt *outPacket, n int, relay *Peer, rh wire.RouteHeader) error {
	rs := relay.cur.Load()
	rep := relay.ep.Load()
	if rs == nil || rep == nil || rep.relay != nil {
		putOut(pkt)
		return ErrNoRoute
	}
	wire.PutRouteHeader(pkt.buf[routedHeadroom-wire.RouteHeaderSize:], rh)
	body := pkt.buf[wire.DataHeaderSize+wire.FrameHeaderSize : routedHeadroom+n]
	counter := rs.sendCounter.Add(1) - 1
	if counter >= noise.RejectAfterMessages || routedHeadroom+n+wire.TagSize > len(pkt.buf) {
		putOut(pkt)
		return ErrNoRoute
	}
	hdr := wire.PutDataHeader(pkt.buf[:], wire.DataHeader{Receiver: rs.remote, Counter: counter})
	wire.PutFrameHeader(pkt.buf[wire.DataHeaderSize:], protoRoute.id)
	ct := rs.send.Seal(pkt.buf[wire.DataHeaderSize:wire.DataHeaderSize], &pkt.nonce, counter, pkt.buf[wire.DataHeaderSize:wire.DataHeaderSize+wire.FrameHeaderSize+len(body)], hdr)
	total := wire.DataHeaderSize + len(ct)
	pkt.n = total
	pkt.addr = rep.addr
	if err := m.enqueue(rep.sock, pkt); err != nil {
		return err
	}
	relay.lastSent.Store(m.now())
	relay.txPackets.Add(1)
	relay.txBytes.Add(uint64(total))
	return nil
}

// probeDirect pings p at a direct address on the current session. If the
// peer is there, its answer is an authenticated direct packet, and the
// path moves to it (see Peer.received); the relayed path is kept as the
// fallback.
func (m *Mesh) probeDirect(p *Peer, path *endpoint) error {
	s := p.cur.Load()
	if s == nil {
		return ErrNoSession
	}
	pkt := getOut(wire.DataOverhead + wire.FrameHeaderSize + wire.PingSize)
	var body [wire.PingSize]byte
	binary.LittleEndian.PutUint64(body[:], uint64(m.now()))
	n, err := sealFrame(s, pkt, 0, protoPing.id, body[:], nil)
	if err != nil {
		putOut(pkt)
		return err
	}
	pkt.n = n
	pkt.addr = path.addr
	return m.enqueue(path.sock, pkt)
}

// ping sends an RTT probe stamped with the current mono time; the pong
// updates the peer's smoothed RTT. It returns the stamp.
func (m *Mesh) ping(p *Peer) (uint64, error) {
	var body [wire.PingSize]byte
	stamp := uint64(m.pingStamp())
	binary.LittleEndian.PutUint64(body[:], stamp)
	return stamp, m.sendFrame(p, protoPing.id, body[:], nil)
}

// pingStamp returns the current mono time, made unique so that concurrent
// Ping calls can tell their pongs apart.
func (m *Mesh) pingStamp() int64 {
	for {
		last, now := m.lastStamp.Load(), m.now()
		if now <= last {
			now = last + 1
		}
		if m.lastStamp.CompareAndSwap(last, now) {
			return now
		}
	}
}

// Ping measures one round trip to p over its session.
func (m *Mesh) Ping(ctx context.Context, p *Peer) (time.Duration, error) {
	ch := make(chan time.Duration, 1)
	m.pingMu.Lock()
	stamp, err := m.ping(p)
	if err == nil {
		m.pings[stamp] = ch
	}
	m.pingMu.Unlock()
	if err != nil {
		return 0, err
	}
	defer func() {
		m.pingMu.Lock()
		delete(m.pings, stamp)
		m.pingMu.Unlock()
	}()
	select {
	case rtt := <-ch:
		return rtt, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-m.ctx.Done():
		return 0, ErrClosed
	}
}

// pong completes the round trip a pong body answers.
func (m *Mesh) pong(p *Peer, body []byte) {
	sent := int64(binary.LittleEndian.Uint64(body))
	rtt := time.Duration(m.now() - sent)
	if sent <= 0 || rtt <= 0 {
		return
	}
	p.updateRTT(rtt)
	m.pingMu.Lock()
	if ch := m.pings[uint64(sent)]; ch != nil {
		select {
		case ch <- rtt:
		default:
		}
	}
	m.pingMu.Unlock()
}

// ReadDatagram blocks until a datagram arrives or ctx ends, copies it into
// buf and returns its length and sender. A datagram longer than buf is
// truncated to len(buf); make buf MaxDatagramSize bytes to avoid that.
func (m *Mesh) ReadDatagram(ctx context.Context, buf []byte) (int, *Peer, error) {
	var in *inPacket
	select {
	case in = <-m.dgram:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	case <-m.ctx.Done():
		return 0, nil, ErrClosed
	}
	n := copy(buf, in.buf[:in.n])
	m.mu.RLock()
	p := m.peers[in.from]
	m.mu.RUnlock()
	putIn(in)
	return n, p, nil
}
