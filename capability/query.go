package capability

import (
	"bytes"
	"math"
	"slices"

	"github.com/netmesh/netmesh/identity"
)

// FindNodes returns every live node that matches f, in no particular order.
// The nodes are the index's immutable snapshots (a change replaces a node,
// never modifies it), shared with other callers: do not modify them. It
// ignores scope tags; use FindNodesScoped for a query made on behalf of
// someone in a scope.
func (ix *Index) FindNodes(f Filter) []*Node { return ix.AppendNodes(nil, f) }

// AppendNodes appends the live nodes that match f to dst and returns the
// extended slice. A caller that queries often passes the previous result
// truncated to zero length and allocates nothing per query in steady
// state, which keeps garbage collection out of its latency tail.
func (ix *Index) AppendNodes(dst []*Node, f Filter) []*Node {
	ix.find(f, func(count int) { dst = slices.Grow(dst, count) }, func(n *Node) { dst = append(dst, n) })
	return dst
}

// FindNodesScoped returns the live nodes that match f and are visible from
// scope s (see Scope): FindNodes(AllOf(f, InScope(s))).
func (ix *Index) FindNodesScoped(f Filter, s Scope) []*Node {
	return ix.FindNodes(AllOf(f, InScope(s)))
}

// FindBestNode returns the live node that matches f with the highest score,
// ties going to the smaller NodeID. Nodes scored NaN are skipped. ok is
// false when no node qualifies. Lowest and Highest build common scores.
func (ix *Index) FindBestNode(f Filter, score func(Node) float64) (best Node, ok bool) {
	bestScore := math.Inf(-1)
	ix.find(f, nil, func(n *Node) {
		sc := score(*n)
		if math.IsNaN(sc) {
			return
		}
		if !ok || sc > bestScore || sc == bestScore && bytes.Compare(n.ID[:], best.ID[:]) < 0 {
			best, bestScore, ok = *n, sc, true
		}
	})
	return best, ok
}

// Lowest scores a node by the negated numeric metadata key, so FindBestNode
// prefers the smallest value (the least loaded node for "cpu_load" or
// "gpu_util_pct"). Nodes without the key score NaN and are skipped.
func Lowest(key string) func(Node) float64 {
	return func(n Node) float64 {
		if x, ok := n.Set.Number(key); ok {
			return -x
		}
		return math.NaN()
	}
}

// Highest scores a node by the numeric metadata key, so FindBestNode prefers
// the largest value (for example "gpu_mem_free_gb"). Nodes without the key
// score NaN and are skipped.
func Highest(key string) func(Node) float64 {
	return func(n Node) float64 {
		if x, ok := n.Set.Number(key); ok {
			return x
		}
		return math.NaN()
	}
}

// Lookup returns the live node id.
func (ix *Index) Lookup(id identity.NodeID) (Node, bool) {
	if n := ix.get(id); n != nil {
		return *n, true
	}
	return Node{}, false
}

// Len returns the number of live nodes, this node included once it has
// announced.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.slotOf)
}
