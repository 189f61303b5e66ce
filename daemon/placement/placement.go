// Package placement chooses the nodes to place work on: among the nodes
// whose capabilities match a filter, the least loaded first, by the load
// they advertise in their capability metadata or reported more recently,
// less what this placer has in flight towards them.
//
// It is shared by the compute layer's tasks and stateful daemons: each
// advertises its load under its own metadata prefix ("task", say) with
// Load.Put, and places with a Placer of that prefix. A Placer starts no
// goroutines and does no I/O; it reads the capability index through a
// Directory (a *mesh.Mesh is one).
package placement

import (
	"cmp"
	"crypto/ed25519"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// Load is a node's capacity for one kind of work, in units of that work
// (tasks, daemons).
type Load struct {
	// Running is the number of units running now.
	Running int
	// Queued is the number waiting to run.
	Queued int
	// Limit is the number the node runs at once.
	Limit int
}

// Free returns the units the node could start now: Limit less Running
// and Queued, at least 0.
func (l Load) Free() int { return max(l.Limit-l.Running-l.Queued, 0) }

// Metadata keys of a load under a prefix: "<prefix>.running",
// "<prefix>.queued", "<prefix>.limit".
const (
	keyRunning = ".running"
	keyQueued  = ".queued"
	keyLimit   = ".limit"
)

// Put writes l into md under prefix, for a capability set's metadata.
func (l Load) Put(md map[string]string, prefix string) {
	md[prefix+keyRunning] = strconv.Itoa(l.Running)
	md[prefix+keyQueued] = strconv.Itoa(l.Queued)
	md[prefix+keyLimit] = strconv.Itoa(l.Limit)
}

// Keys returns the metadata keys Put writes under prefix.
func Keys(prefix string) []string {
	return []string{prefix + keyRunning, prefix + keyQueued, prefix + keyLimit}
}

// ParseLoad reads the load a set advertises under prefix. ok is false
// when a key is missing or is not a non-negative integer below 2^31: the
// load is then unknown.
func ParseLoad(s capability.Set, prefix string) (l Load, ok bool) {
	get := func(k string) (int, bool) {
		v, found := s.Metadata[prefix+k]
		if !found {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 32)
		return int(n), err == nil && n >= 0
	}
	var ok1, ok2, ok3 bool
	l.Running, ok1 = get(keyRunning)
	l.Queued, ok2 = get(keyQueued)
	l.Limit, ok3 = get(keyLimit)
	if !ok1 || !ok2 || !ok3 {
		return Load{}, false
	}
	return l, true
}

// Directory is where a Placer finds nodes: the capability index.
// *mesh.Mesh implements it.
type Directory interface {
	FindNodes(f capability.Filter) []*capability.Node
}

// Config configures a Placer. The zero value of every field but Prefix
// is a documented default.
type Config struct {
	// Prefix is the metadata prefix the load is advertised under
	// ("task" for tasks).
	Prefix string
	// Self is never placed on (a node does not send work to itself
	// through the network). Zero places on every node.
	Self identity.NodeID
	// MaxNodes bounds the nodes the placer keeps reported load and
	// in-flight counts for. 0 means DefaultMaxNodes.
	MaxNodes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultMaxNodes is Config.MaxNodes when zero: the mesh's default peer
// limit, so a placer that works with every peer of a default mesh never
// forgets a node it has something in flight with.
const DefaultMaxNodes = 4096

// Placer ranks the nodes that match a filter by load. It remembers the
// load each node last reported (Report) and the placements it has in
// flight (Acquire, Release), so that concurrent placements spread out
// between two gossip rounds. Its methods are safe for concurrent use.
type Placer struct {
	dir Directory
	cfg Config

	mu    sync.Mutex // guards nodes
	nodes map[identity.NodeID]*nodeState
}

// nodeState is what a placer knows of one node beyond the index.
type nodeState struct {
	report   Load
	reported time.Time // zero: nothing reported
	inflight int
}

// New returns a placer that finds nodes in dir.
func New(dir Directory, cfg Config) *Placer {
	if cfg.MaxNodes <= 0 {
		cfg.MaxNodes = DefaultMaxNodes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Placer{dir: dir, cfg: cfg, nodes: make(map[identity.NodeID]*nodeState)}
}

// Candidate is one node Rank returns.
type Candidate struct {
	ID  identity.NodeID
	Key ed25519.PublicKey
	// Load is the estimate Rank ranked by: the freshest load known, its
	// Queued raised by the placements in flight.
	Load Load
	// Known is false when the node advertises no load and reported none.
	Known bool
	// Preferred is true when the node matched Rank's prefer filter.
	Preferred bool
	// Degraded is true when the node is not online (see
	// capability.Status).
	Degraded bool
}

// rank is the ordering key of a candidate: smaller is better.
type rank struct {
	degraded  bool
	preferred bool
	full      bool    // no free slot (known load)
	busy      float64 // (running+queued)/limit; 0.5 for an unknown load
}

func (a rank) compare(b rank) int {
	switch {
	case a.degraded != b.degraded:
		return boolOrder(a.degraded)
	case a.preferred != b.preferred:
		return -boolOrder(a.preferred)
	case a.full != b.full:
		return boolOrder(a.full)
	}
	return cmp.Compare(a.busy, b.busy)
}

// boolOrder is 1 for true and -1 for false: false sorts first.
func boolOrder(b bool) int {
	if b {
		return 1
	}
	return -1
}

// Rank returns the nodes that match f, except Config.Self and the nodes
// in exclude, best first: online before degraded, then those matching
// prefer (the zero Filter prefers every node), then those with a free
// slot, then the least busy ((Running + Queued) / Limit); ties in random
// order. A node's load is the one it reported last (Report) if that is
// newer than its announcement, else the announced one.
func (p *Placer) Rank(f, prefer capability.Filter, exclude []identity.NodeID) []Candidate {
	nodes := p.dir.FindNodes(f)
	type ranked struct {
		c Candidate
		k rank
	}
	all := make([]ranked, 0, len(nodes))
	p.mu.Lock()
	for _, n := range nodes {
		if n.ID == p.cfg.Self || slices.Contains(exclude, n.ID) {
			continue
		}
		c := Candidate{ID: n.ID, Key: n.Key, Preferred: prefer.Match(*n), Degraded: n.Status != capability.StatusOnline}
		c.Load, c.Known = ParseLoad(n.Set, p.cfg.Prefix)
		if ns := p.nodes[n.ID]; ns != nil {
			if !ns.reported.IsZero() && ns.reported.After(n.Updated) {
				c.Load, c.Known = ns.report, true
			}
			c.Load.Queued += ns.inflight
		}
		k := rank{degraded: c.Degraded, preferred: c.Preferred, busy: 0.5}
		if c.Known {
			k.full = c.Load.Free() == 0
			k.busy = float64(c.Load.Running+c.Load.Queued) / float64(max(c.Load.Limit, 1))
		}
		all = append(all, ranked{c, k})
	}
	p.mu.Unlock()
	// Shuffle, then sort stably: equal candidates end in random order.
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	slices.SortStableFunc(all, func(a, b ranked) int { return a.k.compare(b.k) })
	out := make([]Candidate, len(all))
	for i, r := range all {
		out[i] = r.c
	}
	return out
}

// Report records the load node reported now (in a reply, say), fresher
// than its last announcement.
func (p *Placer) Report(node identity.NodeID, l Load) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ns := p.entryLocked(node)
	ns.report, ns.reported = l, p.cfg.Now()
}

// Acquire counts one placement in flight towards node; Release ends it.
// Rank adds the placements in flight to the node's queue, so that
// concurrent placements spread out before the node reports its new load.
func (p *Placer) Acquire(node identity.NodeID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.entryLocked(node).inflight++
}

// Release ends a placement Acquire counted.
func (p *Placer) Release(node identity.NodeID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ns := p.nodes[node]; ns != nil && ns.inflight > 0 {
		ns.inflight--
	}
}

// entryLocked returns node's state, creating it; when the table is full
// it first forgets the nodes with nothing in flight, and if that is not
// enough, it forgets this report rather than grow (the node is then ranked
// by its announcement alone). p.mu must be held.
func (p *Placer) entryLocked(node identity.NodeID) *nodeState {
	if ns := p.nodes[node]; ns != nil {
		return ns
	}
	if len(p.nodes) >= p.cfg.MaxNodes {
		for id, ns := range p.nodes {
			if ns.inflight == 0 {
				delete(p.nodes, id)
			}
		}
	}
	ns := &nodeState{}
	if len(p.nodes) < p.cfg.MaxNodes {
		p.nodes[node] = ns
	}
	return ns
}

// Len returns the number of nodes the placer keeps state for.
func (p *Placer) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.nodes)
}
