//go:build nat

package mesh_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/internal/netlab"
	"github.com/netmesh/netmesh/mesh"
)

// kernelNATWorld is two private hosts, each behind its own nftables NAT
// router in masquerade mode, a public segment with Debian's coturn as
// STUN server and a public relay node that coordinates.
//
// A router that accepts stray packets to itself (netlab's default) turns
// the first probe that reaches it before its own host's probe left into a
// conntrack entry for (peer → router:port); the host's probe, leaving a
// moment later, then clashes with it and masquerade gives it a new port,
// which the peer's NAT filters out. Probes that cross within the one-way
// delay avoid it: on the Internet that is milliseconds, which the
// coordinator's simultaneous go signal gives; between namespaces on one
// host it is some 20 µs, less than goroutine wake-up jitter. So the cone
// tests use routers that drop unsolicited packets to themselves, as home
// routers do, and TestKernelNATConeAcceptingRouters reports what happens
// without that.
type kernelNATWorld struct {
	relay, a, b *mesh.Mesh
	routers     [2]*netlab.NS
}

// strayDropRules make a router drop new connections from the WAN to
// itself.
const strayDropRules = `table inet strays {
	chain input {
		type filter hook input priority filter;
		iifname "wan" meta l4proto udp ct state new drop
	}
}`

// newKernelNATWorld builds the lab with masquerade mode on both routers;
// dropStrays makes the routers drop unsolicited packets to themselves.
func newKernelNATWorld(t *testing.T, mode string, dropStrays bool) *kernelNATWorld {
	lab := netlab.New(t)
	pub := lab.Public()
	pub.AddAddr("br0", "198.51.100.2/24")
	stun := pub.StartCoturn("198.51.100.2", 3478)
	r1, h1 := lab.NATRouter(pub, 1, mode)
	r2, h2 := lab.NATRouter(pub, 2, mode)
	w := &kernelNATWorld{routers: [2]*netlab.NS{r1, r2}}
	if dropStrays {
		// Like most home routers: unsolicited packets from the WAN to the
		// router itself are dropped, so they never leave a conntrack entry.
		for _, r := range w.routers {
			r.Nft(strayDropRules)
		}
	}
	w.relay = newNode(t, func(c *mesh.Config) { c.Conn = pub.ListenUDP("198.51.100.1:7000") })
	relay := []mesh.Relay{{Addr: w.relay.ListenAddrs()[0], Pin: mesh.Pin{Key: w.relay.Identity().PublicKey()}}}
	host := func(ns *netlab.NS, addr string) *mesh.Mesh {
		return newNode(t, func(c *mesh.Config) {
			c.Conn = ns.ListenUDP(addr)
			c.Relays = relay
			c.NAT.STUNServers = []string{stun.Addr}
			c.NAT.RetryAfter = -1
		})
	}
	w.a, w.b = host(h1, "10.0.1.2:7001"), host(h2, "10.0.2.2:7002")
	for _, n := range []*mesh.Mesh{w.a, w.b} {
		eventually(t, 5*time.Second, "the relay session", func() bool {
			p := n.Peer(w.relay.ID())
			return p != nil && p.IsUp()
		})
	}
	return w
}

