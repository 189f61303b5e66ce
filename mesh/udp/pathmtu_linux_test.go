package udp_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/netmesh/netmesh/mesh/udp"
)

// PathMTU reports the loopback interface's MTU for loopback addresses, as
// /sys/class/net/lo/mtu states it (at most 65535, the largest IPv4
// packet, for IPv4), refuses addresses it cannot route, and fails once the
// socket is closed.
func TestPathMTULoopback(t *testing.T) {
	b, err := os.ReadFile("/sys/class/net/lo/mtu")
	if err != nil {
		t.Skipf("no loopback MTU to compare with: %v", err)
	}
	lo, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		network, local, peer string
		want                 int
	}{
		{"udp4", "127.0.0.1:0", "127.0.0.1:9", min(lo, 65535)},
		{"udp6", "[::1]:0", "[::1]:9", lo},
		{"udp6", "[::]:0", "[::ffff:127.0.0.1]:9", min(lo, 65535)},
	} {
		c, err := udp.Listen(tc.network, netip.MustParseAddrPort(tc.local))
		if err != nil {
			t.Logf("%s %s: %v (no such loopback here)", tc.network, tc.local, err)
			continue
		}
		got, err := c.PathMTU(netip.MustParseAddrPort(tc.peer))
		if err != nil || got != tc.want {
			t.Errorf("%s to %s: MTU %d, %v; want %d", tc.network, tc.peer, got, err, tc.want)
		}
		if _, err := c.PathMTU(netip.AddrPort{}); !errors.Is(err, udp.ErrBadAddr) {
			t.Errorf("%s: the zero address: %v, want ErrBadAddr", tc.network, err)
		}
		c.Close()
		if _, err := c.PathMTU(netip.MustParseAddrPort(tc.peer)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", tc.network, err)
		}
	}
	c, err := udp.Listen("udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PathMTU(netip.MustParseAddrPort("[::1]:9")); !errors.Is(err, udp.ErrBadAddr) {
		t.Errorf("IPv6 peer from an IPv4 socket: %v, want ErrBadAddr", err)
	}
}
