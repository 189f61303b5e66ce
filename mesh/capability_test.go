package mesh_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
)

// fastCaps shortens capability timing for tests: TTL 3 s (the minimum),
// announcements at most once per second.
func fastCaps(c *mesh.Config) {
	c.Capabilities.TTL = 3 * time.Second
	c.Capabilities.MinAnnounceInterval = time.Second
}

func TestCapabilityDiscoveryAndRoutes(t *testing.T) {
	// a — b — c in a line: a and c cannot reach each other. c announces a
	// GPU; a finds it through b, learns the route, and connects to c by
	// NodeID alone.
	a, fa := faultNode(t, 1, fastCaps)
	b, _ := faultNode(t, 2, fastCaps)
	c, fc := faultNode(t, 3, fastCaps)
	fa.Block(c.Addr())
	fc.Block(a.Addr())
	connect(t, a, b, mesh.Pin{})
	connect(t, c, b, mesh.Pin{})
	if err := c.AnnounceCapabilities(capability.Set{Tags: []string{"gpu", "cuda"}, Metadata: map[string]string{"gpu_mem_gb": "48"}}); err != nil {
		t.Fatal(err)
	}
	f, err := capability.ParseFilter("gpu && gpu_mem_gb>=24")
	if err != nil {
		t.Fatal(err)
	}
	var found []*capability.Node
	eventually(t, 5*time.Second, "a to discover c's GPU", func() bool {
		found = a.FindNodes(f)
		return len(found) == 1
	})
	if found[0].ID != c.ID() || found[0].Hops != 2 || found[0].Via != b.ID() {
		t.Fatalf("found %+v, want c at 2 hops via b", found[0])
	}
	p, err := a.ConnectNode(ctxT(t), c.ID(), nil)
	if err != nil {
		t.Fatalf("connect to the discovered node: %v", err)
	}
	if st := p.Stats(); st.Path != "relayed" || st.Via != b.ID() {
		t.Fatalf("path to c: %s via %s, want relayed via b", st.Path, st.Via)
	}
	exchange(t, a, p, c, []byte("job for the GPU"))
}

