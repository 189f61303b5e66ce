package mesh_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
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
	a := newNode(t, func(c *mesh.Config) { c.Capabilities.MinAnnounceInterval = 2 * time.Second })
	b := newNode(t)
	connect(t, a, b, mesh.Pin{})
	time.Sleep(100 * time.Millisecond) // let the peer-up sync pass
	before := a.Capabilities().Stats().Broadcasts
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
	if sent := a.Capabilities().Stats().Broadcasts - before; sent > 1 {
		t.Fatalf("100 announcements in a second went out as %d broadcasts, want 1", sent)
	}
	eventually(t, 5*time.Second, "b to get the newest set", func() bool {
		nd, ok := b.Capabilities().Index().Lookup(a.ID())
		return ok && nd.Set.Metadata["n"] == string(rune('a'+99%26))
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
