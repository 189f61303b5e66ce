//go:build nat && portmap

package nat

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
	"go.uber.org/goleak"

	"github.com/netmesh/netmesh/internal/netlab"
)

// portMapWorld is a host behind an nftables masquerade router, optionally
// running Debian's miniupnpd, on netlab's public segment, which holds an
// RFC 5780 STUN server (coturn on two addresses) for miniupnpd's
// ext_perform_stun check.
type portMapWorld struct {
	pub, router, host *netlab.NS
	mini              *netlab.MiniUPnPd // nil without miniupnpd
	conn              *net.UDPConn      // the "mesh" socket on the host, 10.0.1.2:7001
}

const (
	pmHostAddr = "10.0.1.2:7001"
	pmWANAddr  = "198.51.100.11:7001" // the router's WAN address, same port
)

// newPortMapWorld builds the lab; with neither protocol no miniupnpd runs.
func newPortMapWorld(t *testing.T, natpmp, upnp bool) *portMapWorld {
	lab := netlab.New(t)
	w := &portMapWorld{pub: lab.Public()}
	w.router, w.host = lab.NATRouter(w.pub, 1, "")
	if natpmp || upnp {
		w.pub.AddAddr("br0", "198.51.100.2/24")
		w.pub.AddAddr("br0", "198.51.100.3/24")
		stun := w.pub.StartCoturnRFC5780("198.51.100.2", "198.51.100.3", 3478)
		w.mini = w.router.StartMiniUPnPd(netlab.MiniUPnPdConfig{NATPMP: natpmp, UPnP: upnp, STUN: stun.Addr, MinLifetime: 1})
	}
	w.conn = listenIn(t, w.host, pmHostAddr)
	return w
}

func listenIn(t *testing.T, ns *netlab.NS, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// unsolicited sends a packet from a fresh socket on the public segment to
// dst and reports whether the host's socket received it within wait.
func (w *portMapWorld) unsolicited(t *testing.T, dst string, wait time.Duration) bool {
	t.Helper()
	src := listenIn(t, w.pub, "198.51.100.1:0")
	defer src.Close()
	msg := []byte("unsolicited from " + src.LocalAddr().String())
	buf := make([]byte, 1500)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if _, err := src.WriteToUDPAddrPort(msg, netip.MustParseAddrPort(dst)); err != nil {
			t.Fatal(err)
		}
		w.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, _, err := w.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == string(msg) {
				return true
			}
		}
	}
	return false
}

// changes records OnChange calls.
type changes struct {
	mu  sync.Mutex
	got []netip.AddrPort
}

func (c *changes) add(a netip.AddrPort) { c.mu.Lock(); c.got = append(c.got, a); c.mu.Unlock() }
func (c *changes) list() []netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkMapper runs the whole life of a mapping against miniupnpd:
// installed with the external port equal to the internal one, reachable
// unsolicited from the public side, renewed past several leases, deleted
// on Close, and unreachable afterwards.
func checkMapper(t *testing.T, w *portMapWorld, wantProto string) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var ch changes
	const lease = 4 * time.Second
	pm := NewPortMapper(PortMapConfig{
		Port:     7001,
		Lifetime: lease,
		Timeout:  1500 * time.Millisecond,
		// A search that went out before the router listened, on a busy
		// machine, is asked again soon, not in the default 5 minutes.
		RetryInterval: time.Second,
		InNetNS:       w.host.Do,
		OnChange:      ch.add,
	})
	pm.Start()
	defer pm.Close()
	waitFor(t, 30*time.Second, "a mapping", func() bool { return pm.Mapped().IsValid() })
	st := pm.Status()
	missed := st.Failures // searches before the router answered
	if missed > 0 {
		t.Logf("%d attempts failed before the mapping (last: %v)", missed, st.Err)
	}
	if !strings.HasPrefix(st.Protocol, wantProto) {
		t.Fatalf("mapped with %q, want %s", st.Protocol, wantProto)
	}
	if got := st.External.String(); got != pmWANAddr {
		t.Fatalf("external address %s, want %s (the router's address, same port)", got, pmWANAddr)
	}
	if st.Lease != lease {
		t.Errorf("lease %v, want the %v asked for", st.Lease, lease)
	}
	if r := w.mini.Redirects(); !slices.Contains(r, "7001->"+pmHostAddr) {
		t.Fatalf("miniupnpd rules %v, want 7001->%s\n%s", r, pmHostAddr, w.mini.Rules())
	}
	t.Logf("%s mapping %s -> %s, lease %v", st.Protocol, st.External, pmHostAddr, st.Lease)
	if !w.unsolicited(t, pmWANAddr, 2*time.Second) {
		t.Fatalf("an unsolicited packet from the public side did not reach the host through the mapping\n%s", w.mini.Rules())
	}

	// Renewals at half the lease keep the mapping past several leases.
	time.Sleep(3 * lease)
	st = pm.Status()
	if st.Renewals < 4 || st.Failures != missed {
		t.Fatalf("after %v: %d renewals, %d failures (%v), want >= 4 and none since the mapping", 3*lease, st.Renewals, st.Failures-missed, st.Err)
	}
	if r := w.mini.Redirects(); !slices.Contains(r, "7001->"+pmHostAddr) {
		t.Fatalf("mapping gone after %v despite renewals: %v", 3*lease, r)
	}
	if !w.unsolicited(t, pmWANAddr, 2*time.Second) {
		t.Fatal("after renewals the mapping no longer forwards")
	}
	t.Logf("after %v: %d renewals", 3*lease, st.Renewals)

	pm.Close()
	st = pm.Status()
	if st.Removals != 1 || st.External.IsValid() {
		t.Fatalf("after Close: %d removals, external %v (%v)", st.Removals, st.External, st.Err)
	}
	if r := w.mini.Redirects(); len(r) != 0 {
		t.Fatalf("mapping leaked after Close: %v", r)
	}
	if w.unsolicited(t, pmWANAddr, 500*time.Millisecond) {
		t.Fatal("an unsolicited packet still reaches the host after Close")
	}
	want := []netip.AddrPort{netip.MustParseAddrPort(pmWANAddr), {}}
	if got := ch.list(); !slices.Equal(got, want) {
		t.Fatalf("OnChange saw %v, want %v", got, want)
	}
}

