package meshtest

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/netmesh/netmesh/mesh/udp"
)

// DefaultQueueLen is a MemConn's receive queue length when MemNet.QueueLen
// is zero.
const DefaultQueueLen = 1024

// ErrAddrInUse is returned by MemNet.Listen for an address already bound.
var ErrAddrInUse = errors.New("meshtest: address already in use")

// MemNet is an in-memory UDP network: datagrams written to a MemConn's
// address arrive at it in write order, or are dropped if its queue is full
// or nobody listens there. Delivery is synchronous: by the time WriteBatch
// returns, each datagram is queued at its receiver or counted in Dropped.
// It makes tests deterministic: no kernel, no scheduling-dependent loss.
// The zero value is ready to use.
type MemNet struct {
	// QueueLen is the receive queue length of conns opened afterwards; zero
	// means DefaultQueueLen.
	QueueLen int
	// Route, if set, decides each datagram's path, as a NAT or a firewall
	// would: given the sender's address src and the destination dst it was
	// written to, it returns the source address the receiver sees (from)
	// and the address of the MemConn that receives it (to); the zero
	// AddrPort as to drops the datagram. Nil delivers to dst from src.
	// Route runs without the MemNet's lock held, concurrently for
	// concurrent writers, and must not call WriteBatch. Set it before the
	// first Listen.
	Route func(src, dst netip.AddrPort) (from, to netip.AddrPort)

	mu       sync.Mutex
	conns    map[netip.AddrPort]*MemConn
	nextPort uint16
	dropped  atomic.Uint64
}

// Listen binds a MemConn to laddr. An invalid address means 127.0.0.1;
// port 0 picks an unused port.
func (n *MemNet) Listen(laddr netip.AddrPort) (*MemConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conns == nil {
		n.conns = make(map[netip.AddrPort]*MemConn)
	}
	addr := laddr.Addr().Unmap()
	if !addr.IsValid() {
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	port := laddr.Port()
	for port == 0 {
		n.nextPort++
		if n.nextPort < 1024 {
			n.nextPort = 1024
		}
		if n.conns[netip.AddrPortFrom(addr, n.nextPort)] == nil {
			port = n.nextPort
		}
	}
	ap := netip.AddrPortFrom(addr, port)
	if n.conns[ap] != nil {
		return nil, ErrAddrInUse
	}
	qlen := n.QueueLen
	if qlen <= 0 {
		qlen = DefaultQueueLen
	}
	c := &MemConn{
		net:    n,
		laddr:  ap,
		inbox:  make(chan udp.Message, qlen),
		closed: make(chan struct{}),
	}
	n.conns[ap] = c
	return c, nil
}

// Relisten adapts Listen to Options.Relisten, so a FaultConn over a MemConn
// can Rebind.
func (n *MemNet) Relisten(laddr netip.AddrPort) (udp.Conn, error) {
	return n.Listen(laddr)
}

// Dropped counts datagrams lost so far: refused by Route, sent to an
// address nobody listens on, or overflowing a receive queue.
func (n *MemNet) Dropped() uint64 { return n.dropped.Load() }

// deliver queues a copy of b, sent from src to dst, at its receiver.
func (n *MemNet) deliver(src, dst netip.AddrPort, b []byte) {
	from, to := src, netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if n.Route != nil {
		from, to = n.Route(from, to)
	}
	n.mu.Lock()
	c := n.conns[to]
	n.mu.Unlock()
	if c == nil {
		n.dropped.Add(1)
		return
	}
	select {
	case c.inbox <- udp.Message{Buf: append([]byte(nil), b...), Addr: from}:
	default:
		n.dropped.Add(1)
	}
}

// MemConn is one endpoint of a MemNet. It implements udp.Conn; WriteBatch
// copies each datagram.
type MemConn struct {
	net    *MemNet
	laddr  netip.AddrPort
	inbox  chan udp.Message
	closed chan struct{}
	once   sync.Once
}

// LocalAddr returns the bound address.
func (c *MemConn) LocalAddr() netip.AddrPort { return c.laddr }

// Close unbinds the address and unblocks a pending ReadBatch.
func (c *MemConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.net.mu.Lock()
		delete(c.net.conns, c.laddr)
		c.net.mu.Unlock()
		close(c.closed)
		err = nil
	})
	return err
}

// ReadBatch implements udp.Conn: it waits for one datagram, then takes as
// many more as are queued and fit.
func (c *MemConn) ReadBatch(msgs []udp.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case msgs[0] = <-c.inbox:
	}
	n := 1
	for n < len(msgs) {
		select {
		case msgs[n] = <-c.inbox:
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

// WriteBatch implements udp.Conn. Like UDP, it reports datagrams to absent
// or congested receivers, or refused by MemNet.Route, as sent.
func (c *MemConn) WriteBatch(msgs []udp.Message) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	for _, m := range msgs {
		c.net.deliver(c.laddr, m.Addr, m.Buf)
	}
	return len(msgs), nil
}
