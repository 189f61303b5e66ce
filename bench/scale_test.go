package bench

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// scaleLinks is how many random others each node of BenchmarkScale links
// to (issue 20): its degree is twice that on average, counting the links
// others made to it.
const scaleLinks = 8

// scaleTTL is the announcements' TTL in BenchmarkScale: long enough that
// no refresh (every TTL/3) falls into a run, so a round of announcements
// is measured alone, whatever the machine's speed. At the default TTL a
// mesh of 1,000 nodes refreshes a round every 30 s, which needs more than
// the two cores this machine has when all of it runs in one process (see
// docs/PERFORMANCE.md).
const scaleTTL = time.Hour

// scaleStall ends BenchmarkScale's wait when no index grew for this long:
// what is missing then was lost, not slow, and comes again only with its
// origin's next refresh.
const scaleStall = time.Minute

// BenchmarkScale is the scale target of issue 20: nodes in one process on
// loopback, each linked to scaleLinks random others, with the protocol's
// default timers and capability settings but for a longer TTL
// (scaleTTL). Once every session is up, every node announces a tag and a
// metadata key, and the benchmark waits until every node's index holds
// every node. It reports
//
//   - setup-s: starting the nodes and bringing every session up;
//   - converge99-s and converge-s: from the last announcement until the
//     indexes held 99 % of all entries, and all of them (not reported if
//     they never did: the wait ends when no index grew for scaleStall);
//   - complete-%: the share of all entries held when the wait ended;
//   - round-B/node, round-wire-B/node and round-cpu-ms/node: capability
//     bytes each node sent, all bytes it sent on its sessions, and the
//     process CPU per node, over that round of announcements;
//   - gossip-B/node/s: round-B/node spread over the default refresh
//     period (capability.DefaultTTL/3), when every node announces again:
//     what the gossip costs a node in the steady state;
//   - heap-B/node and goroutines/node once converged (sessions, stream
//     muxes and the index each);
//   - idle-wire-B/node/s and idle-cpu-%/node: bytes sent on the sessions
//     (keepalives, acknowledgements, AEAD overhead) and CPU as a share of
//     one core in the next capability.DefaultMinAnnounceInterval, with no
//     announcement under way;
//   - lost-msgs and refused-msgs, at the end of that window: capability
//     messages the senders' streams accepted that no receiver's engine
//     got (sent minus received, over all nodes), and messages the
//     streams refused (a full send window: dropped, counted);
//   - sessions-down: session ends (two per link) not up at that point;
//   - change-s: then one node changes its set, and this is how long the
//     change takes to reach every index.
//
// The suite runs a smaller size, also under -race:
// TestCapabilityGossipAtScale in package mesh.
func BenchmarkScale(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			for b.Loop() {
				scaleRound(b, n)
			}
		})
	}
}

