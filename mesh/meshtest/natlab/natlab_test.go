//go:build nat

package natlab

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/mesh/udp"
)

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func listen(t *testing.T, n *Network, addr string) *meshtest.MemConn {
	t.Helper()
	c, err := n.Listen(netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(c *meshtest.MemConn, to netip.AddrPort) {
	c.WriteBatch([]udp.Message{{Buf: []byte("x"), Addr: to}})
}

// recv returns the source of the first datagram queued at c, or the zero
// AddrPort if none is, and empties the queue. Delivery is synchronous, so
// c sends itself a marker and reads up to it: anything before it was
// already queued.
func recv(t *testing.T, c *meshtest.MemConn) netip.AddrPort {
	t.Helper()
	const marker = "marker"
	c.WriteBatch([]udp.Message{{Buf: []byte(marker), Addr: c.LocalAddr()}})
	var first netip.AddrPort
	msgs := make([]udp.Message, 8)
	for {
		n, err := c.ReadBatch(msgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs[:n] {
			if string(m.Buf) == marker && m.Addr == c.LocalAddr() {
				return first
			}
			if !first.IsValid() {
				first = m.Addr
			}
		}
	}
}

func TestBehaviours(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name string
		cfg  NATConfig
		// Which senders get in after the host sent to s1: s1, s1's address
		// on another port, an address the host never sent to.
		inSame, inPort, inAddr bool
		samePort               bool // one mapping for two destinations
	}{
		{"full cone", FullCone, true, true, true, true},
		{"address restricted", AddressRestricted, true, true, false, true},
		{"port restricted", PortRestricted, true, false, false, true},
		{"symmetric", Symmetric, true, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &Network{}
			n.AddNAT(netip.MustParseAddr("198.51.100.10"), netip.MustParsePrefix("10.0.0.0/24"), tc.cfg)
			h := listen(t, n, "10.0.0.2:5000")
			s1 := listen(t, n, "192.0.2.1:1000")
			s1b := listen(t, n, "192.0.2.1:2000")
			s2 := listen(t, n, "192.0.2.2:1000")
			s3 := listen(t, n, "192.0.2.3:1000") // the host never sends to it
			send(h, s1.LocalAddr())
			send(h, s2.LocalAddr())
			m1, m2 := recv(t, s1), recv(t, s2)
			if m1.Addr() != netip.MustParseAddr("198.51.100.10") || (m1 == m2) != tc.samePort {
				t.Fatalf("mappings %v and %v", m1, m2)
			}
			if tc.samePort && m1 != ap("198.51.100.10:5000") {
				t.Fatalf("mapping %v does not keep the port", m1)
			}
			for _, in := range []struct {
				from *meshtest.MemConn
				want bool
			}{{s1, tc.inSame}, {s1b, tc.inPort}, {s3, tc.inAddr}} {
				send(in.from, m1)
				if got := recv(t, h).IsValid(); got != in.want {
					t.Errorf("from %v: delivered %v, want %v", in.from.LocalAddr(), got, in.want)
				}
			}
			// Another NAT's private address is not routable.
			send(s1, ap("10.0.0.2:5000"))
			if recv(t, h).IsValid() {
				t.Error("a public host reached a private address")
			}
		})
	}
}

func TestMappingTimeout(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	n := &Network{Now: clock.Now}
	cfg := PortRestricted
	cfg.Timeout = 30 * time.Second
	n.AddNAT(netip.MustParseAddr("198.51.100.10"), netip.MustParsePrefix("10.0.0.0/24"), cfg)
	h := listen(t, n, "10.0.0.2:5000")
	s := listen(t, n, "192.0.2.1:1000")
	send(h, s.LocalAddr())
	m := recv(t, s)
	clock.Advance(29 * time.Second)
	send(s, m)
	if !recv(t, h).IsValid() {
		t.Fatal("mapping gone before its timeout")
	}
	// Inbound traffic does not refresh the mapping.
	clock.Advance(2 * time.Second)
	send(s, m)
	if recv(t, h).IsValid() {
		t.Fatal("mapping outlived its timeout")
	}
	if n.Dropped() == 0 {
		t.Fatal("drop not counted")
	}
	// Outbound traffic makes a fresh mapping.
	send(h, s.LocalAddr())
	if got := recv(t, s); got != m {
		t.Fatalf("new mapping %v, want the port kept: %v", got, m)
	}
}

func TestBlock(t *testing.T) {
	n := &Network{}
	a, b := listen(t, n, "192.0.2.1:1"), listen(t, n, "192.0.2.2:1")
	n.Block(a.LocalAddr().Addr(), b.LocalAddr().Addr())
	send(a, b.LocalAddr())
	if recv(t, b).IsValid() {
		t.Fatal("blocked datagram delivered")
	}
	n.Unblock(a.LocalAddr().Addr(), b.LocalAddr().Addr())
	send(a, b.LocalAddr())
	if !recv(t, b).IsValid() {
		t.Fatal("unblocked datagram lost")
	}
}
