package channel

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// fakeClock is an injectable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var errUnreachable = errors.New("fake: peer unreachable")

// fakeNet connects engines in memory. Synchronous by default: Send hands
// the message to the receiver's HandleMessage on the caller's goroutine
// (the engine holds no lock when it sends, so this exercises re-entry).
// With async, every node has an inbox goroutine, as the mesh has readers.
type fakeNet struct {
	t     testing.TB
	clock *fakeClock
	async bool

	mu    sync.Mutex
	nodes map[identity.NodeID]*fakeNode
}

// fakeNode is one node's Transport.
type fakeNode struct {
	net   *fakeNet
	id    *identity.Identity
	e     *Engine
	inbox chan inMsg
	done  chan struct{}

	// guarded by net.mu
	set       capability.Set
	announced bool
	down      bool // sends to this node fail
}

type inMsg struct {
	from identity.NodeID
	msg  []byte
}

func newFakeNet(t testing.TB) *fakeNet {
	return &fakeNet{t: t, clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}, nodes: make(map[identity.NodeID]*fakeNode)}
}

var seedCounter struct {
	sync.Mutex
	n uint16
}

func testIdentity(t testing.TB) *identity.Identity {
	seedCounter.Lock()
	seedCounter.n++
	n := seedCounter.n
	seedCounter.Unlock()
	seed := bytes.Repeat([]byte{byte(n), byte(n >> 8)}, identity.SeedSize/2)
	id, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// add creates a node announcing tags, with engine options opt (Now is
// set to the net's clock).
func (n *fakeNet) add(opt Options, tags ...string) *fakeNode {
	n.t.Helper()
	node := &fakeNode{net: n, id: testIdentity(n.t), set: capability.Set{Tags: tags}, announced: true}
	opt.Now = n.clock.Now
	e, err := New(node.id, node, opt)
	if err != nil {
		n.t.Fatal(err)
	}
	node.e = e
	if n.async {
		node.inbox = make(chan inMsg, 4096)
		node.done = make(chan struct{})
		go func() {
			defer close(node.done)
			for m := range node.inbox {
				_ = e.HandleMessage(m.from, m.msg)
			}
		}()
		n.t.Cleanup(func() {
			close(node.inbox)
			<-node.done
		})
	}
	n.mu.Lock()
	n.nodes[node.id.NodeID()] = node
	n.mu.Unlock()
	return node
}

func (f *fakeNode) ID() identity.NodeID { return f.id.NodeID() }

func (f *fakeNode) setTags(tags ...string) {
	f.net.mu.Lock()
	f.set = capability.Set{Tags: tags}
	f.net.mu.Unlock()
}

func (f *fakeNode) setDown(down bool) {
	f.net.mu.Lock()
	f.down = down
	f.net.mu.Unlock()
}

// Send implements Transport.
func (f *fakeNode) Send(to identity.NodeID, msg []byte) error {
	f.net.mu.Lock()
	dst := f.net.nodes[to]
	down := dst == nil || dst.down
	f.net.mu.Unlock()
	if down {
		return errUnreachable
	}
	if f.net.async {
		dst.inbox <- inMsg{f.ID(), msg}
		return nil
	}
	// Hand over a copy and scribble on it afterwards: HandleMessage must
	// not retain what it is given.
	c := bytes.Clone(msg)
	_ = dst.e.HandleMessage(f.ID(), c)
	for i := range c {
		c[i] = 0xAA
	}
	return nil
}

// PeerInfo implements Transport.
func (f *fakeNode) PeerInfo(id identity.NodeID) (capability.Node, ed25519.PublicKey, bool) {
	f.net.mu.Lock()
	defer f.net.mu.Unlock()
	n := f.net.nodes[id]
	if n == nil {
		return capability.Node{}, nil, false
	}
	node := capability.Node{ID: id}
	if n.announced {
		node.Key, node.Set, node.Self = n.id.PublicKey(), n.set, id == f.ID()
	}
	return node, n.id.PublicKey(), true
}
