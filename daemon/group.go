package daemon

import (
	"context"

	"github.com/netmesh/netmesh/identity"
)

// GroupState is what a group's coordinator (the runtime that made it)
// knows of its members, asked of them when State is called.
type GroupState struct {
	// Type is "replica" or "standby".
	Type    string        `json:"type"`
	Kind    string        `json:"kind"`
	Members []MemberState `json:"members"`
	// Respawns counts replicas started again after their node died;
	// Failovers counts standby promotions.
	Respawns  int `json:"respawns,omitempty"`
	Failovers int `json:"failovers,omitempty"`
}

// MemberState is one member of a group.
type MemberState struct {
	Index  int             `json:"index"`
	Daemon ID              `json:"daemon"`
	Node   identity.NodeID `json:"node"`
	// Role is "replica", "active" or "standby".
	Role string `json:"role"`
	// Healthy is true when the member answered: the active or replica
	// runs, the standby holds a snapshot.
	Healthy bool `json:"healthy"`
	// Seq is the member's sequence number: the last applied (active,
	// replica) or the last held (standby).
	Seq uint64 `json:"seq"`
	// Error says why the member is not healthy.
	Error string `json:"error,omitempty"`
}

// groupBase is the part of a group that watches its members' nodes: one
// goroutine per group, until Close or the runtime's Close.
type groupBase struct {
	rt     *Runtime
	ctx    context.Context // ends at close, or the runtime's Close
	cancel context.CancelFunc
	done   chan struct{}
}

// watch starts the goroutine that calls down for each peer whose session
// goes down. It returns false if the runtime is closed.
func (g *groupBase) watch(rt *Runtime, down func(identity.NodeID)) bool {
	g.rt = rt
	ctx, cancel := context.WithCancel(rt.ctx)
	g.ctx, g.cancel, g.done = ctx, cancel, make(chan struct{})
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		cancel()
		close(g.done)
		return false
	}
	rt.groups[g] = struct{}{}
	rt.wg.Add(1)
	rt.mu.Unlock()
	go func() {
		defer rt.wg.Done()
		defer close(g.done)
		for ev := range rt.m.WatchPeers(ctx) {
			if !ev.Up {
				down(ev.Peer)
			}
		}
	}()
	return true
}

// close stops watching; it is idempotent.
func (g *groupBase) close() {
	if g.cancel == nil {
		return
	}
	g.cancel()
	<-g.done
	g.rt.mu.Lock()
	delete(g.rt.groups, g)
	g.rt.mu.Unlock()
}

// callCtx returns a context for the group's own work after a node went
// down: it ends with the group, or after MigrationTimeout.
func (g *groupBase) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(g.ctx, g.rt.cfg.MigrationTimeout)
}

// nodeUp reports whether node is this one or a peer with a session up.
func (rt *Runtime) nodeUp(node identity.NodeID) bool {
	if node == rt.self {
		return true
	}
	p := rt.m.Peer(node)
	return p != nil && p.IsUp()
}
