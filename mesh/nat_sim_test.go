//go:build nat

package mesh_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/mesh/meshtest/natlab"
)

// simKind is one column of the pair matrix: no NAT or a NAT behaviour.
type simKind struct {
	name string
	cfg  *natlab.NATConfig // nil: a public host
	want mesh.NATType
}

var simKinds = []simKind{
	{"none", nil, mesh.NATOpen},
	{"full-cone", &natlab.FullCone, mesh.NATCone},
	{"addr-restricted", &natlab.AddressRestricted, mesh.NATCone},
	{"port-restricted", &natlab.PortRestricted, mesh.NATCone},
	{"symmetric", &natlab.Symmetric, mesh.NATSymmetric},
}

// simExpectDirect is the expected outcome of a punch: direct unless a
// symmetric NAT faces a port-restricted cone or another symmetric NAT.
// (The symmetric side's probes leave from a port nobody saw, which only a
// filter that ignores the port lets in.)
func simExpectDirect(a, b simKind) bool {
	hard := func(k simKind) bool { return k.name == "symmetric" }
	strict := func(k simKind) bool { return k.name == "symmetric" || k.name == "port-restricted" }
	return !(hard(a) && strict(b) || hard(b) && strict(a))
}

// simWorld is a natlab network with two STUN servers and a public relay
// that also coordinates introductions.
type simWorld struct {
	net   *natlab.Network
	relay *mesh.Mesh
	stun  []string
	hosts int
}

func newSimWorld(t *testing.T) *simWorld {
	w := &simWorld{net: &natlab.Network{}}
	for _, a := range []string{"192.0.2.1:3478", "192.0.2.2:3478"} {
		c, err := w.net.Listen(netip.MustParseAddrPort(a))
		if err != nil {
			t.Fatal(err)
		}
		done := natlab.ServeSTUN(c)
		t.Cleanup(func() { c.Close(); <-done })
		w.stun = append(w.stun, a)
	}
	w.relay = w.node(t, nil)
	return w
}

// simNATConfig shrinks the NAT timings for tests.
func simNATConfig(c *mesh.Config) {
	c.NAT.ReflexTimeout = time.Second
	c.NAT.PunchTimeout = 1500 * time.Millisecond
	c.NAT.ProbeInterval = 50 * time.Millisecond
	c.NAT.RetryAfter = -1
}

// node starts a mesh on the simulated network: public when cfg is nil,
// else behind a new NAT of that behaviour.
func (w *simWorld) node(t *testing.T, cfg *natlab.NATConfig, mod ...func(*mesh.Config)) *mesh.Mesh {
	w.hosts++
	n := w.hosts
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(n)}), 7000)
	if cfg != nil {
		w.net.AddNAT(netip.AddrFrom4([4]byte{198, 51, 100, byte(n)}), netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", n)), *cfg)
		addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(n), 0, 2}), 7000)
	}
	c, err := w.net.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	return newNode(t, append([]func(*mesh.Config){func(mc *mesh.Config) {
		mc.Conn = c
		mc.NAT.STUNServers = w.stun
		if w.relay != nil {
			mc.Relays = []mesh.Relay{{Addr: w.relay.ListenAddrs()[0], Pin: mesh.Pin{Key: w.relay.Identity().PublicKey()}}}
		}
		simNATConfig(mc)
	}}, mod...)...)
}

// relayedPeers brings up a and b with the relay and a session between them
// through it, and returns each side's view of the other and of the relay.
func (w *simWorld) relayedPeers(t *testing.T, a, b *mesh.Mesh) (ab, ba, ar *mesh.Peer) {
	t.Helper()
	for _, n := range []*mesh.Mesh{a, b} {
		eventually(t, 5*time.Second, "the relay session", func() bool {
			p := n.Peer(w.relay.ID())
			return p != nil && p.IsUp()
		})
	}
	ab, err := a.ConnectNode(ctxT(t), b.ID(), b.Identity().PublicKey())
	if err != nil {
		t.Fatalf("routed connect: %v", err)
	}
	eventually(t, 5*time.Second, "b to see a", func() bool { p := b.Peer(a.ID()); return p != nil && p.IsUp() })
	return ab, b.Peer(a.ID()), a.Peer(w.relay.ID())
}

