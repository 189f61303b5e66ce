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
// Internally nodes live in slots; per tag the slots that carry it, per
// numeric metadata key the slots and their values (a posting: a list while
// few slots carry it, a bitset and a column once that is smaller), so a
// filter is evaluated as bitset operations over candidate slots rather
// than as map lookups over every node, and memory stays linear in what
// the nodes announce. Writers hold the engine's mu and then Index.mu;
// readers hold only Index.mu (read).
type Index struct {
	mu     sync.RWMutex
	nodes  []*Node // by slot; nil when free
	scopes []slotScope
	slotOf map[identity.NodeID]int
	free   []int
	live   bitset
	tags   postings
	nums   postings            // numeric metadata keys
	byName map[string][]uint32 // folded name (see LookupName) to the slots claiming it
}

type slotScope struct {
	kind ScopeKind
	val  string
}

func newIndex() *Index {
	return &Index{
		slotOf: make(map[identity.NodeID]int),
		tags:   postings{numeric: false},
		nums:   postings{numeric: true},
		byName: make(map[string][]uint32),
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
	ix.nameLocked(n.Name(), uint32(s))
	kind, val := n.Set.Scope()
	ix.scopes[s] = slotScope{kind, val}
	span := len(ix.nodes)
	for _, t := range n.Set.Tags {
		ix.tags.add(t, s, 0, span)
	}
	for k, v := range n.Set.Metadata {
		if f, ok := parseNumber(v); ok {
			ix.nums.add(k, s, f, span)
		}
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

// unindexLocked removes n's name, tags and numbers from slot s.
func (ix *Index) unindexLocked(s int, n *Node) {
	ix.unnameLocked(n.Name(), uint32(s))
	for _, t := range n.Set.Tags {
		ix.tags.remove(t, s)
	}
	for k, v := range n.Set.Metadata {
		if _, ok := parseNumber(v); ok {
			ix.nums.remove(k, s)
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
		p, ok := ix.tags.m[n.key]
		if !ok {
			return nil
		}
		return p.and(u)
	case opEq:
		return u.filter(func(s int) bool {
			v, ok := ix.nodes[s].Set.Metadata[n.key]
			return ok && v == n.val
		})
	case opAtLeast, opAtMost:
		p, ok := ix.nums.m[n.key]
		if !ok {
			return nil
		}
		return p.where(u, n.op == opAtLeast, n.num)
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