// TestPortMapNATPMPMiniUPnPd: with both protocols on offer, NAT-PMP is
// used.
func TestPortMapNATPMPMiniUPnPd(t *testing.T) {
	w := newPortMapWorld(t, true, true)
	checkMapper(t, w, "NAT-PMP")

	// Without renewals a lease lapses: so the mapping that outlived three
	// leases above did so because of the renewals.
	gw := &natPMP{cfg: PortMapConfig{Port: 7001, Timeout: time.Second, InNetNS: w.host.Do}.withDefaults(), gw: netip.MustParseAddr("10.0.1.1")}
	if err := gw.call(func(c *natpmp.Client) error {
		_, err := c.AddPortMapping("udp", 7001, 7001, 2)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if r := w.mini.Redirects(); !slices.Contains(r, "7001->"+pmHostAddr) {
		t.Fatalf("no mapping: %v", r)
	}
	waitFor(t, 20*time.Second, "a 2s lease to lapse", func() bool { return len(w.mini.Redirects()) == 0 })
}

// TestPortMapUPnPMiniUPnPd: with NAT-PMP off, the mapper falls back to
// UPnP-IGD found by SSDP on the LAN.
func TestPortMapUPnPMiniUPnPd(t *testing.T) {
	w := newPortMapWorld(t, false, true)
	checkMapper(t, w, "UPnP-IGD (WANIPConnection:")
}

// TestPortMapNeitherProtocol: a router with neither protocol leaves no
// mapping and a reason, and no error escapes.
func TestPortMapNeitherProtocol(t *testing.T) {
	w := newPortMapWorld(t, false, false)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var ch changes
	pm := NewPortMapper(PortMapConfig{Port: 7001, Timeout: 1200 * time.Millisecond, InNetNS: w.host.Do, OnChange: ch.add})
	pm.Start()
	defer pm.Close()
	waitFor(t, 30*time.Second, "the verdict", func() bool { return pm.Status().Reason != "" })
	st := pm.Status()
	if st.Reason != ReasonNoPortMapProtocol {
		t.Fatalf("reason %q, want %q", st.Reason, ReasonNoPortMapProtocol)
	}
	var pe *Error
	if !errors.As(st.Err, &pe) || pe.Kind != KindPortMapUnavailable {
		t.Fatalf("error %v, want kind %v", st.Err, KindPortMapUnavailable)
	}
	t.Logf("status: %s (%v)", st.Reason, st.Err)
	pm.Close()
	if got := ch.list(); len(got) != 0 {
		t.Fatalf("OnChange called with %v", got)
	}
}