func TestCapabilityConvergence50(t *testing.T) {
	if testing.Short() {
		t.Skip("50 nodes")
	}
	const n = 50
	nodes := make([]*mesh.Mesh, n)
	for i := range nodes {
		nodes[i] = newNode(t, fastCaps, func(c *mesh.Config) { c.KeepaliveInterval = 2 * time.Second })
	}
	// A random connected sparse graph: a ring plus random chords, degree
	// about 4.
	r := rand.New(rand.NewPCG(1, 2))
	edges := map[[2]int]bool{}
	add := func(i, j int) {
		if i == j || edges[[2]int{i, j}] || edges[[2]int{j, i}] {
			return
		}
		edges[[2]int{i, j}] = true
		connect(t, nodes[i], nodes[j], mesh.Pin{})
	}
	for i := range n {
		add(i, (i+1)%n)
	}
	for range n {
		add(r.IntN(n), r.IntN(n))
	}
	origin := nodes[0]
	if err := origin.AnnounceCapabilities(capability.Set{Tags: []string{"skill:summarize"}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f := capability.HasTag("skill:summarize")
	eventually(t, 20*time.Second, "every node to see the announcement", func() bool {
		for _, m := range nodes {
			if len(m.FindNodes(f)) != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("50 nodes, %d links: converged in %v", len(edges), time.Since(start).Round(time.Millisecond))

	// The origin leaves: everyone sees it Offline once its TTL passes.
	origin.Close()
	eventually(t, 10*time.Second, "everyone to see the origin offline", func() bool {
		for _, m := range nodes[1:] {
			if nd, ok := m.Capabilities().Index().Lookup(origin.ID()); ok && nd.Status != capability.StatusOffline {
				return false
			}
		}
		return true
	})
}

func TestAnnounceRateLimitOverMesh(t *testing.T) {
	const interval = 2 * time.Second
	a := newNode(t, func(c *mesh.Config) { c.Capabilities.MinAnnounceInterval = interval })
	b := newNode(t)
	connect(t, a, b, mesh.Pin{})
	time.Sleep(100 * time.Millisecond) // let the peer-up sync pass
	before := a.Capabilities().Stats().Broadcasts
	start := time.Now()
	for i := range 100 {
		set := capability.Set{Tags: []string{"worker"}, Metadata: map[string]string{"n": string(rune('a' + i%26))}}
		if err := a.AnnounceCapabilities(set); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The local index always shows the newest set.
	self, _ := a.Capabilities().Index().Lookup(a.ID())
	if self.Set.Metadata["n"] != string(rune('a'+99%26)) {
		t.Fatalf("local index shows %v, want the newest set", self.Set.Metadata)
	}
	// One broadcast at once, then at most one per interval: on a busy
	// machine the loop may take longer than the interval.
	sent := a.Capabilities().Stats().Broadcasts - before
	took := time.Since(start)
	if limit := 1 + uint64(took/interval); sent > limit {
		t.Fatalf("100 announcements in %v went out as %d broadcasts, want at most %d", took.Round(time.Millisecond), sent, limit)
	}
	eventually(t, 5*time.Second, "b to get the newest set", func() bool {
		nd, ok := b.Capabilities().Index().Lookup(a.ID())
		return ok && nd.Set.Metadata["n"] == string(rune('a'+99%26))
	})
}

// What a layer announces survives the application's announcements, and
// the other nodes see both.
func TestLayerCapabilitiesSurviveAnnounce(t *testing.T) {
	a, b := newNode(t, fastCaps), newNode(t, fastCaps)
	connect(t, a, b, mesh.Pin{})
	if err := a.AnnounceLayerCapabilities("rpc", capability.Set{Tags: []string{"rpc:echo"}}); err != nil {
		t.Fatal(err)
	}
	if err := a.AnnounceCapabilities(capability.Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b to see a's set and the rpc layer's", func() bool {
		n, ok := b.Capabilities().Index().Lookup(a.ID())
		return ok && n.Set.HasTag("gpu") && n.Set.HasTag("rpc:echo")
	})
}

func TestUpdateCapabilities(t *testing.T) {
	a := newNode(t)
	if err := a.AnnounceCapabilities(capability.Set{Tags: []string{"gpu"}, Metadata: map[string]string{"zone": "a"}}); err != nil {
		t.Fatal(err)
	}
	err := a.UpdateCapabilities(func(s capability.Set) capability.Set {
		s.Tags = append(s.Tags, "rpc:echo")
		return s
	})
	if err != nil {
		t.Fatal(err)
	}
	self, _ := a.Capabilities().Index().Lookup(a.ID())
	if !self.Set.HasTag("gpu") || !self.Set.HasTag("rpc:echo") || self.Set.Metadata["zone"] != "a" {
		t.Fatalf("after update: %+v", self.Set)
	}
}

// The origin flood of issue 24 through real nodes on loopback: an
// authenticated peer that makes up identities and announces them gets no
// more of them into its neighbour's index than that neighbour's budget
// for it allows, and the honest node behind the neighbour gets no more
// than that either.
func TestCapabilityOriginFloodOverMesh(t *testing.T) {
	if testing.Short() || mesh.RaceEnabled {
		t.Skip("signs thousands of announcements: too slow with -short or -race")
	}
	const fakes, burst, rate = 3000, 100, 10
	budget := func(c *mesh.Config) {
		c.Capabilities.OriginBurst = burst
		c.Capabilities.OriginRate = rate
	}
	attacker := newNode(t, func(c *mesh.Config) {
		// The attacker's own engine hands on whatever it is given.
		c.Capabilities.MaxOriginsPerPeer = fakes
		c.Capabilities.OriginBurst = fakes
	})
	victim := newNode(t, budget)
	honest := newNode(t, budget)
	connect(t, attacker, victim, mesh.Pin{})
	connect(t, victim, honest, mesh.Pin{})
	if err := honest.AnnounceCapabilities(capability.Set{Tags: []string{"honest"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the victim to learn the honest node", func() bool {
		return len(victim.FindNodes(capability.HasTag("honest"))) == 1
	})

	start := time.Now()
	ghost := identity.NodeID{0xee} // the made-up neighbour the fakes "come from"
	for range fakes {
		id, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		a := capability.Announcement{Version: 1, TTL: capability.DefaultTTL, Set: capability.Set{Tags: []string{"fake"}}, Hops: 1, Remaining: capability.DefaultTTL}
		if err := a.Sign(id); err != nil {
			t.Fatal(err)
		}
		msg, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := attacker.Capabilities().HandleMessage(ghost, msg); err != nil {
			t.Fatal(err)
		}
	}
	// Everything the attacker got out reaches the victim, and every fake
	// the victim accepted reaches the honest node (reliable streams).
	fake := capability.HasTag("fake")
	eventually(t, 30*time.Second, "the flood to arrive", func() bool {
		return victim.Capabilities().Stats().Received >= attacker.Capabilities().Stats().MessagesSent &&
			honest.Capabilities().Stats().Received >= uint64(len(victim.FindNodes(fake)))
	})
	// Budgets only grow with time, so this bound holds however slow the
	// machine was.
	bound := burst + int(rate*time.Since(start).Seconds()) + 1
	vs := victim.Capabilities().Stats()
	t.Logf("attacker sent %d; victim: %d fakes indexed, %d refused; honest node: %d fakes; bound %d",
		attacker.Capabilities().Stats().MessagesSent, len(victim.FindNodes(fake)), vs.RejectedOriginRate, len(honest.FindNodes(fake)), bound)
	if vs.RejectedOriginRate == 0 {
		t.Fatal("the victim refused nothing: the flood did not exceed the budget")
	}
	if n := len(victim.FindNodes(fake)); n > bound {
		t.Errorf("victim indexed %d fakes, want at most %d", n, bound)
	}
	if n := len(honest.FindNodes(fake)); n > bound {
		t.Errorf("honest node two hops from the attacker indexed %d fakes, want at most %d", n, bound)
	}
}

// A node that withdraws its announcement is dropped by every node at once,
// as having left, not after its TTL as having gone offline.
func TestWithdrawCapabilities(t *testing.T) {
	a, b, c := newNode(t), newNode(t), newNode(t)
	connect(t, a, b, mesh.Pin{})
	connect(t, b, c, mesh.Pin{})
	if err := c.AnnounceCapabilities(capability.Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a to learn c", func() bool { return len(a.FindNodes(capability.HasTag("gpu"))) == 1 })
	sub := a.SubscribeNodes(0)
	defer sub.Close()
	c.WithdrawCapabilities()
	select {
	case ev := <-sub.C:
		if ev.Kind != capability.NodeLeft || ev.Node.ID != c.ID() {
			t.Fatalf("event %v about %s, want left about c", ev.Kind, ev.Node.ID.Short())
		}
	case <-time.After(5 * time.Second): // the default TTL is 90 s
		t.Fatal("a did not hear that c left")
	}
	if len(a.FindNodes(capability.HasTag("gpu"))) != 0 || a.Capabilities().Health().Left != 1 {
		t.Fatalf("a still lists c, or does not count it as left: %+v", a.Capabilities().Health())
	}
}

// A node's name reaches the other nodes, which find it by name.
func TestNodeNames(t *testing.T) {
	named := func(name string) func(*mesh.Config) {
		return func(c *mesh.Config) { c.Capabilities.Name = name }
	}
	a, b := newNode(t, named("alpha-1")), newNode(t)
	connect(t, a, b, mesh.Pin{})
	if err := a.AnnounceCapabilities(capability.Set{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b to find a by name", func() bool {
		nodes := b.LookupName("ALPHA-1")
		return len(nodes) == 1 && nodes[0].ID == a.ID() && nodes[0].Name() == "alpha-1"
	})
	if _, err := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0", Capabilities: capability.Config{Name: "no spaces"}}); err == nil {
		t.Error("a node with an invalid name started")
	}
}
