package mesh

import (
	"context"
	"iter"

	"github.com/netmesh/netmesh/identity"
)

// PeerEvent reports a peer coming up (its first session is established)
// or going down (its session expired, it went silent and did not answer a
// new handshake, or the mesh closed).
type PeerEvent struct {
	Peer identity.NodeID
	Up   bool
}

type watcher struct {
	ch chan PeerEvent
}

// WatchPeers returns the peer events from now until ctx ends or the mesh
// closes. A watcher that falls more than 64 events behind loses events
// rather than stalling the node; Stats.PeerEventsDropped counts them.
func (m *Mesh) WatchPeers(ctx context.Context) iter.Seq[PeerEvent] {
	w := &watcher{ch: make(chan PeerEvent, watcherQueue)}
	m.mu.Lock()
	if m.closed.Load() {
		close(w.ch)
	} else {
		m.watchers[w] = struct{}{}
	}
	m.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.stopWatcherLocked(w)
		m.mu.Unlock()
	})
	return func(yield func(PeerEvent) bool) {
		defer func() {
			stop()
			m.mu.Lock()
			m.stopWatcherLocked(w)
			m.mu.Unlock()
		}()
		for ev := range w.ch {
			if !yield(ev) {
				return
			}
		}
	}
}

func (m *Mesh) stopWatcherLocked(w *watcher) {
	if _, ok := m.watchers[w]; ok {
		delete(m.watchers, w)
		close(w.ch)
	}
}

func (m *Mesh) notifyLocked(ev PeerEvent) {
	for w := range m.watchers {
		select {
		case w.ch <- ev:
		default:
			m.stats.peerEventsDropped.Add(1)
		}
	}
}

// Peer returns the peer with id, or nil if the node never had a session
// with it.
func (m *Mesh) Peer(id identity.NodeID) *Peer {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.peers[id]
}

// Peers returns every peer the node knows, up or not.
func (m *Mesh) Peers() []*Peer {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Peer, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p)
	}
	return out
}
