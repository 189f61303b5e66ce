package placement

import (
	"fmt"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// dir is an in-memory Directory.
type dir []*capability.Node

func (d dir) FindNodes(f capability.Filter) []*capability.Node {
	var out []*capability.Node
	for _, n := range d {
		if f.Match(*n) {
			out = append(out, n)
		}
	}
	return out
}

func id(i int) identity.NodeID {
	var n identity.NodeID
	n[0] = byte(i)
	n[1] = 1 // never zero
	return n
}

// node returns a node with tags and, if l is not nil, the load under "task".
func node(i int, l *Load, tags ...string) *capability.Node {
	md := map[string]string{}
	if l != nil {
		l.Put(md, "task")
	}
	return &capability.Node{ID: id(i), Status: capability.StatusOnline, Set: capability.Set{Tags: tags, Metadata: md}, Updated: time.Unix(1000, 0)}
}

func ids(cs []Candidate) []identity.NodeID {
	out := make([]identity.NodeID, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

func TestRankOrder(t *testing.T) {
	degraded := node(1, &Load{Limit: 10})
	degraded.Status = capability.StatusDegraded
	d := dir{
		degraded,
		node(2, &Load{Running: 10, Limit: 10}, "skill:x"), // full
		node(3, &Load{Running: 6, Limit: 10}, "skill:x"),  // busier
		node(4, &Load{Running: 1, Limit: 10}, "skill:x"),  // least busy
		node(5, nil, "skill:x"),                           // unknown load
		node(6, &Load{Limit: 10}, "skill:x", "hot:x"),     // preferred
		node(7, &Load{Limit: 10}),                         // no skill
	}
	d[0].Set.Tags = []string{"skill:x"}
	p := New(d, Config{Prefix: "task", Self: id(7)})
	got := ids(p.Rank(capability.HasTag("skill:x"), capability.HasTag("hot:x"), nil))
	want := []identity.NodeID{id(6), id(4), id(5), id(3), id(2), id(1)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rank = %v, want %v", got, want)
	}
	got = ids(p.Rank(capability.HasTag("skill:x"), capability.HasTag("hot:x"), []identity.NodeID{id(6), id(4)}))
	if len(got) != 4 || got[0] != id(5) {
		t.Fatalf("rank excluding 6 and 4 = %v", got)
	}
}

func TestRankSkipsSelf(t *testing.T) {
	d := dir{node(1, &Load{Limit: 1}), node(2, &Load{Limit: 1})}
	p := New(d, Config{Prefix: "task", Self: id(1)})
	if got := ids(p.Rank(capability.Filter{}, capability.Filter{}, nil)); len(got) != 1 || got[0] != id(2) {
		t.Fatalf("rank = %v, want only node 2", got)
	}
}

// Placements in flight count as queued, so a burst spreads over the nodes
// before either reports its new load.
func TestInflightSpreads(t *testing.T) {
	d := dir{node(1, &Load{Limit: 4}), node(2, &Load{Limit: 4})}
	p := New(d, Config{Prefix: "task"})
	counts := map[identity.NodeID]int{}
	for range 8 {
		best := p.Rank(capability.Filter{}, capability.Filter{}, nil)[0]
		counts[best.ID]++
		p.Acquire(best.ID)
	}
	if counts[id(1)] != 4 || counts[id(2)] != 4 {
		t.Fatalf("8 placements went %v, want 4 and 4", counts)
	}
	c := p.Rank(capability.Filter{}, capability.Filter{}, nil)
	if c[0].Load.Free() != 0 || c[1].Load.Free() != 0 {
		t.Fatalf("after 8 placements on 2x4 slots: %+v", c)
	}
	for range 4 {
		p.Release(id(2))
	}
	if c := p.Rank(capability.Filter{}, capability.Filter{}, nil); c[0].ID != id(2) {
		t.Fatalf("after node 2's placements ended, best is %v", c[0].ID)
	}
}

// A reported load newer than the announcement wins; an older one does not.
func TestReportFreshness(t *testing.T) {
	d := dir{node(1, &Load{Limit: 4}), node(2, &Load{Running: 2, Limit: 4})}
	now := time.Unix(2000, 0)
	p := New(d, Config{Prefix: "task", Now: func() time.Time { return now }})
	p.Report(id(1), Load{Running: 4, Limit: 4})
	if c := p.Rank(capability.Filter{}, capability.Filter{}, nil); c[0].ID != id(2) || c[1].Load.Running != 4 {
		t.Fatalf("fresh report ignored: %+v", c)
	}
	now = time.Unix(500, 0) // a report older than the announcement
	p.Report(id(1), Load{Running: 4, Limit: 4})
	if c := p.Rank(capability.Filter{}, capability.Filter{}, nil); c[0].ID != id(1) {
		t.Fatalf("stale report won: %+v", c)
	}
}

func TestParseLoadRejects(t *testing.T) {
	for _, md := range []map[string]string{
		{},
		{"task.running": "1", "task.queued": "1"},
		{"task.running": "-1", "task.queued": "1", "task.limit": "1"},
		{"task.running": "1", "task.queued": "x", "task.limit": "1"},
		{"task.running": "1", "task.queued": "1", "task.limit": "99999999999"},
	} {
		if l, ok := ParseLoad(capability.Set{Metadata: md}, "task"); ok {
			t.Errorf("ParseLoad(%v) = %+v, ok", md, l)
		}
	}
	l := Load{Running: 1, Queued: 2, Limit: 3}
	md := map[string]string{}
	l.Put(md, "daemon")
	if got, ok := ParseLoad(capability.Set{Metadata: md}, "daemon"); !ok || got != l {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	if len(Keys("daemon")) != len(md) {
		t.Fatalf("Keys %v, metadata %v", Keys("daemon"), md)
	}
}

// The table of reported loads stays bounded: idle entries are forgotten.
func TestTableBounded(t *testing.T) {
	p := New(dir{}, Config{Prefix: "task", MaxNodes: 8})
	p.Acquire(id(200))
	for i := range 100 {
		p.Report(id(i), Load{Limit: 1})
		if n := p.Len(); n > 8 {
			t.Fatalf("table holds %d nodes, limit 8", n)
		}
	}
	p.mu.Lock()
	inflight := p.nodes[id(200)]
	p.mu.Unlock()
	if inflight == nil || inflight.inflight != 1 {
		t.Fatal("a node with a placement in flight was forgotten")
	}
}