// scaleRound builds one mesh of n nodes, measures it and closes it.
func scaleRound(b *testing.B, n int) {
	base := heapInUse()
	setup := time.Now()
	nodes := make([]*mesh.Mesh, n)
	for i := range nodes {
		nodes[i] = testnode.Start(b, func(c *mesh.Config) { c.Capabilities.TTL = scaleTTL })
	}
	defer func() {
		for _, m := range nodes {
			m.Close()
		}
	}()
	links := testnode.RandomGraph(rand.New(rand.NewPCG(20, uint64(n))), n, scaleLinks)
	testnode.ConnectGraph(b, nodes, links)
	b.ReportMetric(time.Since(setup).Seconds(), "setup-s")

	capBytes := func() (sum uint64) {
		for _, m := range nodes {
			sum += m.Capabilities().Stats().BytesSent
		}
		return sum
	}
	wireBytes := func() (sum uint64) {
		for _, m := range nodes {
			for _, p := range m.Stats().Peers {
				sum += p.TxBytes
			}
		}
		return sum
	}

	cpu0, caps0, wire0 := cpuTime(), capBytes(), wireBytes()
	for i, m := range nodes {
		s := capability.Set{Tags: []string{"scale"}, Metadata: map[string]string{"rank": fmt.Sprint(i)}}
		if err := m.AnnounceCapabilities(s); err != nil {
			b.Fatal(err)
		}
	}
	last := time.Now()
	held, t99, t100 := waitRound(nodes, n)
	cpu1, caps1, wire1 := cpuTime(), capBytes(), wireBytes()
	b.ReportMetric(100*float64(held)/float64(n*n), "complete-%")
	if !t99.IsZero() {
		b.ReportMetric(t99.Sub(last).Seconds(), "converge99-s")
	}
	if held == n*n {
		b.ReportMetric(t100.Sub(last).Seconds(), "converge-s")
	}
	b.ReportMetric(float64(caps1-caps0)/float64(n), "round-B/node")
	if wire1 >= wire0 { // else sessions went down, and their counts with them
		b.ReportMetric(float64(wire1-wire0)/float64(n), "round-wire-B/node")
	}
	b.ReportMetric(float64((cpu1-cpu0).Milliseconds())/float64(n), "round-cpu-ms/node")
	b.ReportMetric(float64(heapInUse()-base)/float64(n), "heap-B/node")
	b.ReportMetric(float64(runtime.NumGoroutine())/float64(n), "goroutines/node")

	// Between refreshes: keepalives, acknowledgements and timers only.
	// The refreshes themselves cost a round every DefaultTTL/3.
	b.ReportMetric(float64(caps1-caps0)/float64(n)/(capability.DefaultTTL/3).Seconds(), "gossip-B/node/s")
	window := capability.DefaultMinAnnounceInterval
	cpu0, wire0 = cpuTime(), wireBytes()
	time.Sleep(window)
	cpu1, wire1 = cpuTime(), wireBytes()
	perNodeSec := float64(n) * window.Seconds()
	if wire1 >= wire0 { // else sessions went down, and their counts with them
		b.ReportMetric(float64(wire1-wire0)/perNodeSec, "idle-wire-B/node/s")
	}
	b.ReportMetric(100*(cpu1-cpu0).Seconds()/perNodeSec, "idle-cpu-%/node")

	// Every copy has arrived by now, or never will.
	var sent, received, refused uint64
	for _, m := range nodes {
		st := m.Capabilities().Stats()
		sent, received = sent+st.MessagesSent, received+st.Received
		refused += st.SendErrors
	}
	b.ReportMetric(float64(sent-received), "lost-msgs")
	b.ReportMetric(float64(refused), "refused-msgs")
	up := 0
	for _, m := range nodes {
		for _, p := range m.Peers() {
			if p.IsUp() {
				up++
			}
		}
	}
	b.ReportMetric(float64(2*len(links)-up), "sessions-down")
	// One node changes its set in the settled mesh (its last broadcast is
	// more than the rate limit's interval old, so it goes out at once).
	if err := nodes[0].AnnounceCapabilities(capability.Set{Tags: []string{"scale", "changed"}}); err != nil {
		b.Fatal(err)
	}
	last = time.Now()
	changed := capability.HasTag("changed")
	pending := append([]*mesh.Mesh(nil), nodes...)
	for len(pending) > 0 {
		if time.Since(last) > scaleStall {
			b.Logf("%d nodes did not learn one node's change in %v", len(pending), scaleStall)
			return
		}
		rest := pending[:0]
		for _, m := range pending {
			if len(m.FindNodes(changed)) == 0 {
				rest = append(rest, m)
			}
		}
		pending = rest
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(time.Since(last).Seconds(), "change-s")
}

// waitRound waits until every node's index holds all n nodes or no index
// grew for scaleStall. It returns the entries held (n*n when complete) and
// when 99 % and all of them were held.
func waitRound(nodes []*mesh.Mesh, n int) (held int, t99, t100 time.Time) {
	lastGain := time.Now()
	for {
		sum := 0
		for _, m := range nodes {
			sum += min(m.Capabilities().Index().Len(), n)
		}
		now := time.Now()
		if sum > held {
			held, lastGain = sum, now
		}
		if t99.IsZero() && 100*held >= 99*n*n {
			t99 = now
		}
		if held == n*n {
			return held, t99, now
		}
		if now.Sub(lastGain) > scaleStall {
			return held, t99, time.Time{}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
