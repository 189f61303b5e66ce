package meshtest_test

import (
	"net/netip"
	"testing"

	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/mesh/udp"
)

// TestMemNetRoute checks that Route rewrites the source and the receiver,
// that a zero receiver drops, and that Dropped counts every loss.
func TestMemNetRoute(t *testing.T) {
	var (
		virtual = netip.MustParseAddrPort("192.0.2.1:1")    // routed to b
		refused = netip.MustParseAddrPort("192.0.2.2:1")    // Route drops it
		nowhere = netip.MustParseAddrPort("192.0.2.3:1")    // nobody listens
		seenAs  = netip.MustParseAddrPort("198.51.100.1:9") // a's rewritten source
	)
	var b netip.AddrPort
	n := &meshtest.MemNet{QueueLen: 1, Route: func(src, dst netip.AddrPort) (from, to netip.AddrPort) {
		switch dst {
		case virtual:
			return seenAs, b
		case refused:
			return src, netip.AddrPort{}
		}
		return src, dst
	}}
	a, err := n.Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bc, err := n.Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	b = bc.LocalAddr()

	out := []udp.Message{
		{Buf: []byte("in"), Addr: virtual},
		{Buf: []byte("overflow"), Addr: virtual},
		{Buf: []byte("refused"), Addr: refused},
		{Buf: []byte("nowhere"), Addr: nowhere},
	}
	if k, err := a.WriteBatch(out); err != nil || k != len(out) {
		t.Fatalf("WriteBatch = %d, %v", k, err)
	}
	if d := n.Dropped(); d != 3 {
		t.Fatalf("Dropped = %d, want 3 (overflow, refused, nowhere)", d)
	}
	msgs := make([]udp.Message, 4)
	if k, err := bc.ReadBatch(msgs); err != nil || k != 1 || string(msgs[0].Buf) != "in" || msgs[0].Addr != seenAs {
		t.Fatalf("ReadBatch = %d, %v, first %q from %v; want \"in\" from %v", k, err, msgs[0].Buf, msgs[0].Addr, seenAs)
	}
}
