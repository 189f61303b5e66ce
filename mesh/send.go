package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	return m.tr.sendFrame(p, protoDatagram.id, payload, nil)
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
	return m.tr.sendFrame(p, proto.id, body, nil)
}

// sendFrame seals one frame, head followed by data, on the peer's current
// session and queues it.
func (t *transport) sendFrame(p *Peer, proto wire.Proto, head, data []byte) error {
	return t.sendFrameCounted(p, proto, head, data, nil)
}

// sendFrameCounted is sendFrame counting the frame in q, if not nil, until
// the socket writer has written it (see linkQueue).
func (t *transport) sendFrameCounted(p *Peer, proto wire.Proto, head, data []byte, q *linkQueue) error {
	if t.closed.Load() {
		return ErrClosed
	}
	s := p.cur.Load()
	if s == nil {
		return ErrNoSession
	}
	return t.sendFrameOn(s, proto, head, data, q)
}

// sendFrameOn seals one frame, head followed by data, on session s, in
// place in a pooled packet, and queues it for the peer's path: straight to
// its address, or wrapped for the relay; q, if not nil, counts it until
// the socket writer has written it. It allocates nothing.
func (t *transport) sendFrameOn(s *session, proto wire.Proto, head, data []byte, q *linkQueue) error {
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
	if q != nil {
		q.queued.Add(1) // putOut counts it out on every path from here
		pkt.q = q
	}
	n, err := sealFrame(s, pkt, off, proto, head, data)
	if err != nil {
		putOut(pkt)
		return err
	}
	if ep.relay != nil {
		err = t.forward(pkt, n, ep.relay, wire.RouteHeader{Src: t.id.NodeID(), Dst: p.id})
	} else {
		pkt.n = n
		pkt.addr = ep.addr
		// pkt belongs to the writer once queued: do not touch it after.
		err = t.enqueue(ep.sock, pkt)
	}
	if err != nil {
		return err
	}
	p.lastSent.Store(t.now())
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
func (t *transport) forward(pkt *outPacket, n int, relay *Peer, rh wire.RouteHeader) error {
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
	if err := t.enqueue(rep.sock, pkt); err != nil {
		return err
	}
	relay.lastSent.Store(t.now())
	relay.txPackets.Add(1)
	relay.txBytes.Add(uint64(total))
	return nil
}

// probeDirect pings p at a direct address on the current session. If the
// peer is there, its answer is an authenticated direct packet, and the
// path moves to it (see Peer.received); the relayed path is kept as the
// fallback.
func (t *transport) probeDirect(p *Peer, path *endpoint) error {
	s := p.cur.Load()
	if s == nil {
		return ErrNoSession
	}
	pkt := getOut(wire.DataOverhead + wire.FrameHeaderSize + wire.PingSize)
	var body [wire.PingSize]byte
	binary.LittleEndian.PutUint64(body[:], uint64(t.now()))
	n, err := sealFrame(s, pkt, 0, protoPing.id, body[:], nil)
	if err != nil {
		putOut(pkt)
		return err
	}
	pkt.n = n
	pkt.addr = path.addr
	return t.enqueue(path.sock, pkt)
}

// pinger matches pongs to the Ping calls waiting for them.
type pinger struct {
	lastStamp atomic.Int64 // see pingStamp
	mu        sync.Mutex
	waiting   map[uint64]chan time.Duration // Ping calls waiting, by stamp
}

func (pg *pinger) init() { pg.waiting = make(map[uint64]chan time.Duration) }

// ping sends an RTT probe stamped with the current mono time; the pong
// updates the peer's smoothed RTT. It returns the stamp.
func (t *transport) ping(p *Peer) (uint64, error) {
	var body [wire.PingSize]byte
	stamp := uint64(t.pingStamp())
	binary.LittleEndian.PutUint64(body[:], stamp)
	return stamp, t.sendFrame(p, protoPing.id, body[:], nil)
}

// pingStamp returns the current mono time, made unique so that concurrent
// Ping calls can tell their pongs apart.
func (t *transport) pingStamp() int64 {
	for {
		last, now := t.pings.lastStamp.Load(), t.now()
		if now <= last {
			now = last + 1
		}
		if t.pings.lastStamp.CompareAndSwap(last, now) {
			return now
		}
	}
}

// Ping measures one round trip to p over its session.
func (m *Mesh) Ping(ctx context.Context, p *Peer) (time.Duration, error) {
	t := m.tr
	ch := make(chan time.Duration, 1)
	t.pings.mu.Lock()
	stamp, err := t.ping(p)
	if err == nil {
		t.pings.waiting[stamp] = ch
	}
	t.pings.mu.Unlock()
	if err != nil {
		return 0, err
	}
	defer func() {
		t.pings.mu.Lock()
		delete(t.pings.waiting, stamp)
		t.pings.mu.Unlock()
	}()
	select {
	case rtt := <-ch:
		return rtt, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.ctx.Done():
		return 0, ErrClosed
	}
}

// pong completes the round trip a pong body answers.
func (t *transport) pong(p *Peer, body []byte) {
	sent := int64(binary.LittleEndian.Uint64(body))
	rtt := time.Duration(t.now() - sent)
	if sent <= 0 || rtt <= 0 {
		return
	}
	p.updateRTT(rtt)
	t.pings.mu.Lock()
	if ch := t.pings.waiting[uint64(sent)]; ch != nil {
		select {
		case ch <- rtt:
		default:
		}
	}
	t.pings.mu.Unlock()
}

// ReadDatagram blocks until a datagram arrives or ctx ends, copies it into
// buf and returns its length and sender. A datagram longer than buf is
// truncated to len(buf); make buf MaxDatagramSize bytes to avoid that.
func (m *Mesh) ReadDatagram(ctx context.Context, buf []byte) (int, *Peer, error) {
	var in *inPacket
	select {
	case in = <-m.tr.dgram:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	case <-m.tr.ctx.Done():
		return 0, nil, ErrClosed
	}
	n := copy(buf, in.buf[:in.n])
	p := m.tr.peers.get(in.from)
	putIn(in)
	return n, p, nil
}
