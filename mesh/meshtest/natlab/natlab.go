//go:build nat

// Package natlab is an in-process NAT simulator for tests, in the spirit
// of tailscale's natlab: a Network of UDP endpoints, some of them behind
// simulated NATs with RFC 4787 mapping and filtering behaviours, mapping
// timeouts and an injectable clock. The endpoints are meshtest.MemConns
// (udp.Conn, so real mesh nodes run over them) on a meshtest.MemNet whose
// Route hook is the NATs. Delivery is immediate and in order; nothing is
// lost unless a NAT filters it, a mapping expired, the test blocked the
// path, or a receive queue is full.
//
// Private addresses must be unique across the Network (give each NAT its
// own prefix): a datagram to an address inside the sender's own NAT prefix
// stays on that LAN, a datagram to any other private address is lost, as
// on the Internet.
package natlab

import (
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"

	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/mesh/udp"
)

// Behavior is an RFC 4787 mapping or filtering behaviour: what a NAT keys
// a mapping (or the permission to come in) on, besides the private
// endpoint.
type Behavior uint8

// Behaviours.
const (
	// EndpointIndependent: one mapping for every destination; anyone may
	// send in.
	EndpointIndependent Behavior = iota
	// AddressDependent: per destination address; only addresses the host
	// sent to may send in.
	AddressDependent
	// AddressAndPortDependent: per destination address and port; only
	// those may send in.
	AddressAndPortDependent
)

