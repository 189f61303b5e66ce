package daemon

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// Standbys. An active daemon's standbys are copies of it on other nodes:
// each holds a snapshot (with the daemon's key, sealed to it in transit)
// and the events the active applied since, which the active ships to
// every standby before it answers their senders. SyncStandbys sends a
// fresh snapshot and empties the buffers. When the active's node dies
// the standby group promotes the standby holding the most events: it
// restores the snapshot, replays the buffer (Event.Replay) and serves,
// under the same id, so senders find it. No event the active answered is
// lost while one standby that held it survives.

// StandbyOptions configures a standby group.
type StandbyOptions struct {
	// Standbys is the number of standbys, 1 to 8, each on its own node,
	// none on the active's.
	Standbys int
	// Where narrows the placement of the active and the standbys.
	Where capability.Filter
	// Active places the active on that node; zero places it.
	Active identity.NodeID
}

// StandbyGroup is one active daemon and its standbys. The runtime that
// made it watches the active's node until Close, and promotes a standby
// when it goes down.
type StandbyGroup struct {
	groupBase
	kind  string
	where capability.Filter
	id    ID

	syncMu sync.Mutex // serialises SyncStandbys and failovers

	mu        sync.Mutex // guards the fields below
	active    identity.NodeID
	standbys  []identity.NodeID
	failovers int
}

// NewStandbyGroup spawns a daemon of kind, places opts.Standbys standbys
// on other nodes, syncs them, and watches the active's node. This node
// owns the daemon.
func (rt *Runtime) NewStandbyGroup(ctx context.Context, kind string, opts StandbyOptions) (*StandbyGroup, error) {
	if opts.Standbys < 1 || opts.Standbys > maxStandbys {
		return nil, &Error{Code: CodeInvalid, Kind: kind, Message: fmt.Sprintf("%d standbys: 1 to %d", opts.Standbys, maxStandbys)}
	}
	loc, err := rt.Spawn(ctx, kind, SpawnOptions{Node: opts.Active, Where: opts.Where})
	if err != nil {
		return nil, err
	}
	g := &StandbyGroup{kind: kind, where: opts.Where, id: loc.Daemon, active: loc.Node}
	g.rt = rt
	f := capability.AllOf(capability.HasTag(KindTagPrefix+kind), opts.Where)
	if k := rt.kind(kind); k != nil {
		f = capability.AllOf(f, k.Requires)
	}
	for _, c := range rt.placer.Rank(f, capability.Filter{}, []identity.NodeID{loc.Node}) {
		if len(g.standbys) == opts.Standbys {
			break
		}
		g.standbys = append(g.standbys, c.ID)
	}
	if len(g.standbys) < opts.Standbys {
		rt.Stop(ctx, g.id)
		return nil, &Error{Code: CodePlacementFailed, Kind: kind, Message: fmt.Sprintf("%d nodes for %d standbys", len(g.standbys), opts.Standbys)}
	}
	if err := g.SyncStandbys(ctx); err != nil {
		rt.Stop(ctx, g.id)
		return nil, err
	}
	if !g.watch(rt, g.down) {
		rt.Stop(ctx, g.id)
		return nil, ErrClosed
	}
	return g, nil
}

// ID returns the daemon's id: the same on the active and, after a
// promotion, on the standby that took over.
func (g *StandbyGroup) ID() ID { return g.id }

// Active returns the node of the active daemon.
func (g *StandbyGroup) Active() identity.NodeID {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.active
}

// Deliver sends event to the active daemon.
func (g *StandbyGroup) Deliver(ctx context.Context, event []byte) (Receipt, error) {
	return g.rt.Deliver(ctx, g.id, event)
}

// SyncStandbys has the active send a fresh snapshot to each standby; the
// standbys then hold it and the events applied after it. A standby that
// cannot take it leaves the group. It fails if none is left.
func (g *StandbyGroup) SyncStandbys(ctx context.Context) error {
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	return g.syncLocked(ctx)
}

