package capability

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/netmesh/netmesh/identity"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// simNet is an in-memory mesh: Send queues a message, deliver hands every
// queued message to its receiver. One deliver is one gossip round, so a
// flood proceeds breadth first and deterministically.
type simNet struct {
	clock *fakeClock

	mu    sync.Mutex
	nodes map[identity.NodeID]*simNode
	order []*simNode
	queue []simPacket
	bytes int
	msgs  int
}

type simNode struct {
	id    *identity.Identity
	e     *Engine
	peers []identity.NodeID // guarded by simNet.mu
}

type simPacket struct {
	from, to identity.NodeID
	msg      []byte
}

type simTransport struct {
	net  *simNet
	self identity.NodeID
}

var errNoLink = errors.New("sim: no link")

func (t simTransport) Peers() []identity.NodeID {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	return append([]identity.NodeID(nil), t.net.nodes[t.self].peers...)
}

func (t simTransport) Send(to identity.NodeID, msg []byte) error {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	if !t.net.linkedLocked(t.self, to) {
		return errNoLink
	}
	t.net.queue = append(t.net.queue, simPacket{t.self, to, msg})
	t.net.bytes += len(msg)
	t.net.msgs++
	return nil
}

// newSimNet makes n engines with cfg (Now is set to the shared clock).
func newSimNet(tb testing.TB, n int, cfg Config) *simNet {
	tb.Helper()
	s := &simNet{clock: newFakeClock(), nodes: make(map[identity.NodeID]*simNode, n)}
	cfg.Now = s.clock.Now
	for i := 0; i < n; i++ {
		id := testID(tb, i)
		e, err := New(id, simTransport{s, id.NodeID()}, cfg)
		if err != nil {
			tb.Fatal(err)
		}
		node := &simNode{id: id, e: e}
		s.nodes[id.NodeID()] = node
		s.order = append(s.order, node)
	}
	return s
}

func (s *simNet) linkedLocked(a, b identity.NodeID) bool {
	for _, p := range s.nodes[a].peers {
		if p == b {
			return true
		}
	}
	return false
}

// link connects nodes i and j without telling the engines.
func (s *simNet) link(i, j int) bool {
	a, b := s.order[i], s.order[j]
	s.mu.Lock()
	defer s.mu.Unlock()
	if i == j || s.linkedLocked(a.id.NodeID(), b.id.NodeID()) {
		return false
	}
	a.peers = append(a.peers, b.id.NodeID())
	b.peers = append(b.peers, a.id.NodeID())
	return true
}

// unlink disconnects node i from everyone and tells its neighbours.
func (s *simNet) isolate(i int) {
	a := s.order[i]
	s.mu.Lock()
	peers := a.peers
	a.peers = nil
	for _, p := range peers {
		b := s.nodes[p]
		for k, q := range b.peers {
			if q == a.id.NodeID() {
				b.peers = append(b.peers[:k:k], b.peers[k+1:]...)
				break
			}
		}
	}
	s.mu.Unlock()
	for _, p := range peers {
		s.nodes[p].e.PeerDown(a.id.NodeID())
	}
}

// randomTopology links a ring (so the graph is connected) plus one random
// chord per node: average degree about 4.
func (s *simNet) randomTopology(seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	n := len(s.order)
	for i := 0; i < n; i++ {
		s.link(i, (i+1)%n)
	}
	for i := 0; i < n; i++ {
		for !s.link(i, r.IntN(n)) {
		}
	}
}

// deliver runs one round and returns the messages delivered.
func (s *simNet) deliver() int {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, p := range q {
		s.nodes[p.to].e.HandleMessage(p.from, p.msg)
	}
	return len(q)
}

// queuedBytes is the memory the messages in flight take.
func (s *simNet) queuedBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(cap(s.queue)) * int64(unsafe.Sizeof(simPacket{}))
	for _, p := range s.queue {
		n += int64(cap(p.msg))
	}
	return n
}

// settle delivers rounds until no message is in flight and returns the
// number of rounds that carried messages.
func (s *simNet) settle() int {
	rounds := 0
	for s.deliver() > 0 {
		rounds++
	}
	return rounds
}

// tickAll ticks every engine but skip and settles.
func (s *simNet) tickAll(skip int) {
	for i, n := range s.order {
		if i != skip {
			n.e.Tick()
		}
	}
	s.settle()
}

// distances returns hop distances from node i (breadth-first search).
func (s *simNet) distances(i int) map[identity.NodeID]int {
	d := map[identity.NodeID]int{s.order[i].id.NodeID(): 0}
	frontier := []identity.NodeID{s.order[i].id.NodeID()}
	for len(frontier) > 0 {
		var next []identity.NodeID
		for _, id := range frontier {
			for _, p := range s.nodes[id].peers {
				if _, ok := d[p]; !ok {
					d[p] = d[id] + 1
					next = append(next, p)
				}
			}
		}
		frontier = next
	}
	return d
}
