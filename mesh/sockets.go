package mesh

import (
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"net/netip"
	"runtime"

	"github.com/netmesh/netmesh/mesh/udp"
	"github.com/netmesh/netmesh/mesh/wire"
)

// socket is one UDP socket with its send queue.
type socket struct {
	conn  udp.Conn
	queue chan *outPacket
	v6    bool
}

// openConns opens the sockets cfg asks for: its Conn, one socket for a
// host:port, or one per address family for ":port".
func openConns(cfg *Config, log *slog.Logger, tag uint32) ([]udp.Conn, error) {
	if cfg.Conn != nil {
		return []udp.Conn{cfg.Conn}, nil
	}
	addr := cfg.ListenAddr
	if addr == "" {
		addr = ":0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen address %q: %w", addr, err)
	}
	if host == "" {
		p, err := netip.ParseAddrPort("0.0.0.0:" + port)
		if err != nil {
			return nil, fmt.Errorf("mesh: listen address %q: %w", addr, err)
		}
		c4, err := listen("udp4", p, tag)
		if err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
		c6, err := listen("udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), p.Port()), tag)
		if err != nil {
			// A host without IPv6 still gets an IPv4 node.
			log.Warn("no IPv6 socket", "err", err)
			return []udp.Conn{c4}, nil
		}
		return []udp.Conn{c4, c6}, nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen address %q must be ip:port or :port: %w", addr, err)
	}
	network := "udp4"
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		network = "udp6"
	}
	c, err := listen(network, ap, tag)
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	return []udp.Conn{c}, nil
}

// listen opens one of the node's sockets. The kernel drops every
// datagram that is neither a netmesh packet (first byte 0xE1 to 0xE6)
// nor a STUN message, and every data packet whose receiver index lacks
// the node's index tag, before the socket sees it, so such junk costs the
// node no read.
func listen(network string, addr netip.AddrPort, tag uint32) (udp.Conn, error) {
	lc := udp.ListenConfig{
		Accept: &udp.ByteRange{Min: byte(wire.TypeInitIK), Max: byte(wire.TypeData)},
		// The index is little-endian; the filter reads words big-endian.
		Match: &udp.WordMatch{First: byte(wire.TypeData), Offset: wire.DataReceiverOffset,
			Mask: bits.ReverseBytes32(indexTagMask), Value: bits.ReverseBytes32(tag)},
	}
	return lc.Listen(network, addr)
}

// sockFor returns the socket for a destination's address family.
func (t *transport) sockFor(a netip.AddrPort) *socket {
	v6 := a.Addr().Is6()
	for _, s := range t.socks {
		if s.v6 == v6 {
			return s
		}
	}
	if t.cfg.Conn != nil && len(t.socks) == 1 {
		return t.socks[0]
	}
	return nil
}

// listenAddrs returns the addresses of the node's sockets.
func (t *transport) listenAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range t.socks {
		out = append(out, s.conn.LocalAddr())
	}
	return out
}

// readLoop reads s in batches and hands each datagram to the receive
// path; handshake messages leave it at once for the handshake workers.
func (t *transport) readLoop(s *socket) {
	defer t.wg.Done()
	r := &reader{t: t, sock: s}
	msgs := make([]udp.Message, readBatch)
	for {
		n, err := s.conn.ReadBatch(msgs)
		if err != nil {
			if t.closed.Load() {
				return
			}
			t.log.Error("socket read failed; node stops receiving", "addr", s.conn.LocalAddr(), "err", err)
			return
		}
		for i := range msgs[:n] {
			src := endpoint{addr: msgs[i].Addr, sock: s}
			r.receive(msgs[i].Buf, &src)
		}
		if len(t.dgram) > 0 {
			// Under sustained load the reader never blocks, and the
			// goroutine its channel send woke waits in this P's runnext
			// slot for a whole time slice while the queue overflows:
			// the reader would decrypt packets only to drop them. Let
			// the consumer run before reading the next batch.
			runtime.Gosched()
		}
	}
}

// writeLoop sends the packets queued for s in batches.
func (t *transport) writeLoop(s *socket) {
	defer t.wg.Done()
	msgs := make([]udp.Message, 0, writeBatch)
	pkts := make([]*outPacket, 0, writeBatch)
	for {
		var p *outPacket
		select {
		case p = <-s.queue:
		case <-t.ctx.Done():
			return
		}
		pkts = append(pkts, p)
		// Once the queue is empty, yield the processor once before the
		// system call: goroutines that were ready to send (callers,
		// handlers, a publisher) run first and queue their packets, and
		// a Mux packs their frames while this batch is not written yet,
		// so one system call carries what took several. With nothing else
		// ready, Gosched returns at once.
		yielded := false
	drain:
		for len(pkts) < writeBatch {
			select {
			case p = <-s.queue:
				pkts = append(pkts, p)
			default:
				if yielded {
					break drain
				}
				yielded = true
				runtime.Gosched()
			}
		}
		for _, p := range pkts {
			msgs = append(msgs, udp.Message{Buf: p.buf[:p.n], Addr: p.addr})
		}
		t.stats.socketWrites.Add(1)
		t.stats.packetsWritten.Add(uint64(len(msgs)))
		if _, err := s.conn.WriteBatch(msgs); err != nil && !t.closed.Load() {
			if t.log.Enabled(t.ctx, slog.LevelDebug) {
				t.log.Debug("socket write failed", "err", err)
			}
		}
		// Count every frame written before a Mux hears of it, so the
		// Mux sees the whole batch gone when it sends what it held back.
		for _, p := range pkts {
			if p.q != nil {
				p.q.written.Add(1)
			}
		}
		// A Mux that held a fragment back sends it from here, sealed and
		// queued on this goroutine: enqueue never blocks, so the writer
		// cannot wait on itself, and the next batch takes the fragment.
		for i, p := range pkts {
			if q := p.q; q != nil {
				p.q = nil
				q.uncork()
			}
			putOut(p)
			pkts[i] = nil
			msgs[i] = udp.Message{}
		}
		pkts, msgs = pkts[:0], msgs[:0]
	}
}

// enqueue hands p to its socket's writer, or returns it to the pool and
// reports ErrBackpressure.
func (t *transport) enqueue(s *socket, p *outPacket) error {
	select {
	case s.queue <- p:
		return nil
	default:
		putOut(p)
		t.stats.sendBackpressure.Add(1)
		return ErrBackpressure
	}
}

// sendRaw sends a copy of b, any bytes, from the socket of addr's family:
// STUN requests and NAT probes share the node's port this way.
//
//lint:ignore U1000 used only with the nat build tag
func (t *transport) sendRaw(addr netip.AddrPort, b []byte) error {
	s := t.sockFor(addr)
	if s == nil {
		return ErrNoAddress
	}
	return t.sendTo(&endpoint{addr: addr, sock: s}, b)
}

// sendTo sends a copy of b, a handshake or cookie message, over path.
func (t *transport) sendTo(path *endpoint, b []byte) error {
	p := getOut(routedHeadroom + len(b) + wire.TagSize)
	if path.relay != nil {
		n := copy(p.buf[routedHeadroom:], b)
		return t.forward(p, n, path.relay, wire.RouteHeader{Src: t.id.NodeID(), Dst: path.node})
	}
	p.n = copy(p.buf[:], b)
	p.addr = path.addr
	return t.enqueue(path.sock, p)
}