// NATConfig is a NAT's behaviour.
type NATConfig struct {
	Mapping, Filtering Behavior
	// Timeout is how long an unused mapping lives; outbound traffic
	// refreshes it. Zero means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout is a mapping's idle lifetime: RFC 4787 asks for at least
// 2 minutes.
const DefaultTimeout = 2 * time.Minute

// The classic NAT types.
var (
	FullCone          = NATConfig{Mapping: EndpointIndependent, Filtering: EndpointIndependent}
	AddressRestricted = NATConfig{Mapping: EndpointIndependent, Filtering: AddressDependent}
	PortRestricted    = NATConfig{Mapping: EndpointIndependent, Filtering: AddressAndPortDependent}
	Symmetric         = NATConfig{Mapping: AddressAndPortDependent, Filtering: AddressAndPortDependent}
)

// Network is a simulated internet. The zero value is ready to use.
type Network struct {
	// Now is the clock mappings age by; nil means time.Now. Set it before
	// use.
	Now func() time.Time

	mem meshtest.MemNet // its Route is n.route once anything listens

	// mu guards the fields below and every NAT's mapping tables.
	mu      sync.Mutex
	nats    map[netip.Addr]*NAT // by public address
	blocked map[[2]netip.Addr]bool
}

func (n *Network) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

// NAT is a simulated NAT: hosts in Private reach the rest of the Network
// as Public.
type NAT struct {
	Public  netip.Addr   // the address its hosts appear from
	Private netip.Prefix // the hosts behind it
	cfg     NATConfig

	// Guarded by the Network's mu.
	nextPort uint16
	byKey    map[mapKey]*mapping
	byPort   map[uint16]*mapping
}

type mapKey struct {
	private netip.AddrPort
	dst     netip.AddrPort // reduced by the mapping behaviour
}

type mapping struct {
	key      mapKey
	port     uint16
	lastUsed time.Time
	permits  map[netip.AddrPort]time.Time // reduced by the filtering behaviour
}

// reduce keeps what behaviour b keys on.
func reduce(b Behavior, a netip.AddrPort) netip.AddrPort {
	switch b {
	case EndpointIndependent:
		return netip.AddrPort{}
	case AddressDependent:
		return netip.AddrPortFrom(a.Addr(), 0)
	}
	return a
}

// AddNAT adds a NAT with public address public for hosts in private.
func (n *Network) AddNAT(public netip.Addr, private netip.Prefix, cfg NATConfig) *NAT {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nats == nil {
		n.nats = make(map[netip.Addr]*NAT)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	nat := &NAT{Public: public, Private: private, cfg: cfg, nextPort: 40000,
		byKey: make(map[mapKey]*mapping), byPort: make(map[uint16]*mapping)}
	n.nats[public] = nat
	return nat
}

// Block drops every datagram between a and b (either may be a public
// host's or a NAT's public address) until Unblock.
func (n *Network) Block(a, b netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.blocked == nil {
		n.blocked = make(map[[2]netip.Addr]bool)
	}
	n.blocked[[2]netip.Addr{a, b}] = true
	n.blocked[[2]netip.Addr{b, a}] = true
}

// Unblock undoes Block.
func (n *Network) Unblock(a, b netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.blocked, [2]netip.Addr{a, b})
	delete(n.blocked, [2]netip.Addr{b, a})
}

// Dropped counts datagrams lost so far: filtered, expired, blocked,
// unroutable or overflowing a queue.
func (n *Network) Dropped() uint64 { return n.mem.Dropped() }

// Listen binds a conn at addr, as meshtest.MemNet.Listen does (an address
// already bound gives meshtest.ErrAddrInUse). The conn is behind the NAT
// whose Private prefix holds addr, else on the public side.
func (n *Network) Listen(addr netip.AddrPort) (*meshtest.MemConn, error) {
	n.mu.Lock()
	if n.mem.Route == nil {
		n.mem.Route = n.route
	}
	n.mu.Unlock()
	return n.mem.Listen(addr)
}

// route is the MemNet's Route: it takes a datagram from src towards dst
// through the NATs and returns the source the receiver sees and the
// receiver's address, zero if the datagram is lost.
func (n *Network) route(src, dst netip.AddrPort) (from, to netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	srcNAT := n.natOf(src.Addr())
	from = src
	if srcNAT != nil && !srcNAT.Private.Contains(dst.Addr()) {
		from = srcNAT.outbound(src, dst, now)
	}
	if n.blocked[[2]netip.Addr{from.Addr(), dst.Addr()}] {
		return from, netip.AddrPort{}
	}
	if nat := n.nats[dst.Addr()]; nat != nil {
		return from, nat.inbound(from, dst, now)
	}
	if dstNAT := n.natOf(dst.Addr()); dstNAT != nil && dstNAT != srcNAT {
		return from, netip.AddrPort{} // another NAT's private address is not routable
	}
	return from, dst
}

// natOf returns the NAT whose private side holds a, or nil for a public
// address. Caller holds mu.
func (n *Network) natOf(a netip.Addr) *NAT {
	for _, nat := range n.nats {
		if nat.Private.Contains(a) {
			return nat
		}
	}
	return nil
}

// outbound finds or makes the mapping for private → dst, refreshes it,
// and returns the public source address. Caller holds the Network's mu.
func (t *NAT) outbound(private, dst netip.AddrPort, now time.Time) netip.AddrPort {
	key := mapKey{private, reduce(t.cfg.Mapping, dst)}
	m := t.byKey[key]
	if m != nil && now.Sub(m.lastUsed) > t.cfg.Timeout {
		t.expire(m)
		m = nil
	}
	if m == nil {
		m = &mapping{key: key, port: t.allocPort(private.Port()), permits: make(map[netip.AddrPort]time.Time)}
		t.byKey[key] = m
		t.byPort[m.port] = m
	}
	m.lastUsed = now
	m.permits[reduce(t.cfg.Filtering, dst)] = now
	return netip.AddrPortFrom(t.Public, m.port)
}

// allocPort keeps the private port when free (as Linux does), else takes
// the next free one.
func (t *NAT) allocPort(want uint16) uint16 {
	if t.byPort[want] == nil && want != 0 {
		return want
	}
	for t.byPort[t.nextPort] != nil || t.nextPort < 1024 {
		t.nextPort++
	}
	p := t.nextPort
	t.nextPort++
	return p
}

func (t *NAT) expire(m *mapping) {
	delete(t.byKey, m.key)
	delete(t.byPort, m.port)
}

// inbound returns the private address a datagram from src to the NAT's
// public dst goes to, or the zero AddrPort if no live mapping admits it.
// Caller holds the Network's mu.
func (t *NAT) inbound(src, dst netip.AddrPort, now time.Time) netip.AddrPort {
	m := t.byPort[dst.Port()]
	if m == nil {
		return netip.AddrPort{}
	}
	if now.Sub(m.lastUsed) > t.cfg.Timeout {
		t.expire(m)
		return netip.AddrPort{}
	}
	at, ok := m.permits[reduce(t.cfg.Filtering, src)]
	if !ok || now.Sub(at) > t.cfg.Timeout {
		return netip.AddrPort{}
	}
	return m.key.private
}

// ServeSTUN answers STUN Binding requests arriving on c with the
// requester's address as c sees it (XOR-MAPPED-ADDRESS), until c is
// closed. It returns a channel closed when it stops.
func ServeSTUN(c udp.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		msgs := make([]udp.Message, 16)
		for {
			n, err := c.ReadBatch(msgs)
			if err != nil {
				return
			}
			for _, in := range msgs[:n] {
				req := &stun.Message{Raw: append([]byte(nil), in.Buf...)}
				if req.Decode() != nil || req.Type != stun.BindingRequest {
					continue
				}
				resp, err := stun.Build(req, stun.BindingSuccess,
					&stun.XORMappedAddress{IP: in.Addr.Addr().AsSlice(), Port: int(in.Addr.Port())},
					stun.Fingerprint)
				if err != nil {
					continue
				}
				c.WriteBatch([]udp.Message{{Buf: resp.Raw, Addr: in.Addr}})
			}
		}
	}()
	return done
}
