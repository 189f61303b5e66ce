package capability

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/netmesh/netmesh/identity"
)

// Postings change form as nodes come and go (sparse while rare, dense once
// common, sparse again); queries must give the same answer as matching
// every node one by one, whatever the forms.
func TestPostingFormsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	ix := newIndex()
	live := map[identity.NodeID]*Node{}
	filters := []Filter{
		HasTag("common"), HasTag("rare"), HasTag("t3"),
		AtLeast("load", 0.5), AtMost("load", 0.2), AtLeast("rare_num", 3),
		AllOf(HasTag("common"), AtLeast("load", 0.5)),
		AnyOf(HasTag("rare"), AtMost("rare_num", 1)),
		Not(HasTag("common")),
	}
	check := func(step int) {
		t.Helper()
		for _, f := range filters {
			var want []identity.NodeID
			for id, n := range live {
				if f.Match(*n) {
					want = append(want, id)
				}
			}
			var got []identity.NodeID
			for _, n := range ix.FindNodes(f) {
				got = append(got, n.ID)
			}
			cmp := func(a, b identity.NodeID) int { return slices.Compare(a[:], b[:]) }
			slices.SortFunc(want, cmp)
			slices.SortFunc(got, cmp)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: %s matched %d nodes, one by one %d", step, f, len(got), len(want))
			}
		}
	}
	// Whether the postings of a tag and of a numeric key went dense, and
	// sparse again afterwards.
	var sawDense, sawSparseAgain [2]bool
	for step := 0; step < 3000; step++ {
		// Grow to about 600 nodes, then shrink, so postings cross their
		// thresholds in both directions.
		grow := step < 1500
		var id identity.NodeID
		id[0], id[1] = byte(r.IntN(4)), byte(r.IntN(256))
		if !grow && len(live) > 5 {
			for id = range live {
				break // map order: a random live node
			}
		}
		if _, ok := live[id]; ok && (!grow || r.IntN(4) == 0) {
			ix.removeLocked(id)
			delete(live, id)
		} else if grow {
			set := Set{Tags: []string{fmt.Sprintf("t%d", r.IntN(8))}, Metadata: map[string]string{}}
			if r.IntN(10) < 9 {
				set.Tags = append(set.Tags, "common")
				set.Metadata["load"] = fmt.Sprint(r.Float64())
			}
			if r.IntN(50) == 0 {
				set.Tags = append(set.Tags, "rare")
				set.Metadata["rare_num"] = fmt.Sprint(r.IntN(5))
			}
			n := &Node{ID: id, Set: set, Status: StatusOnline}
			ix.putLocked(n)
			live[id] = n
		}
		for i, p := range []posting{ix.tags.m["common"], ix.nums.m["load"]} {
			if p.rest != nil {
				sawDense[i] = sawDense[i] || p.rest.bits != nil
				sawSparseAgain[i] = sawSparseAgain[i] || sawDense[i] && p.rest.bits == nil
			}
		}
		if step%50 == 0 {
			check(step)
		}
	}
	check(3000)
	if sawDense != [2]bool{true, true} || sawSparseAgain != [2]bool{true, true} {
		t.Errorf("tag and numeric postings went dense %v and back %v: the test did not cross the thresholds", sawDense, sawSparseAgain)
	}
}