func (g *StandbyGroup) syncLocked(ctx context.Context) error {
	g.mu.Lock()
	active, nodes := g.active, slices.Clone(g.standbys)
	g.mu.Unlock()
	var synced []identity.NodeID
	var err error
	if in := g.rt.hosted(g.id); in != nil && active == g.rt.self {
		synced, err = g.rt.syncLocal(ctx, in, nodes)
	} else {
		var resp []byte
		if resp, err = g.rt.call(ctx, active, appendNodes(nil, opSync, g.id, nodes)); err == nil {
			_, synced, err = parseNodes(resp[min(len(resp), 1):])
		}
	}
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.standbys = synced
	g.mu.Unlock()
	if len(synced) == 0 {
		return &Error{Code: CodeUnreachable, Daemon: g.id, Message: "no standby took the snapshot"}
	}
	return nil
}

// down promotes a standby when the active's node went down, and drops a
// standby whose node went down.
func (g *StandbyGroup) down(node identity.NodeID) {
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	g.mu.Lock()
	active := g.active
	if i := slices.Index(g.standbys, node); i >= 0 {
		g.standbys = slices.Delete(g.standbys, i, i+1)
	}
	g.mu.Unlock()
	if node != active {
		return
	}
	ctx, cancel := g.callCtx()
	defer cancel()
	if err := g.failover(ctx); err != nil {
		g.rt.log.Error("daemon: standby promotion failed", "daemon", g.id, "err", err)
	}
}

// failover promotes the standby holding the most events, then syncs the
// others to it.
func (g *StandbyGroup) failover(ctx context.Context) error {
	g.mu.Lock()
	nodes := slices.Clone(g.standbys)
	g.mu.Unlock()
	var best identity.NodeID
	var bestSeq uint64
	for _, n := range nodes {
		resp, err := g.rt.xferCall(ctx, n, appendRequest(nil, opHeld, g.id))
		if err != nil {
			continue
		}
		if seq, err := parseUvarint(resp); err == nil && (best.IsZero() || seq > bestSeq) {
			best, bestSeq = n, seq
		}
	}
	if best.IsZero() {
		return &Error{Code: CodeUnreachable, Daemon: g.id, Message: "no standby answered"}
	}
	if _, err := g.rt.xferCall(ctx, best, appendRequest(nil, opPromote, g.id)); err != nil {
		return err
	}
	g.rt.routes.learn(g.id, best)
	g.rt.counters.failovers.Add(1)
	g.mu.Lock()
	g.active, g.failovers = best, g.failovers+1
	g.standbys = slices.DeleteFunc(g.standbys, func(n identity.NodeID) bool { return n == best })
	rest := len(g.standbys)
	g.mu.Unlock()
	if rest == 0 {
		return nil
	}
	return g.syncLocked(ctx)
}

// State asks the active and each standby how they are.
func (g *StandbyGroup) State(ctx context.Context) GroupState {
	g.mu.Lock()
	st := GroupState{Type: "standby", Kind: g.kind, Failovers: g.failovers}
	st.Members = append(st.Members, MemberState{Daemon: g.id, Node: g.active, Role: "active"})
	for i, n := range g.standbys {
		st.Members = append(st.Members, MemberState{Index: i + 1, Daemon: g.id, Node: n, Role: "standby"})
	}
	g.mu.Unlock()
	for i := range st.Members {
		ms := &st.Members[i]
		if ms.Role == "active" {
			info, err := g.rt.Stats(ctx, g.id)
			if err == nil {
				ms.Healthy, ms.Seq, ms.Node = true, info.Seq, info.Node
			} else {
				ms.Error = err.Error()
			}
			continue
		}
		resp, err := g.rt.xferCall(ctx, ms.Node, appendRequest(nil, opHeld, g.id))
		if err == nil {
			ms.Seq, err = parseUvarint(resp)
		}
		if err == nil {
			ms.Healthy = true
		} else {
			ms.Error = err.Error()
		}
	}
	return st
}

// Close stops watching the active's node; the daemon and its standbys
// stay.
func (g *StandbyGroup) Close() { g.close() }