// TestNATSimPairMatrix runs every pair of {none, full cone, address-
// restricted, port-restricted, symmetric} over the simulator: both nodes
// classify their NAT with two STUN servers, meet through a relay, and
// punch with the relay as coordinator. Each pair must end direct or
// relayed as the matrix says, and a relayed pair must say why and still
// deliver.
func TestNATSimPairMatrix(t *testing.T) {
	type result struct {
		a, b   string
		direct bool
	}
	results := make(chan result, len(simKinds)*len(simKinds))
	t.Run("pairs", func(t *testing.T) {
		for _, ka := range simKinds {
			for _, kb := range simKinds {
				t.Run(ka.name+"/"+kb.name, func(t *testing.T) {
					t.Parallel()
					w := newSimWorld(t)
					a, b := w.node(t, ka.cfg), w.node(t, kb.cfg)
					ab, ba, ar := w.relayedPeers(t, a, b)
					for _, n := range []struct {
						m    *mesh.Mesh
						want mesh.NATType
					}{{a, ka.want}, {b, kb.want}} {
						if got, err := n.m.ReclassifyNAT(ctxT(t)); err != nil || got != n.want {
							t.Fatalf("classified %v (%v), want %v", got, err, n.want)
						}
					}
					if ab.Stats().Path != "relayed" {
						t.Fatalf("path before the punch: %s", ab.Stats().Path)
					}
					err := a.ConnectDirect(ctxT(t), ab, ar)
					want := simExpectDirect(ka, kb)
					if want {
						if err != nil {
							t.Fatalf("punch failed: %v", err)
						}
						eventually(t, 3*time.Second, "b's path to go direct", func() bool { return ba.Stats().Path == "direct" })
					} else {
						var ne *mesh.NATError
						if !errors.As(err, &ne) || ne.Kind != mesh.NATErrPunchFailed {
							t.Fatalf("got %v, want a punch-failed NATError", err)
						}
						st := ab.Stats()
						if st.Path != "relayed" || !strings.Contains(st.PathReason, "punch failed") {
							t.Fatalf("a sees b as %s (%q), want relayed with the reason", st.Path, st.PathReason)
						}
						t.Logf("relayed: %s", st.PathReason)
					}
					exchange(t, a, ab, b, []byte("after the punch"))
					exchange(t, b, ba, a, []byte("and back"))
					ts := a.TraversalStats()
					if want && ts.PunchesSucceeded != 1 || !want && ts.RelayFallbacks == 0 {
						t.Fatalf("traversal stats %+v", ts)
					}
					results <- result{ka.name, kb.name, ab.Stats().Path == "direct"}
				})
			}
		}
	})
	close(results)
	table := map[[2]string]bool{}
	for r := range results {
		table[[2]string{r.a, r.b}] = r.direct
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-16s", "A \\ B")
	for _, k := range simKinds {
		fmt.Fprintf(&sb, "%-16s", k.name)
	}
	for _, ka := range simKinds {
		fmt.Fprintf(&sb, "\n%-16s", ka.name)
		for _, kb := range simKinds {
			cell := "?"
			if d, ok := table[[2]string{ka.name, kb.name}]; ok {
				cell = map[bool]string{true: "direct", false: "relayed"}[d]
			}
			fmt.Fprintf(&sb, "%-16s", cell)
		}
	}
	t.Logf("pair matrix:\n%s", sb.String())
}

// A direct path that stops answering falls back to the relay within a
// few seconds, and the engine punches again later on its own.
func TestNATSimFallbackAndRetry(t *testing.T) {
	w := newSimWorld(t)
	retry := func(c *mesh.Config) {
		c.NAT.RetryAfter = 300 * time.Millisecond
		c.DeadPeerTimeout = 600 * time.Millisecond
	}
	a := w.node(t, &natlab.PortRestricted, retry)
	b := w.node(t, &natlab.PortRestricted, retry)
	ab, _, ar := w.relayedPeers(t, a, b)
	if err := a.ConnectDirect(ctxT(t), ab, ar); err != nil {
		t.Fatal(err)
	}
	pa, pb := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")
	w.net.Block(pa, pb)
	eventually(t, 5*time.Second, "fallback to the relay", func() bool { return ab.Stats().Path == "relayed" })
	exchange(t, a, ab, b, []byte("relayed while the direct path is down"))
	w.net.Unblock(pa, pb)
	eventually(t, 10*time.Second, "the retry to punch again", func() bool {
		return ab.Stats().Path == "direct" && a.TraversalStats().PunchesSucceeded == 2
	})
	if ts := a.TraversalStats(); ts.RelayFallbacks == 0 {
		t.Fatalf("traversal stats %+v", ts)
	}
}

// Skipped and failed introductions keep the session relayed and say why.
func TestNATSimRendezvousErrors(t *testing.T) {
	w := newSimWorld(t)
	a, b := w.node(t, &natlab.Symmetric), w.node(t, &natlab.Symmetric)
	ab, _, ar := w.relayedPeers(t, a, b)
	for _, n := range []*mesh.Mesh{a, b} {
		if _, err := n.ReclassifyNAT(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	err := a.ConnectDirect(ctxT(t), ab, ar)
	var ne *mesh.NATError
	if !errors.As(err, &ne) || ne.Kind != mesh.NATErrPunchFailed || !strings.Contains(ne.Reason, "symmetric NAT on both sides") {
		t.Fatalf("symmetric pair: %v", err)
	}
	if st := ab.Stats(); st.Path != "relayed" || !strings.Contains(st.PathReason, "symmetric NAT on both sides") {
		t.Fatalf("path %s, reason %q", st.Path, st.PathReason)
	}
	if ts := a.TraversalStats(); ts.PunchesSkipped != 1 || ts.PunchesAttempted != 0 {
		t.Fatalf("traversal stats %+v", ts)
	}
	// The peer as its own coordinator: a sees it only through the relay.
	if err := a.ConnectDirect(ctxT(t), ab, ab); !errors.As(err, &ne) || ne.Kind != mesh.NATErrRendezvousNoRelay {
		t.Fatalf("relayed coordinator: %v", err)
	}
	// A coordinator with no session to the target answers so.
	d := w.node(t, nil)
	ad, err := a.Connect(ctxT(t), d.ListenAddrs()[0], mesh.Pin{Key: d.Identity().PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ConnectDirect(ctxT(t), ab, ad); !errors.As(err, &ne) || ne.Kind != mesh.NATErrRendezvousNoRelay {
		t.Fatalf("coordinator without a session to the target: %v", err)
	}
	if d.TraversalStats().Introductions != 0 {
		t.Fatal("d introduced a node it cannot reach")
	}
	// Peer reflex: the relay reports the address it sees a at.
	got, err := a.ProbeReflex(ctxT(t), ar)
	if err != nil || got.Addr() != netip.MustParseAddr("198.51.100.2") {
		t.Fatalf("ProbeReflex = %v, %v", got, err)
	}
	// An operator's override wins over the measured reflex until cleared.
	over := netip.MustParseAddrPort("203.0.113.9:7000")
	if err := a.SetReflexOverride(over); err != nil || a.ReflexAddr() != over || a.TraversalStats().Override != over {
		t.Fatalf("override: %v, reflex %v", err, a.ReflexAddr())
	}
	// The next announcement carries it, so other nodes learn where to
	// reach a.
	eventually(t, 5*time.Second, "the relay to see a's override in its announcement", func() bool {
		n, ok := w.relay.Capabilities().Index().Lookup(a.ID())
		return ok && n.Set.Metadata["reflex"] == over.String()
	})
	if err := a.ClearReflexOverride(); err != nil || a.ReflexAddr().Addr() != netip.MustParseAddr("198.51.100.2") {
		t.Fatalf("cleared override: %v, reflex %v", err, a.ReflexAddr())
	}
	if err := a.SetReflexOverride(netip.AddrPort{}); !errors.As(err, &ne) {
		t.Fatalf("invalid override: %v", err)
	}
	// b sees a only through the relay: no reflex to report.
	if _, err := a.ProbeReflex(ctxT(t), ab); !errors.As(err, &ne) || ne.Kind != mesh.NATErrPeerUnreachable {
		t.Fatalf("ProbeReflex through a relay: %v", err)
	}
}

// TestNATSimLogsReadableAsJSON classifies, meets and punches with JSON
// logs, and checks every value reads as it does in text (the NAT type as
// a word, not a number).
func TestNATSimLogsReadableAsJSON(t *testing.T) {
	lc := meshtest.NewLogCheck()
	logged := func(c *mesh.Config) { c.Logger = lc.Logger() }
	w := newSimWorld(t)
	a, b := w.node(t, &natlab.FullCone, logged), w.node(t, &natlab.FullCone, logged)
	ab, _, ar := w.relayedPeers(t, a, b)
	for _, n := range []*mesh.Mesh{a, b} {
		if _, err := n.ReclassifyNAT(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.ConnectDirect(ctxT(t), ab, ar); err != nil {
		t.Fatal(err)
	}
	typed := 0
	for _, rec := range lc.Check(t) {
		if rec["msg"] == "NAT classified" {
			if _, ok := rec["type"].(string); !ok {
				t.Errorf("NAT classified logs type %v, want a word", rec["type"])
			}
			typed++
		}
	}
	if typed == 0 {
		t.Fatal("no classification was logged")
	}
}
