package mesh_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// The scale target of issue 20 at a size the suite can afford (the full
// 1,000 nodes are bench.BenchmarkScale): nodes in one process, each
// linking to 8 random others, all announce a tag and a metadata key at
// once, and every node's index comes to hold every node, most of them
// learned over more than one hop.
func TestCapabilityGossipAtScale(t *testing.T) {
	nodes, links := 48, 8
	if mesh.RaceEnabled {
		// The race detector slows every message several times over, and
		// a round's messages grow with nodes × links.
		nodes, links = 32, 4
	}
	// The protocol's default timers: many nodes in one process on a busy
	// machine cannot afford the suite's fast ones (a keepalive per peer
	// every 200 ms, dead peers after 600 ms), and nothing here waits on
	// them.
	ms := make([]*mesh.Mesh, nodes)
	for i := range ms {
		ms[i] = testnode.Start(t)
	}
	graph := testnode.RandomGraph(rand.New(rand.NewPCG(20, 1000)), nodes, links)
	testnode.ConnectGraph(t, ms, graph)

	for i, m := range ms {
		s := capability.Set{Tags: []string{"scale"}, Metadata: map[string]string{"rank": fmt.Sprint(i)}}
		if err := m.AnnounceCapabilities(s); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	// One flood of 48 small announcements takes seconds at most, even
	// under -race on a busy machine; a copy lost on the way comes again
	// with its origin's refresh, TTL/3 after the announcement. Stalled for
	// longer than that means lost for good.
	done := testnode.WaitIndexes(t, ms, nodes, capability.DefaultTTL/3+15*time.Second)
	t.Logf("%d nodes, %d links: every index complete %v after the last announcement", nodes, len(graph), done.Sub(start).Round(time.Millisecond))

	// What was learned is what was announced, and the graph made the
	// gossip travel: a node that only heard its neighbours would have
	// stalled above, and most pairs are not neighbours.
	far := 0
	for i, m := range ms {
		for j, o := range ms {
			got := m.FindNodes(capability.AllOf(capability.HasTag("scale"), capability.Equals("rank", fmt.Sprint(j))))
			if len(got) != 1 || got[0].ID != o.ID() {
				t.Fatalf("node %d finds %d nodes of rank %d, want node %s", i, len(got), j, o.ID().Short())
			}
			if got[0].Hops > 1 {
				far++
			}
		}
	}
	if far == 0 {
		t.Fatal("every node learned every other from a neighbour: the graph does not test forwarding")
	}
	t.Logf("%d of %d index entries learned over more than one hop", far, nodes*(nodes-1))
}