// syncLocal sends a snapshot of a daemon hosted here to each node as a
// standby, then ships to those that took it the events applied since,
// and from then on every event before it is answered. It returns the
// nodes that hold a standby now.
func (rt *Runtime) syncLocal(ctx context.Context, in *instance, nodes []identity.NodeID) ([]identity.NodeID, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.MigrationTimeout)
	defer cancel()
	in.mu.Lock()
	if in.state != stRunning || in.phase != 0 || in.syncing {
		in.mu.Unlock()
		return nil, &Error{Code: CodeBusy, Daemon: in.id, Node: rt.self, Message: "the daemon is migrating or syncing"}
	}
	in.syncing = true
	in.mu.Unlock()
	defer func() {
		in.mu.Lock()
		in.syncing = false
		in.mu.Unlock()
	}()
	var table, state []byte
	var seq uint64
	var e *Error
	if !in.do(func() {
		if state, seq, e = in.takeState(); e == nil {
			table = appendImage(nil, in.senders, nil)
			in.log = &replayLog{max: rt.cfg.MaxReplayLog}
		}
	}) {
		return nil, &Error{Code: CodeNotFound, Daemon: in.id, Node: rt.self}
	}
	if e != nil {
		return nil, e
	}
	im := image{table, state}
	took := make([]bool, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			_, err := rt.install(ctx, n, &prepareReq{Mode: modeStandby, Kind: in.kind.Name, Owner: in.owner, Seq: seq, Fork: in.fork}, in.key, im)
			if err != nil {
				rt.log.Warn("daemon: a standby did not take the snapshot", "daemon", in.id, "node", n, "err", err)
			}
			took[i] = err == nil
		})
	}
	wg.Wait()
	var ok []identity.NodeID
	for i, n := range nodes {
		if took[i] {
			ok = append(ok, n)
		}
	}
	in.do(func() {
		es, overflow := in.log.entries, in.log.overflow
		in.log = nil
		if overflow {
			ok = nil
			e = &Error{Code: CodeLimitExceeded, Daemon: in.id, Message: fmt.Sprintf("more than %d events during the sync", rt.cfg.MaxReplayLog)}
		}
		sh := &standbyShip{rt: rt, nodes: ok}
		sh.ship(in, es)
		ok = sh.nodes
		in.ship = nil
		if len(ok) > 0 {
			in.ship = sh
		}
		in.mu.Lock()
		in.standbys = ok
		in.mu.Unlock()
	})
	if e != nil {
		return nil, e
	}
	return ok, nil
}

// standbyShip is the set of standbys an active ships its events to. It
// belongs to the daemon's goroutine.
type standbyShip struct {
	rt    *Runtime
	nodes []identity.NodeID
}

// send ships the events of a batch the daemon applied (not the resends
// it skipped) to every standby, before their senders are answered.
func (sh *standbyShip) send(in *instance, batch []*pending, rs []wireReceipt) {
	es := make([]entry, 0, len(batch))
	for i, p := range batch {
		if rs[i].Seq != 0 {
			e := p.e
			e.Seq = rs[i].Seq
			es = append(es, e)
		}
	}
	if len(es) > 0 {
		sh.ship(in, es)
	}
}

// ship sends es to every standby, as many calls as they need.
func (sh *standbyShip) ship(in *instance, es []entry) {
	for len(es) > 0 && len(sh.nodes) > 0 {
		n := batchLen(es, replayBatch)
		sh.shipBatch(in, es[:n])
		es = es[n:]
	}
}

// shipBatch sends one batch to every standby at once; a standby that
// fails leaves the set (its buffer has a gap now: it needs a sync).
func (sh *standbyShip) shipBatch(in *instance, es []entry) {
	req := appendEntries(nil, opStandby, in.id, es, 0)
	failed := make([]bool, len(sh.nodes))
	var wg sync.WaitGroup
	for i, n := range sh.nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(sh.rt.ctx, min(sh.rt.cfg.CallTimeout, shipTimeout))
			defer cancel()
			if _, err := sh.rt.call(ctx, n, req); err != nil {
				sh.rt.log.Warn("daemon: a standby missed events and leaves the set", "daemon", in.id, "node", n, "err", err)
				failed[i] = true
			}
		})
	}
	wg.Wait()
	var keep []identity.NodeID
	for i, n := range sh.nodes {
		if !failed[i] {
			keep = append(keep, n)
		}
	}
	if len(keep) == len(sh.nodes) {
		return
	}
	sh.nodes = keep
	in.mu.Lock()
	in.standbys = slices.Clone(keep)
	in.mu.Unlock()
	if len(keep) == 0 {
		in.ship = nil
	}
}

// standbyCopy is a standby held here: the snapshot, the key, and the
// events its active applied since.
type standbyCopy struct {
	id     ID
	kind   *Kind
	key    *identity.Identity
	owner  identity.NodeID
	fork   *ForkRecord
	active identity.NodeID // the node that installed it: only it ships events

	mu    sync.Mutex // guards the fields below
	seq   uint64     // of the snapshot
	image []byte
	log   []entry
}

