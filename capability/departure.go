package capability

import "github.com/netmesh/netmesh/identity"

// Departure reports why node id is not in the index: NodeLeft if the
// newest announcement this engine holds from it is a withdrawal (this
// node's own entry leaves only that way), NodeOffline if its announcement
// ran out. ok is false while the node is live, and for a node this engine
// does not remember: never heard of, or forgotten to make room for others
// (see Config.MaxNodes), and for this node before its first announcement.
//
// A consumer that lost events (Subscription.Dropped) and re-reads the
// index learns from it how each node it knew of went away.
func (e *Engine) Departure(id identity.NodeID) (kind EventKind, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if id == e.id.NodeID() {
		if e.local.version == 0 || e.ix.get(id) != nil {
			return 0, false
		}
		return NodeLeft, true
	}
	rec := e.records[id]
	switch {
	case rec == nil || rec.live:
		return 0, false
	case rec.left:
		return NodeLeft, true
	}
	return NodeOffline, true
}