// TestKernelNATConeToCone: behind Linux's default masquerade (keeps the
// port, filters by address and port: a port-restricted cone) both hosts
// classify as cone and the routed session goes direct, well within 2 s of
// the first routed packet.
func TestKernelNATConeToCone(t *testing.T) {
	w := newKernelNATWorld(t, "", true)
	for _, n := range []*mesh.Mesh{w.a, w.b} {
		if got, err := n.ReclassifyNAT(ctxT(t)); err != nil || got != mesh.NATCone {
			t.Fatalf("classified %v (%v), want cone", got, err)
		}
	}
	if got := w.a.ReflexAddr().String(); got != "198.51.100.11:7001" {
		t.Fatalf("reflex %s, want the router's address with the port kept", got)
	}
	start := time.Now()
	ab, err := w.a.ConnectNode(ctxT(t), w.b.ID(), w.b.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if st := ab.Stats(); st.Path != "relayed" {
		t.Fatalf("path %s before the punch, want relayed", st.Path)
	}
	routed := time.Since(start)
	punchStart := time.Now()
	if err := w.a.ConnectDirect(ctxT(t), ab, w.a.Peer(w.relay.ID())); err != nil {
		t.Fatalf("punch: %v", err)
	}
	punch := time.Since(punchStart)
	ba := w.b.Peer(w.a.ID())
	eventually(t, 2*time.Second, "b's path to go direct", func() bool { return ba.Stats().Path == "direct" })
	total := time.Since(start)
	t.Logf("cone<->cone: routed session after %v, ConnectDirect %v, first routed packet to direct on both sides %v", routed, punch, total)
	if total > 2*time.Second {
		t.Errorf("time to direct %v, target under 2 s", total)
	}
	if got := ab.Endpoint().String(); got != "198.51.100.12:7002" {
		t.Errorf("a reaches b at %s, want b's router with b's port", got)
	}
	exchange(t, w.a, ab, w.b, []byte("direct through two kernel NATs"))
	exchange(t, w.b, ba, w.a, []byte("and back"))
}

// TestKernelNATSymmetricToSymmetric: masquerade fully-random gives a new
// port per destination; both hosts classify as symmetric, the pair matrix
// skips the punch, and the session stays relayed, says why and delivers.
func TestKernelNATSymmetricToSymmetric(t *testing.T) {
	w := newKernelNATWorld(t, "fully-random", false)
	for _, n := range []*mesh.Mesh{w.a, w.b} {
		if got, err := n.ReclassifyNAT(ctxT(t)); err != nil || got != mesh.NATSymmetric {
			t.Fatalf("classified %v (%v), want symmetric", got, err)
		}
	}
	ab, err := w.a.ConnectNode(ctxT(t), w.b.ID(), w.b.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	err = w.a.ConnectDirect(ctxT(t), ab, w.a.Peer(w.relay.ID()))
	var ne *mesh.NATError
	if !errors.As(err, &ne) || ne.Kind != mesh.NATErrPunchFailed {
		t.Fatalf("punch between symmetric NATs: %v", err)
	}
	st := ab.Stats()
	if st.Path != "relayed" || !strings.Contains(st.PathReason, "symmetric") {
		t.Fatalf("path %s (%q), want relayed because of the symmetric NATs", st.Path, st.PathReason)
	}
	exchange(t, w.a, ab, w.b, []byte("relayed between symmetric NATs"))
	exchange(t, w.b, w.b.Peer(w.a.ID()), w.a, []byte("and back"))
	t.Logf("symmetric<->symmetric: %s (%s)", st.Path, st.PathReason)
}

// TestKernelNATConeAcceptingRouters: with routers that accept stray
// packets to themselves, whether the punch wins depends on the probes
// crossing within the one-way delay (see kernelNATWorld). Either way the
// session must keep delivering, and a relayed one must say why.
func TestKernelNATConeAcceptingRouters(t *testing.T) {
	w := newKernelNATWorld(t, "", false)
	ab, err := w.a.ConnectNode(ctxT(t), w.b.ID(), w.b.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	err = w.a.ConnectDirect(ctxT(t), ab, w.a.Peer(w.relay.ID()))
	st := ab.Stats()
	if err != nil && (st.Path != "relayed" || !strings.Contains(st.PathReason, "punch failed")) {
		t.Fatalf("failed punch left path %s (%q)", st.Path, st.PathReason)
	}
	exchange(t, w.a, ab, w.b, []byte("whatever the path"))
	exchange(t, w.b, w.b.Peer(w.a.ID()), w.a, []byte("and back"))
	t.Logf("cone<->cone, routers accepting strays: path %s (%s)", st.Path, st.PathReason)
}

// reflexKey is the metadata key under which a node announces its reflex.
const reflexKey = "reflex"

// TestKernelNATReflexReachesAnnouncement: a reflex that STUN measures
// after the node's last explicit announcement reaches the other nodes'
// index: the mesh announces its own part again when the reflex changes.
func TestKernelNATReflexReachesAnnouncement(t *testing.T) {
	lab := netlab.New(t)
	pub := lab.Public()
	pub.AddAddr("br0", "198.51.100.2/24")
	stun := pub.StartCoturn("198.51.100.2", 3478)
	router, host := lab.NATRouter(pub, 1, "")
	// STUN is out of reach at first, so the node announces without a reflex.
	router.Nft(`table inet blockstun {
	chain forward {
		type filter hook forward priority filter;
		ip daddr 198.51.100.2 udp dport 3478 drop
	}
}`)
	relay := newNode(t, fastCaps, func(c *mesh.Config) { c.Conn = pub.ListenUDP("198.51.100.1:7000") })
	a := newNode(t, fastCaps, func(c *mesh.Config) {
		c.Conn = host.ListenUDP("10.0.1.2:7001")
		c.NAT.STUNServers = []string{stun.Addr}
		c.NAT.ReflexTimeout = 500 * time.Millisecond
	})
	if err := a.AnnounceCapabilities(capability.Set{Tags: []string{"behind-nat"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Connect(ctxT(t), relay.ListenAddrs()[0], mesh.Pin{Key: relay.Identity().PublicKey()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the relay to index a", func() bool { _, ok := relay.Capabilities().Index().Lookup(a.ID()); return ok })
	if n, _ := relay.Capabilities().Index().Lookup(a.ID()); n.Set.Metadata[reflexKey] != "" {
		t.Fatalf("a knew its reflex (%s) with STUN blocked", n.Set.Metadata[reflexKey])
	}
	router.Nft("delete table inet blockstun")
	if _, err := a.ReclassifyNAT(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	want := a.ReflexAddr().String()
	if want != "198.51.100.11:7001" {
		t.Fatalf("reflex %s, want the router's address with the port kept", want)
	}
	eventually(t, 10*time.Second, "the relay to learn a's reflex", func() bool {
		n, ok := relay.Capabilities().Index().Lookup(a.ID())
		return ok && n.Set.Metadata[reflexKey] == want
	})
	if n, _ := relay.Capabilities().Index().Lookup(a.ID()); !slices.Contains(n.Set.Tags, "behind-nat") {
		t.Fatalf("the application's tags were lost: %v", n.Set.Tags)
	}
}

// TestKernelNATPortMappingAfterFailedPunch: a punch between a
// port-restricted cone and a symmetric NAT fails; when a port mapping
// then makes the cone side reachable (here a forward on its router and
// the mapped address as the override, which is what the port mapper
// installs; the cone keeps the port, so the address is the one it had),
// the pair punches again at once instead of after the 30 s backoff, and
// goes direct: whichever side asked for the failed punch.
func TestKernelNATPortMappingAfterFailedPunch(t *testing.T) {
	for _, mappedAsked := range []bool{true, false} {
		name := "the mapped node asked"
		if !mappedAsked {
			name = "the peer asked"
		}
		t.Run(name, func(t *testing.T) { testPortMappingAfterFailedPunch(t, mappedAsked) })
	}
}

func testPortMappingAfterFailedPunch(t *testing.T, mappedAsked bool) {
	lab := netlab.New(t)
	pub := lab.Public()
	pub.AddAddr("br0", "198.51.100.2/24")
	stun := pub.StartCoturn("198.51.100.2", 3478)
	r1, h1 := lab.NATRouter(pub, 1, "")
	r2, h2 := lab.NATRouter(pub, 2, "fully-random")
	for _, r := range []*netlab.NS{r1, r2} {
		r.Nft(strayDropRules)
	}
	relay := newNode(t, func(c *mesh.Config) { c.Conn = pub.ListenUDP("198.51.100.1:7000") })
	relays := []mesh.Relay{{Addr: relay.ListenAddrs()[0], Pin: mesh.Pin{Key: relay.Identity().PublicKey()}}}
	host := func(ns *netlab.NS, addr string) *mesh.Mesh {
		return newNode(t, func(c *mesh.Config) {
			c.Conn = ns.ListenUDP(addr)
			c.Relays = relays
			c.NAT.STUNServers = []string{stun.Addr}
		})
	}
	a, b := host(h1, "10.0.1.2:7001"), host(h2, "10.0.2.2:7002") // a is the one mapped
	for _, n := range []*mesh.Mesh{a, b} {
		eventually(t, 5*time.Second, "the relay session", func() bool { p := n.Peer(relay.ID()); return p != nil && p.IsUp() })
		if _, err := n.ReclassifyNAT(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	asker, target := a, b
	if !mappedAsked {
		asker, target = b, a
	}
	p, err := asker.ConnectNode(ctxT(t), target.ID(), target.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := asker.ConnectDirect(ctxT(t), p, asker.Peer(relay.ID())); err == nil {
		t.Fatal("a punch between a port-restricted cone and a symmetric NAT worked")
	}
	// The mapping: a's router forwards its port 7001 to a, and a
	// advertises it.
	r1.Nft(`table ip portmap {
	chain prerouting {
		type nat hook prerouting priority dstnat;
		iifname "wan" udp dport 7001 dnat to 10.0.1.2:7001
	}
}`)
	if err := a.SetReflexOverride(netip.MustParseAddrPort("198.51.100.11:7001")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 10*time.Second, "the pair to go direct (the retry would wait 30 s)", func() bool {
		ab, ba := a.Peer(b.ID()), b.Peer(a.ID())
		return ab != nil && ba != nil && ab.Stats().Path == "direct" && ba.Stats().Path == "direct"
	})
	t.Logf("direct %v after the mapping", time.Since(start).Round(time.Millisecond))
	exchange(t, a, a.Peer(b.ID()), b, []byte("direct through the mapping"))
}