// held returns the sequence number of the last event the copy holds.
func (c *standbyCopy) held() uint64 { return c.seq + uint64(len(c.log)) }

// holdStandby keeps a transfer's image as a standby, replacing the one
// held for the daemon before. x.mu is held.
func (rt *Runtime) holdStandby(x *incoming) *Error {
	c := &standbyCopy{id: x.id, kind: x.kind, key: x.key, owner: x.owner, fork: x.fork, active: x.from, seq: x.seq, image: x.image}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.incoming[x.xfer] != x {
		return &Error{Code: CodeAborted, Message: "transfer dropped"}
	}
	delete(rt.incoming, x.xfer)
	if rt.daemons[x.id] != nil {
		return &Error{Code: CodeBusy, Daemon: x.id, Node: rt.self, Message: "the daemon runs here"}
	}
	rt.standbys[x.id] = c
	rt.markDirtyLocked()
	return nil
}

// standby returns the standby of id held here.
func (rt *Runtime) standby(id ID) *standbyCopy {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.standbys[id]
}

// handleStandbyLog appends the events an active shipped to its standby.
func (rt *Runtime) handleStandbyLog(from identity.NodeID, body []byte) ([]byte, error) {
	id, es, _, err := parseEntries(opStandby, body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	c := rt.standby(id)
	if c == nil || c.active != from {
		return nil, &Error{Code: CodeNotFound, Daemon: id, Node: rt.self, Message: "no standby of the daemon for this node"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case len(es) > 0 && es[0].Seq != c.held()+1:
		return nil, &Error{Code: CodeInvalid, Daemon: id, Message: fmt.Sprintf("events from %d, the standby holds %d", es[0].Seq, c.held())}
	case len(c.log)+len(es) > rt.cfg.MaxReplayLog:
		return nil, &Error{Code: CodeLimitExceeded, Daemon: id, Message: fmt.Sprintf("more than %d events since the last sync", rt.cfg.MaxReplayLog)}
	}
	c.log = append(c.log, es...)
	return appendUvarint(nil, c.held()), nil
}

// ownedStandby returns the standby a request that names its daemon alone
// (held, promote) is about, if from is its owner or this node.
func (rt *Runtime) ownedStandby(from identity.NodeID, body []byte) (*standbyCopy, error) {
	id, err := parseID(body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	c := rt.standby(id)
	switch {
	case c == nil:
		return nil, &Error{Code: CodeNotFound, Daemon: id, Node: rt.self, Message: "no standby of the daemon"}
	case from != c.owner && from != rt.self:
		return nil, &Error{Code: CodeNotOwner, Daemon: id, Node: rt.self}
	}
	return c, nil
}

// handleHeld answers the sequence number a standby holds, to its owner.
func (rt *Runtime) handleHeld(from identity.NodeID, body []byte) ([]byte, error) {
	c, err := rt.ownedStandby(from, body)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return appendUvarint(nil, c.held()), nil
}

// handlePromote makes a standby the active: it restores the snapshot,
// replays the events held, and serves.
func (rt *Runtime) handlePromote(from identity.NodeID, body []byte) ([]byte, error) {
	c, err := rt.ownedStandby(from, body)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	in, e := rt.build(c.kind, c.key, false, c.owner, c.seq, c.image, c.fork)
	if e != nil {
		return nil, e
	}
	for _, x := range c.log {
		in.applyOne(x, true)
	}
	rt.mu.Lock()
	if rt.standbys[c.id] == c {
		delete(rt.standbys, c.id)
	}
	e = rt.hostLocked(in)
	rt.mu.Unlock()
	if e != nil {
		return nil, e
	}
	rt.counters.promoted.Add(1)
	return appendUvarint(nil, in.seq.Load()), nil
}

// handleSync syncs the standbys of a daemon hosted here, for its owner.
func (rt *Runtime) handleSync(ctx context.Context, from identity.NodeID, body []byte) ([]byte, error) {
	id, nodes, err := parseNodes(body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	in, e := rt.owned(id, from)
	if e != nil {
		return nil, e
	}
	ok, err := rt.syncLocal(ctx, in, nodes)
	if err != nil {
		return nil, err
	}
	return appendNodes(nil, opSync, id, ok), nil
}
