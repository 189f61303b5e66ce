package mesh

import (
	"context"
	"iter"
	"strconv"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// NodeChange says how a node that WatchNodes follows changed.
type NodeChange uint8

// Node changes. A node enters the watched set with NodeAdded, changes
// with NodeUpdated, and leaves it with NodeUnmatched (still known, no
// longer matching), NodeOffline (its announcement ran out) or NodeLeft
// (it withdrew: a graceful leave).
const (
	// NodeAdded: the node matches the filter. It did when the watch began,
	// it entered the index, or its set changed to match.
	NodeAdded NodeChange = iota + 1
	// NodeUpdated: the node still matches, and its set or its status
	// (online, degraded) changed. A refresh that changes neither is not
	// reported.
	NodeUpdated
	// NodeUnmatched: the node is still in the index, but its set no
	// longer matches the filter.
	NodeUnmatched
	// NodeOffline: the node's announcement ran out; it left the index.
	NodeOffline
	// NodeLeft: the node withdrew its announcement, leaving gracefully;
	// it left the index at once.
	NodeLeft
)

// String returns the change's name.
func (c NodeChange) String() string {
	switch c {
	case NodeAdded:
		return "added"
	case NodeUpdated:
		return "updated"
	case NodeUnmatched:
		return "unmatched"
	case NodeOffline:
		return "offline"
	case NodeLeft:
		return "left"
	}
	return "NodeChange(" + strconv.Itoa(int(c)) + ")"
}

// WatchNodes yields the known nodes that match f, this one included (as
// FindNodes finds them), each as NodeAdded, and then every change to that
// set: nodes that come to match (NodeAdded), change (NodeUpdated) or stop
// matching (NodeUnmatched, NodeOffline, NodeLeft). The Node yielded is
// the node after the change; for NodeOffline and NodeLeft it is the last
// state the watch reported, with StatusOffline. Nodes must not be
// modified: their sets are shared with the index. The iteration ends when
// ctx ends, the mesh closes, or the loop breaks.
//
// To wait for a node that matches, take the first NodeAdded and break.
//
// A slow consumer costs a bounded amount of memory: the watch reads the
// capability engine's events (SubscribeNodes) between yields and
// coalesces them per node, so it holds at most one pending change per
// node, and it reports each node's current state, not every step in
// between (a node that left and came back while the consumer was busy
// may show up as one NodeUpdated, or not at all). When the consumer is so
// slow that the engine's bounded event queue overflows, the watch
// re-reads the index and reports the difference from what it last
// reported: it drops and resyncs, and misses nothing but intermediate
// steps. Nothing runs between yields and no goroutine is started.
func (m *Mesh) WatchNodes(ctx context.Context, f capability.Filter) iter.Seq2[NodeChange, capability.Node] {
	return func(yield func(NodeChange, capability.Node) bool) {
		w := nodeWatch{
			caps:   m.caps,
			filter: f,
			sub:    m.caps.Subscribe(0),
			told:   make(map[identity.NodeID]capability.Node),
			queued: make(map[identity.NodeID]struct{}),
		}
		defer w.sub.Close()
		for _, n := range m.caps.Index().FindNodes(f) {
			w.enqueue(n.ID)
		}
		for {
			w.takeReady()
			for len(w.queue) > 0 {
				if ctx.Err() != nil || m.tr.ctx.Err() != nil {
					return // however many changes are left
				}
				if change, n, ok := w.next(); ok {
					if !yield(change, n) {
						return
					}
					w.takeReady()
				}
			}
			select {
			case ev := <-w.sub.C:
				w.note(ev)
			case <-ctx.Done():
				return
			case <-m.tr.ctx.Done():
				return
			}
		}
	}
}

// nodeWatch is the state of one WatchNodes iteration. It is used by the
// iterating goroutine only.
type nodeWatch struct {
	caps    *capability.Engine
	filter  capability.Filter
	sub     *capability.Subscription
	dropped uint64 // sub.Dropped() when last resynced

	// told is what the consumer was told: the matching nodes, as last
	// reported.
	told map[identity.NodeID]capability.Node
	// queue holds, in order of their first event, the nodes whose state
	// may differ from told; queued is the same set, so that a node is in
	// the queue at most once however many events it has.
	queue  []identity.NodeID
	queued map[identity.NodeID]struct{}
}

// takeReady takes the events that are waiting, without blocking, and
// resyncs if the engine dropped some since the last look.
func (w *nodeWatch) takeReady() {
	for {
		select {
		case ev := <-w.sub.C:
			w.note(ev)
			continue
		default:
		}
		break
	}
	if d := w.sub.Dropped(); d != w.dropped {
		w.dropped = d
		w.resync()
	}
}

// note queues the node of ev if the event can change what the consumer
// was told: a node it was told of, or one that matches now.
func (w *nodeWatch) note(ev capability.Event) {
	id := ev.Node.ID
	if _, ok := w.told[id]; ok {
		w.enqueue(id)
		return
	}
	switch ev.Kind {
	case capability.NodeRegistered, capability.NodeUpdated:
		if w.filter.Match(ev.Node) {
			w.enqueue(id)
		}
	}
	// Nodes the queue names that are no longer live cost a lookup each
	// when they come up. A consumer slower than a churn of new nodes
	// would let them pile up, so past twice the nodes that can matter
	// the queue is rebuilt from the index.
	if len(w.queue) > 2*(len(w.told)+w.caps.Index().Len()) {
		w.resync()
	}
}

// resync queues every node the consumer was told of and every node that
// matches now, dropping the rest of the queue: the next changes are the
// difference between told and the index.
func (w *nodeWatch) resync() {
	w.queue = w.queue[:0]
	clear(w.queued)
	for id := range w.told {
		w.enqueue(id)
	}
	for _, n := range w.caps.Index().FindNodes(w.filter) {
		w.enqueue(n.ID)
	}
}

func (w *nodeWatch) enqueue(id identity.NodeID) {
	if _, ok := w.queued[id]; !ok {
		w.queued[id] = struct{}{}
		w.queue = append(w.queue, id)
	}
}

// next takes the first queued node and returns its change since the
// consumer was last told of it, if any, recording it as told.
func (w *nodeWatch) next() (NodeChange, capability.Node, bool) {
	id := w.queue[0]
	w.queue[0] = identity.NodeID{}
	w.queue = w.queue[1:]
	delete(w.queued, id)
	if len(w.queue) == 0 {
		w.queue = nil // let the array go once it drained
	}
	cur, live := w.caps.Index().Lookup(id)
	match := live && w.filter.Match(cur)
	old, told := w.told[id]
	switch {
	case match && !told:
		w.told[id] = cur
		return NodeAdded, cur, true
	case match:
		w.told[id] = cur
		if old.Status != cur.Status || !old.Set.Equal(cur.Set) {
			return NodeUpdated, cur, true
		}
		return 0, capability.Node{}, false
	case !told:
		return 0, capability.Node{}, false
	}
	delete(w.told, id)
	if live {
		return NodeUnmatched, cur, true
	}
	change := NodeOffline
	if kind, ok := w.caps.Departure(id); ok && kind == capability.NodeLeft {
		change = NodeLeft
	}
	old.Status = capability.StatusOffline
	return change, old, true
}
