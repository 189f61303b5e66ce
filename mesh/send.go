package mesh

import (
	"context"
	"encoding/binary"
	"fmt"

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
	return m.sendFrame(p, wire.ProtoDatagram, payload)
}

// SendFrame sends body to p as one frame of subprotocol proto, for the
// layers above mesh. The frame is unreliable like a datagram. body must fit
// MaxDatagramSize.
func (m *Mesh) SendFrame(p *Peer, proto wire.Proto, body []byte) error {
	if len(body) > MaxDatagramSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(body), MaxDatagramSize)
	}
	return m.sendFrame(p, proto, body)
}

// sendFrame seals one frame on the peer's current session and queues it.
func (m *Mesh) sendFrame(p *Peer, proto wire.Proto, body []byte) error {
	if m.closed.Load() {
		return ErrClosed
	}
	s := p.cur.Load()
	if s == nil {
		return ErrNoSession
	}
	return m.sendFrameOn(s, proto, body)
}

// sendFrameOn seals one frame on session s, in place in a pooled packet,
// and queues it for the endpoint's socket. It allocates nothing.
func (m *Mesh) sendFrameOn(s *session, proto wire.Proto, body []byte) error {
	p := s.peer
	ep := p.ep.Load()
	if ep == nil {
		return ErrNoSession
	}
	counter := s.sendCounter.Add(1) - 1
	if counter >= noise.RejectAfterMessages {
		return ErrNoSession // the timer loop rekeys long before this
	}
	pkt := getOut()
	hdr := wire.PutDataHeader(pkt.buf[:], wire.DataHeader{Receiver: s.remote, Counter: counter})
	wire.PutFrameHeader(pkt.buf[wire.DataHeaderSize:], proto, 0)
	n := wire.DataHeaderSize + wire.FrameHeaderSize + copy(pkt.buf[wire.DataHeaderSize+wire.FrameHeaderSize:], body)
	ct := s.send.Seal(pkt.buf[wire.DataHeaderSize:wire.DataHeaderSize], &pkt.nonce, counter, pkt.buf[wire.DataHeaderSize:n], hdr)
	n = wire.DataHeaderSize + len(ct)
	pkt.n = n
	pkt.addr = ep.addr
	// pkt belongs to the writer once queued: do not touch it after.
	if err := m.enqueue(ep.sock, pkt); err != nil {
		return err
	}
	p.lastSent.Store(m.now())
	p.txPackets.Add(1)
	p.txBytes.Add(uint64(n))
	return nil
}

// ping sends an RTT probe; the pong updates the peer's smoothed RTT.
func (m *Mesh) ping(p *Peer) {
	var body [wire.PingSize]byte
	binary.LittleEndian.PutUint64(body[:], uint64(m.now()))
	m.sendFrame(p, wire.ProtoPing, body[:])
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
