package mesh

import (
	"context"
	"iter"
	"sync"

	"github.com/netmesh/netmesh/identity"
)

// PeerEvent reports a peer coming up (its first session is established)
// or going down (it left, its session expired, it went silent, it
// restarted, or the mesh closed).
type PeerEvent struct {
	Peer identity.NodeID
	Up   bool
	// Reason says why a peer went down, in a few words ("the peer left"
	// when it said goodbye); empty when it came up.
	Reason string
}

// watchers are the WatchPeers readers, under a lock of their own.
type watchers struct {
	mu      sync.Mutex
	set     map[*watcher]struct{}
	stopped bool // the mesh closed: no new watcher
}

type watcher struct {
	ch chan PeerEvent
}

func (ws *watchers) init() { ws.set = make(map[*watcher]struct{}) }

// add registers a new watcher; after stopAll it returns one already
// stopped.
func (ws *watchers) add() *watcher {
	w := &watcher{ch: make(chan PeerEvent, watcherQueue)}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.stopped {
		close(w.ch)
	} else {
		ws.set[w] = struct{}{}
	}
	return w
}

// stop unregisters w and ends its events.
func (ws *watchers) stop(w *watcher) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if _, ok := ws.set[w]; ok {
		delete(ws.set, w)
		close(w.ch)
	}
}

// stopAll stops every watcher, for good.
func (ws *watchers) stopAll() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.stopped = true
	for w := range ws.set {
		delete(ws.set, w)
		close(w.ch)
	}
}

// notify sends ev to every watcher that has room for it and returns how
// many had not.
func (ws *watchers) notify(ev PeerEvent) (dropped int) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.set {
		select {
		case w.ch <- ev:
		default:
			dropped++
		}
	}
	return dropped
}

// WatchPeers returns the peer events from now until ctx ends or the mesh
// closes. A watcher that falls more than 64 events behind loses events
// rather than stalling the node; Stats.PeerEventsDropped counts them.
func (m *Mesh) WatchPeers(ctx context.Context) iter.Seq[PeerEvent] {
	w := m.watchers.add()
	stop := context.AfterFunc(ctx, func() { m.watchers.stop(w) })
	return func(yield func(PeerEvent) bool) {
		defer func() {
			stop()
			m.watchers.stop(w)
		}()
		for ev := range w.ch {
			if !yield(ev) {
				return
			}
		}
	}
}

// peerEvent tells the watchers and the engines that p came up or went
// down. The transport calls it with hs.mu held; the engines hear of it on
// the engine loop, outside any lock, since they call back into the mesh.
func (m *Mesh) peerEvent(p *Peer, up bool) {
	ev := PeerEvent{Peer: p.id, Up: up}
	if why := p.downWhy.Load(); !up && why != nil {
		ev.Reason = *why
	}
	m.notifyWatchers(ev)
	select {
	case m.peerChanges <- peerChange{p.id, up}:
	default:
		m.tr.stats.drop(DropQueueFull)
	}
}

// notifyWatchers sends ev to every watcher and counts those it missed.
func (m *Mesh) notifyWatchers(ev PeerEvent) {
	if n := m.watchers.notify(ev); n > 0 {
		m.tr.stats.peerEventsDropped.Add(uint64(n))
	}
}

// Peer returns the peer with id, or nil if the node never had a session
// with it.
func (m *Mesh) Peer(id identity.NodeID) *Peer { return m.tr.peers.get(id) }

// Peers returns every peer the node knows, up or not.
func (m *Mesh) Peers() []*Peer { return m.tr.peers.all() }
