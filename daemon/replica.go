package daemon

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// ReplicaOptions configures a replica group.
type ReplicaOptions struct {
	// N is the number of replicas, 1 to 64, each on its own node.
	N int
	// Where narrows their placement.
	Where capability.Filter
	// Seed is the group's 32-byte seed: replica i's identity derives from
	// it and i, so a group made again with the same seed has the same
	// ids. Nil means a random seed.
	Seed []byte
}

// ReplicaGroup is N interchangeable daemons of one kind on distinct
// nodes. Deliver sends each event to one healthy replica, the one with
// the fewest of this group's events in flight; a replica whose node goes
// down is started again (same identity, empty state) on another node
// that meets the requirements. The runtime that made the group watches
// its members' nodes until Close.
type ReplicaGroup struct {
	groupBase
	kind  string
	where capability.Filter

	mu       sync.Mutex // guards the members' node and health, respawns, next
	members  []*replica
	respawns int
	next     int // where pick starts looking: ties go round the members
}

// replica is one member of a replica group.
type replica struct {
	index    int
	key      *identity.Identity
	id       ID
	node     identity.NodeID
	healthy  bool
	inflight atomic.Int32
}

// replicaKey derives replica i's key from the group seed:
// HKDF-SHA256(seed, info "netmesh daemon replica v1" || i as 4 bytes).
func replicaKey(seed []byte, i int) (*identity.Identity, error) {
	info := binary.BigEndian.AppendUint32([]byte("netmesh daemon replica v1"), uint32(i))
	k, err := hkdf.Key(sha256.New, seed, nil, string(info), 32)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	return identity.FromSeed(k)
}

// NewReplicaGroup starts opts.N replicas of kind, each placed on a node
// none of the others is on, and watches their nodes. This node owns
// them. If a replica cannot be placed, the ones started are stopped and
// the error says why.
func (rt *Runtime) NewReplicaGroup(ctx context.Context, kind string, opts ReplicaOptions) (*ReplicaGroup, error) {
	if opts.N < 1 || opts.N > maxReplicas {
		return nil, &Error{Code: CodeInvalid, Kind: kind, Message: fmt.Sprintf("%d replicas: 1 to %d", opts.N, maxReplicas)}
	}
	seed := opts.Seed
	if seed == nil {
		seed = make([]byte, 32)
		rand.Read(seed)
	} else if len(seed) != 32 {
		return nil, &Error{Code: CodeInvalid, Kind: kind, Message: "the seed must be 32 bytes"}
	}
	g := &ReplicaGroup{kind: kind, where: opts.Where}
	g.rt = rt
	for i := range opts.N {
		key, err := replicaKey(seed, i)
		if err != nil {
			return nil, err
		}
		m := &replica{index: i, key: key, id: idOf(key)}
		if err := g.place(ctx, m, nil); err != nil {
			g.stopAll(ctx)
			return nil, err
		}
		g.members = append(g.members, m)
	}
	if !g.watch(rt, g.down) {
		g.stopAll(ctx)
		return nil, ErrClosed
	}
	return g, nil
}

// place starts replica m on a node none of the healthy members is on,
// nor any in also.
func (g *ReplicaGroup) place(ctx context.Context, m *replica, also []identity.NodeID) error {
	g.mu.Lock()
	exclude := append([]identity.NodeID(nil), also...)
	for _, o := range g.members {
		if o != m && o.healthy {
			exclude = append(exclude, o.node)
		}
	}
	g.mu.Unlock()
	loc, err := g.rt.place(ctx, g.kind, SpawnOptions{Where: g.where, Exclude: exclude}, func(ctx context.Context, node identity.NodeID) (ID, error) {
		return g.rt.install(ctx, node, &prepareReq{Mode: modeSpawn, Kind: g.kind, Owner: g.rt.self}, m.key, nil)
	})
	if err != nil {
		return err
	}
	g.mu.Lock()
	m.node, m.healthy = loc.Node, true
	g.mu.Unlock()
	g.rt.routes.learn(m.id, loc.Node)
	return nil
}

// down starts again, elsewhere, the replicas that were on node.
func (g *ReplicaGroup) down(node identity.NodeID) {
	g.mu.Lock()
	var lost []*replica
	for _, m := range g.members {
		if m.node == node && m.healthy {
			m.healthy = false
			lost = append(lost, m)
		}
	}
	g.mu.Unlock()
	for _, m := range lost {
		ctx, cancel := g.callCtx()
		err := g.place(ctx, m, []identity.NodeID{node})
		cancel()
		if err != nil {
			g.rt.log.Warn("daemon: a replica could not be started again", "daemon", m.id, "err", err)
			continue
		}
		g.rt.counters.respawns.Add(1)
		g.mu.Lock()
		g.respawns++
		g.mu.Unlock()
	}
}

// Deliver sends event to one healthy replica (see ReplicaGroup); if that
// replica cannot be reached it tries the next. A replica that failed
// during the delivery may have applied the event before another did.
func (g *ReplicaGroup) Deliver(ctx context.Context, event []byte) (Receipt, error) {
	tried := map[*replica]bool{}
	var last error = &Error{Code: CodeUnreachable, Message: "no healthy replica"}
	for {
		m := g.pick(tried)
		if m == nil {
			return Receipt{}, last
		}
		tried[m] = true
		m.inflight.Add(1)
		r, err := g.rt.Deliver(ctx, m.id, event)
		m.inflight.Add(-1)
		if err == nil || !(errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNotFound)) || ctx.Err() != nil {
			return r, err
		}
		last = err
	}
}

// pick returns the healthy replica not in tried with the fewest events
// in flight (ties in turn), or nil.
func (g *ReplicaGroup) pick(tried map[*replica]bool) *replica {
	g.mu.Lock()
	defer g.mu.Unlock()
	var best *replica
	g.next++
	for i := range g.members {
		m := g.members[(g.next+i)%len(g.members)]
		if !m.healthy || tried[m] || !g.rt.nodeUp(m.node) {
			continue
		}
		if best == nil || m.inflight.Load() < best.inflight.Load() {
			best = m
		}
	}
	return best
}

// IDs returns the replicas' ids, by index.
func (g *ReplicaGroup) IDs() []ID {
	out := make([]ID, len(g.members))
	for i, m := range g.members {
		out[i] = m.id
	}
	return out
}

// State asks each replica how it is.
func (g *ReplicaGroup) State(ctx context.Context) GroupState {
	g.mu.Lock()
	st := GroupState{Type: "replica", Kind: g.kind, Respawns: g.respawns}
	for _, m := range g.members {
		st.Members = append(st.Members, MemberState{Index: m.index, Daemon: m.id, Node: m.node, Role: "replica", Healthy: m.healthy})
	}
	g.mu.Unlock()
	for i := range st.Members {
		ms := &st.Members[i]
		if !ms.Healthy {
			ms.Error = "its node went down; no other node took it"
			continue
		}
		info, err := g.rt.Stats(ctx, ms.Daemon)
		if err != nil {
			ms.Healthy, ms.Error = false, err.Error()
			continue
		}
		ms.Seq, ms.Node = info.Seq, info.Node
	}
	return st
}

// Close stops watching the replicas' nodes; the replicas keep running.
func (g *ReplicaGroup) Close() { g.close() }

// Stop stops every replica and stops watching.
func (g *ReplicaGroup) Stop(ctx context.Context) error {
	g.close()
	return g.stopAll(ctx)
}

func (g *ReplicaGroup) stopAll(ctx context.Context) error {
	var errs []error
	for _, m := range g.members {
		if !m.healthy {
			continue
		}
		if _, err := g.rt.Stop(ctx, m.id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
