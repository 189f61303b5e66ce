package capability

import (
	"crypto/ed25519"
	"math/bits"
	"strconv"
	"sync"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Status is a node's liveness as seen by this node.
type Status uint8

// Liveness states. A remote node moves Online → Degraded → Offline as its
// newest announcement ages (Degraded after TTL/2, that is after one missed
// refresh; Offline at TTL), and back to Online on every fresh announcement.
// A node that reports itself degraded is Degraded while it is fresh. The
// engine moves the states on Tick and on HandleMessage.
const (
	// StatusOnline: the node's announcement is fresh.
	StatusOnline Status = iota + 1
	// StatusDegraded: the node says so, or it missed a refresh.
	StatusDegraded
	// StatusOffline: the node's announcement expired; it left the index.
	StatusOffline
)

// String returns "online", "degraded" or "offline".
func (s Status) String() string {
	switch s {
	case StatusOnline:
		return "online"
	case StatusDegraded:
		return "degraded"
	case StatusOffline:
		return "offline"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Node is the index's view of one node: its newest announcement and how it
// was learned. A Node is a snapshot; its Set is shared with the index and
// must not be modified.
type Node struct {
	ID      identity.NodeID
	Key     ed25519.PublicKey
	Version uint64
	Set     Set
	Status  Status
	Self    bool            // this node's own entry
	Hops    int             // distance in links when learned (0 for Self)
	Via     identity.NodeID // the neighbour it was first learned from (zero for Self)
	Updated time.Time       // when this version was announced or received
	Expires time.Time       // when it goes Offline without a refresh
}

// Index is the local view of every live node's newest announcement,
// including this node's own. It is safe for concurrent use; queries do not
// wait for announcement processing beyond a short index update.
//
// Internally nodes live in slots; per tag a bitset of slots, per numeric
// metadata key a column of values, so a filter is evaluated as bitset
// operations over candidate slots rather than as map lookups over every
// node. Writers hold the engine's mu and then Index.mu; readers hold only
// Index.mu (read).
type Index struct {
	mu     sync.RWMutex
	nodes  []*Node // by slot; nil when free
	scopes []slotScope
	slotOf map[identity.NodeID]int
	free   []int
	live   bitset
	tags   map[string]*posting
	nums   map[string]*numColumn
}

type slotScope struct {
	kind ScopeKind
	val  string
}

// posting is the slots carrying one tag.
type posting struct {
	bits bitset
	n    int
}

// numColumn is one numeric metadata key: which slots have it, and the value.
type numColumn struct {
	has  bitset
	vals []float64
	n    int
}

func newIndex() *Index {
	return &Index{
		slotOf: make(map[identity.NodeID]int),
		tags:   make(map[string]*posting),
		nums:   make(map[string]*numColumn),
	}
}

// get returns the live node id.
func (ix *Index) get(id identity.NodeID) *Node {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if s, ok := ix.slotOf[id]; ok {
		return ix.nodes[s]
	}
	return nil
}

// putLocked inserts or replaces n. The caller holds ix.mu.
func (ix *Index) putLocked(n *Node) {
	s, ok := ix.slotOf[n.ID]
	if ok {
		old := ix.nodes[s]
		if setsShareIndex(old.Set, n.Set) {
			ix.nodes[s] = n // status or timing change only
			return
		}
		ix.unindexLocked(s, old)
	} else if k := len(ix.free); k > 0 {
		s, ix.free = ix.free[k-1], ix.free[:k-1]
	} else {
		s = len(ix.nodes)
		ix.nodes = append(ix.nodes, nil)
		ix.scopes = append(ix.scopes, slotScope{})
	}
	ix.slotOf[n.ID] = s
	ix.nodes[s] = n
	ix.live = ix.live.set(s)
	kind, val := n.Set.Scope()
	ix.scopes[s] = slotScope{kind, val}
	for _, t := range n.Set.Tags {
		p := ix.tags[t]
		if p == nil {
			p = &posting{}
			ix.tags[t] = p
		}
		p.bits = p.bits.set(s)
		p.n++
	}
	for k, v := range n.Set.Metadata {
		f, ok := parseNumber(v)
		if !ok {
			continue
		}
		c := ix.nums[k]
		if c == nil {
			c = &numColumn{}
			ix.nums[k] = c
		}
		c.has = c.has.set(s)
		for len(c.vals) <= s {
			c.vals = append(c.vals, 0)
		}
		c.vals[s] = f
		c.n++
	}
}

// setsShareIndex reports whether two sets are the same value in memory, so a
// replacement does not need reindexing.
func setsShareIndex(a, b Set) bool {
	return len(a.Tags) == len(b.Tags) && len(a.Metadata) == len(b.Metadata) &&
		(len(a.Tags) == 0 || &a.Tags[0] == &b.Tags[0]) &&
		(len(a.Metadata) == 0 || sameMap(a.Metadata, b.Metadata))
}

func sameMap(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// removeLocked drops id from the index. The caller holds ix.mu.
func (ix *Index) removeLocked(id identity.NodeID) {
	s, ok := ix.slotOf[id]
	if !ok {
		return
	}
	ix.unindexLocked(s, ix.nodes[s])
	delete(ix.slotOf, id)
	ix.nodes[s] = nil
	ix.scopes[s] = slotScope{}
	ix.live.clear(s)
	ix.free = append(ix.free, s)
}

// unindexLocked removes n's tags and numbers from slot s.
func (ix *Index) unindexLocked(s int, n *Node) {
	for _, t := range n.Set.Tags {
		p := ix.tags[t]
		p.bits.clear(s)
		if p.n--; p.n == 0 {
			delete(ix.tags, t)
		}
	}
	for k, v := range n.Set.Metadata {
		if _, ok := parseNumber(v); !ok {
			continue
		}
		c := ix.nums[k]
		c.has.clear(s)
		if c.n--; c.n == 0 {
			delete(ix.nums, k)
		}
	}
}

// find evaluates f, calls size (if not nil) with the number of matches,
// then yield for each matching node in slot order.
func (ix *Index) find(f Filter, size func(int), yield func(*Node)) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	m := ix.eval(f.n, ix.live)
	if size != nil {
		count := 0
		for _, w := range m {
			count += bits.OnesCount64(w)
		}
		size(count)
	}
	for w, word := range m {
		for word != 0 {
			i := bits.TrailingZeros64(word)
			word &= word - 1
			yield(ix.nodes[w*64+i])
		}
	}
}

// eval returns the slots of u that match n. u is not modified; the result
// may be u itself.
func (ix *Index) eval(n *fnode, u bitset) bitset {
	if n == nil {
		return u
	}
	switch n.op {
	case opTag:
		p := ix.tags[n.key]
		if p == nil {
			return nil
		}
		return u.and(p.bits)
	case opEq:
		return u.filter(func(s int) bool {
			v, ok := ix.nodes[s].Set.Metadata[n.key]
			return ok && v == n.val
		})
	case opAtLeast, opAtMost:
		c := ix.nums[n.key]
		if c == nil {
			return nil
		}
		m := u.and(c.has)
		if n.op == opAtLeast {
			return m.filterInPlace(func(s int) bool { return c.vals[s] >= n.num })
		}
		return m.filterInPlace(func(s int) bool { return c.vals[s] <= n.num })
	case opAnd:
		// Tags first: they are one word-wise AND and usually narrow most.
		cur := u
		for pass := 0; pass < 2; pass++ {
			for _, k := range n.kids {
				if (k.op == opTag) == (pass == 0) && !cur.empty() {
					cur = ix.eval(k, cur)
				}
			}
		}
		return cur
	case opOr:
		var r bitset
		rest := u
		for _, k := range n.kids {
			m := ix.eval(k, rest)
			r = r.or(m)
			rest = rest.andNot(m)
		}
		return r
	case opNot:
		return u.andNot(ix.eval(n.kids[0], u))
	case opScope:
		return u.filter(func(s int) bool {
			sc := ix.scopes[s]
			return n.scope.allows(sc.kind, sc.val, ix.nodes[s])
		})
	}
	return nil
}

// bitset is a set of slots. A nil bitset is empty; words beyond the end are
// zero.
type bitset []uint64

func (b bitset) set(i int) bitset {
	for len(b) <= i/64 {
		b = append(b, 0)
	}
	b[i/64] |= 1 << (i % 64)
	return b
}

func (b bitset) clear(i int) {
	if i/64 < len(b) {
		b[i/64] &^= 1 << (i % 64)
	}
}

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

func (b bitset) and(c bitset) bitset {
	r := make(bitset, min(len(b), len(c)))
	for i := range r {
		r[i] = b[i] & c[i]
	}
	return r
}

func (b bitset) andNot(c bitset) bitset {
	r := make(bitset, len(b))
	for i := range r {
		r[i] = b[i]
		if i < len(c) {
			r[i] &^= c[i]
		}
	}
	return r
}

func (b bitset) or(c bitset) bitset {
	if len(b) < len(c) {
		b, c = c, b
	}
	r := make(bitset, len(b))
	copy(r, b)
	for i, w := range c {
		r[i] |= w
	}
	return r
}

// filter returns the members of b for which keep is true.
func (b bitset) filter(keep func(int) bool) bitset {
	r := make(bitset, len(b))
	copy(r, b)
	return r.filterInPlace(keep)
}

// filterInPlace clears the members of b for which keep is false.
func (b bitset) filterInPlace(keep func(int) bool) bitset {
	for w, word := range b {
		for m := word; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			if !keep(w*64 + i) {
				b[w] &^= 1 << i
			}
		}
	}
	return b
}
