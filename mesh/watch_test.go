package mesh_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
)

// watchTimeout bounds how long a test waits for the next change.
const watchTimeout = 10 * time.Second

// testClock is a capability clock a test moves by hand.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// quickAnnounce lets a node announce a change within a second of the
// last one (the engine flushes on its 1 s tick).
func quickAnnounce(c *mesh.Config) { c.Capabilities.MinAnnounceInterval = time.Second }

// steadyNode starts a node whose announced set changes only when the test
// announces: built with the nat tag, a node measures its reflexive address
// through its peers and announces it once measured, a change of set a
// watch would report at a moment the test does not choose. The node's
// reflex is pinned to its own address instead.
func steadyNode(t *testing.T, mod ...func(*mesh.Config)) *mesh.Mesh {
	t.Helper()
	m := newNode(t, mod...)
	if err := m.SetReflexOverride(m.Addr()); err != nil && !errors.Is(err, mesh.ErrUnsupported) {
		t.Fatal(err)
	}
	return m
}

// watcher is a consumer of one WatchNodes iteration that a test steps
// by hand: between two expects it stays inside the yield of the change
// it took last, a consumer busy with it, so the changes made meanwhile
// wait for the watch.
type watcher struct {
	items  chan watchItem
	resume chan struct{}
	done   chan struct{} // closed when the iteration ended
	parked bool          // the iteration waits in a yield for resume
}

type watchItem struct {
	change mesh.NodeChange
	node   capability.Node
}

