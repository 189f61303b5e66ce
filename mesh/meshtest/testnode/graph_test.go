package testnode

import (
	"math/rand/v2"
	"testing"
)

// RandomGraph's promises: connected, no pair twice, no self-links, and
// every node picks k others unless fewer are left unlinked to it when its
// turn comes (after the nodes before it picked).
func TestRandomGraph(t *testing.T) {
	for _, tc := range []struct{ n, k int }{{1, 8}, {2, 8}, {9, 8}, {48, 8}, {1000, 8}, {50, 1}} {
		links := RandomGraph(rand.New(rand.NewPCG(1, uint64(tc.n))), tc.n, tc.k)
		seen := make(map[[2]int]bool)
		picked := make([]int, tc.n)
		earlier := make([]int, tc.n) // links to a node from nodes before it
		parent := make([]int, tc.n)
		for i := range parent {
			parent[i] = i
		}
		var root func(int) int
		root = func(i int) int {
			if parent[i] != i {
				parent[i] = root(parent[i])
			}
			return parent[i]
		}
		for _, l := range links {
			a, b := l[0], l[1]
			if a == b || seen[[2]int{a, b}] || seen[[2]int{b, a}] {
				t.Fatalf("n=%d: link %v is a self-link or a repeat", tc.n, l)
			}
			seen[l] = true
			picked[a]++
			if a < b {
				earlier[b]++
			}
			parent[root(a)] = root(b)
		}
		for i := range tc.n {
			if root(i) != root(0) {
				t.Fatalf("n=%d k=%d: node %d is not connected to node 0", tc.n, tc.k, i)
			}
			if want := min(tc.k, tc.n-1-earlier[i]); picked[i] != want {
				t.Fatalf("n=%d k=%d: node %d picked %d links, want %d", tc.n, tc.k, i, picked[i], want)
			}
		}
	}
}