// watch starts WatchNodes(ctx, f) on m; it ends when the test does.
func watch(t *testing.T, ctx context.Context, m *mesh.Mesh, f capability.Filter) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{items: make(chan watchItem), resume: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer close(w.items)
		for c, n := range m.WatchNodes(ctx, f) {
			select {
			case w.items <- watchItem{c, n}:
			case <-ctx.Done():
				return
			}
			select {
			case <-w.resume:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// next lets the iteration go on and takes its next change; ok is false
// when it ended.
func (w *watcher) next(t *testing.T) (watchItem, bool) {
	t.Helper()
	if w.parked {
		select {
		case w.resume <- struct{}{}:
		case <-w.done:
		}
	}
	select {
	case it, ok := <-w.items:
		w.parked = ok
		return it, ok
	case <-time.After(watchTimeout):
		t.Fatalf("no change within %v", watchTimeout)
		panic("unreachable")
	}
}

// expect takes the next change and checks its kind and node.
func (w *watcher) expect(t *testing.T, what string, want mesh.NodeChange, id identity.NodeID) capability.Node {
	t.Helper()
	it, ok := w.next(t)
	switch {
	case !ok:
		t.Fatalf("%s: the watch ended, want %v of %s", what, want, id.Short())
	case it.change != want || it.node.ID != id:
		t.Fatalf("%s: got %v of %s, want %v of %s", what, it.change, it.node.ID.Short(), want, id.Short())
	}
	return it.node
}

func announce(t *testing.T, m *mesh.Mesh, tags ...string) {
	t.Helper()
	if err := m.AnnounceCapabilities(capability.Set{Tags: tags}); err != nil {
		t.Fatal(err)
	}
}

// A watch sees the whole life of the nodes it follows, on real nodes:
// the ones that matched when it began, a newcomer, a change of set, a
// node that stops matching, a graceful leave, a missed refresh and an
// announcement that runs out; and it ends with its context.
func TestWatchNodesLifecycle(t *testing.T) {
	clock := newTestClock()
	w := newNode(t, func(c *mesh.Config) { c.Capabilities.Now = clock.Now })
	b := steadyNode(t, quickAnnounce)
	c := steadyNode(t, quickAnnounce)
	announce(t, b, "gpu")
	connect(t, b, w, mesh.Pin{})
	gpu := capability.HasTag("gpu")
	eventually(t, watchTimeout, "w to learn b's gpu", func() bool { return len(w.FindNodes(gpu)) == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ws := watch(t, ctx, w, gpu)

	ws.expect(t, "a node matching at the start", mesh.NodeAdded, b.ID())
	connect(t, c, w, mesh.Pin{})
	announce(t, c, "gpu")
	ws.expect(t, "a newcomer", mesh.NodeAdded, c.ID())
	announce(t, b, "gpu", "cuda")
	if n := ws.expect(t, "a new set", mesh.NodeUpdated, b.ID()); !n.Set.HasTag("cuda") {
		t.Errorf("updated set %v, want cuda in it", n.Set.Tags)
	}
	announce(t, c, "cpu")
	ws.expect(t, "a set that no longer matches", mesh.NodeUnmatched, c.ID())
	b.WithdrawCapabilities()
	if n := ws.expect(t, "a graceful leave", mesh.NodeLeft, b.ID()); n.Status != capability.StatusOffline || !n.Set.HasTag("cuda") {
		t.Errorf("left node %v %v, want its last set, offline", n.Status, n.Set.Tags)
	}
	announce(t, c, "gpu")
	ws.expect(t, "matching again", mesh.NodeAdded, c.ID())
	clock.Advance(capability.DefaultTTL/2 + time.Second)
	if n := ws.expect(t, "a missed refresh", mesh.NodeUpdated, c.ID()); n.Status != capability.StatusDegraded {
		t.Errorf("status %v after a missed refresh, want degraded", n.Status)
	}
	clock.Advance(capability.DefaultTTL / 2)
	ws.expect(t, "an announcement that ran out", mesh.NodeOffline, c.ID())

	cancel()
	if it, ok := ws.next(t); ok {
		t.Fatalf("after its context ended the watch yielded %v of %s", it.change, it.node.ID.Short())
	}
}

// A consumer that lags behind a burst of changes gets each node's latest
// state once, not every step; one that lets the engine's event queue
// overflow gets the difference after a resync, and a node that left in
// the gap is still reported as having left, not gone offline.
func TestWatchNodesCoalescesAndResyncs(t *testing.T) {
	w := steadyNode(t)
	b := steadyNode(t)
	announce(t, b, "gpu")
	connect(t, b, w, mesh.Pin{})
	gpu := capability.HasTag("gpu")
	announceN := func(n int) {
		if err := w.AnnounceCapabilities(capability.Set{Tags: []string{"gpu"}, Metadata: map[string]string{"n": strconv.Itoa(n)}}); err != nil {
			t.Fatal(err)
		}
	}
	announceN(0)
	eventually(t, watchTimeout, "w to learn b's gpu", func() bool { return len(w.FindNodes(gpu)) == 2 })

	ws := watch(t, context.Background(), w, gpu)
	start := map[identity.NodeID]mesh.NodeChange{}
	for range 2 {
		it, _ := ws.next(t)
		start[it.node.ID] = it.change
	}
	if start[w.ID()] != mesh.NodeAdded || start[b.ID()] != mesh.NodeAdded {
		t.Fatalf("at the start: %v, want both nodes added", start)
	}

	// Ten changes of w's own set, which its index shows at once, while
	// the consumer is busy: one update, with the last set.
	for i := 1; i <= 10; i++ {
		announceN(i)
	}
	if n := ws.expect(t, "ten changes in a burst", mesh.NodeUpdated, w.ID()); n.Set.Metadata["n"] != "10" {
		t.Errorf("coalesced update has n=%s, want the last, 10", n.Set.Metadata["n"])
	}

	// b leaves, then far more changes than the engine queues for a
	// subscriber: the watch loses events and resyncs from the index.
	dropped := w.Capabilities().Stats().EventsDropped
	b.WithdrawCapabilities()
	eventually(t, watchTimeout, "w to see b leave", func() bool { return len(w.FindNodes(gpu)) == 1 })
	for i := 11; i <= 1000; i++ {
		announceN(i)
	}
	if w.Capabilities().Stats().EventsDropped == dropped {
		t.Fatal("the engine dropped no event: the test did not overflow the watch's queue")
	}
	got := map[mesh.NodeChange]capability.Node{}
	for range 2 {
		it, _ := ws.next(t)
		got[it.change] = it.node
	}
	if n, ok := got[mesh.NodeLeft]; !ok || n.ID != b.ID() {
		t.Errorf("after the resync: %v, want b's leave", got)
	}
	if n, ok := got[mesh.NodeUpdated]; !ok || n.ID != w.ID() || n.Set.Metadata["n"] != "1000" {
		t.Errorf("after the resync: %v, want w's last set (n=1000)", got)
	}
	// Nothing else is pending: the next change is the next one made.
	announceN(1001)
	if n := ws.expect(t, "the change after the resync", mesh.NodeUpdated, w.ID()); n.Set.Metadata["n"] != "1001" {
		t.Errorf("n=%s, want 1001", n.Set.Metadata["n"])
	}
}

// A watch ends when the mesh closes, even with its context still live.
func TestWatchNodesEndsWithMesh(t *testing.T) {
	m := newNode(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range m.WatchNodes(context.Background(), capability.HasTag("never")) {
		}
	}()
	m.Close()
	select {
	case <-done:
	case <-time.After(watchTimeout):
		t.Fatal("the watch did not end when the mesh closed")
	}
}

// A consumer that cancels the watch's context gets no further change,
// however many are pending: the iteration ends with its context.
func TestWatchNodesEndsWithContextWhileChangesPend(t *testing.T) {
	w := newNode(t)
	b := newNode(t)
	announce(t, w, "gpu")
	announce(t, b, "gpu")
	connect(t, b, w, mesh.Pin{})
	gpu := capability.HasTag("gpu")
	eventually(t, watchTimeout, "w to learn b's gpu", func() bool { return len(w.FindNodes(gpu)) == 2 })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []mesh.NodeChange
	for c := range w.WatchNodes(ctx, gpu) {
		got = append(got, c)
		cancel() // the second node's NodeAdded is pending
	}
	if len(got) != 1 {
		t.Fatalf("after its context ended the watch yielded %v, want only the first change", got)
	}
}
