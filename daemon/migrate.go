package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// MigrationReport says how a migration went.
type MigrationReport struct {
	Daemon ID              `json:"daemon"`
	From   identity.NodeID `json:"from"`
	To     identity.NodeID `json:"to"`
	// Phases are the phases run, with how long each took.
	Phases []PhaseTime `json:"phases"`
	// SnapshotSeq is the sequence number the snapshot included, and
	// CutoverSeq the one the target held at cutover.
	SnapshotSeq uint64 `json:"snapshot_seq"`
	CutoverSeq  uint64 `json:"cutover_seq"`
	// StateBytes is the size of the image sent (state and sender table).
	StateBytes int `json:"state_bytes"`
	// Replayed counts the events the source applied during the move and
	// the target replayed; Handed those that waited through the cutover
	// and were applied on the target.
	Replayed int `json:"replayed"`
	Handed   int `json:"handed"`
	// Frozen is how long events waited: from the source's last applied
	// event to the waiting events handed to the target.
	Frozen time.Duration `json:"frozen"`
	// Total is the migration's whole duration.
	Total time.Duration `json:"total"`
}

// PhaseTime is one phase of a migration and its duration.
type PhaseTime struct {
	Phase    Phase         `json:"phase"`
	Duration time.Duration `json:"duration"`
}

// MigrateOption configures one Migrate.
type MigrateOption func(*migrateConfig)

type migrateConfig struct {
	onPhase func(Phase)
}

// OnPhase has f called as each phase begins, on the goroutine of
// Migrate. It is honoured when the daemon runs on this node; a migration
// this node asks of another host reports its phases in the report only.
func OnPhase(f func(Phase)) MigrateOption {
	return func(c *migrateConfig) { c.onPhase = f }
}

// side is the side of a migration a test hook runs on.
type side uint8

const (
	sideSource side = iota + 1
	sideTarget
)

// hookErr returns the failure a test injects at phase, or nil.
func (rt *Runtime) hookErr(s side, p Phase) error {
	if h := rt.hook.Load(); h != nil {
		return (*h)(s, p)
	}
	return nil
}

// Migrate moves daemon id to node target while events keep flowing to
// it, and returns once the target serves it. Only its owner or host may
// move it (NOT_OWNER); a daemon hosted elsewhere is moved by its host,
// asked by this runtime.
//
// The daemon keeps applying events on the source while its snapshot
// travels and is restored: the source logs them and the target replays
// them (Event.Replay). Then the source stops applying (events wait in
// its inbox), sends the last logged events, and the target commits;
// the waiting events are handed to the target and applied there in
// order, and senders are told where the daemon went. Sequence numbers
// continue without a gap: nothing is lost or applied twice.
//
// Every failure is an *Error with the Phase it happened in: the target
// lacks the kind (FACTORY_NOT_FOUND) or the requirements
// (REQUIREMENTS_NOT_MET), cannot open the key (KEY_REFUSED), has no room
// (RESOURCE_EXHAUSTED), cannot be reached (UNREACHABLE), the snapshot or
// restore failed (SNAPSHOT_FAILED, RESTORE_FAILED), events outran the
// replay (LIMIT_EXCEEDED), the deadline passed (TIMEOUT: ctx's, or
// MigrationTimeout), or ctx was cancelled (ABORTED). A failure before
// the target commits leaves the daemon serving on the source with every
// event applied there once; after the commit only forwarding can fail,
// and the daemon is on the target.
func (rt *Runtime) Migrate(ctx context.Context, id ID, target identity.NodeID, opts ...MigrateOption) (MigrationReport, error) {
	var cfg migrateConfig
	for _, o := range opts {
		o(&cfg)
	}
	if in := rt.hosted(id); in != nil {
		return rt.migrateLocal(ctx, in, target, cfg.onPhase)
	}
	var rep MigrationReport
	err := rt.onHost(ctx, id, func(node identity.NodeID) error {
		if node == rt.self {
			return &Error{Code: CodeNotFound, Daemon: id, Node: node}
		}
		resp, err := rt.cli.Call(ctx, node, HostService, appendNodes(nil, opMigrate, id, []identity.NodeID{target}))
		if err != nil {
			return callError(err, node)
		}
		rep, err = parseReport(resp)
		return err
	})
	return rep, err
}

// migration is one outbound migration in progress.
type migration struct {
	rt      *Runtime
	in      *instance
	target  identity.NodeID
	xfer    ID
	onPhase func(Phase)
	rep     MigrationReport
	phase   Phase
	began   time.Time // of the current phase
	frozen  time.Time // when the source stopped applying
}

// enter begins phase p: it times the phase that ends, shows p in the
// daemon's Info, and calls the OnPhase hook. It returns the failure a
// test injects at p on the source.
func (mg *migration) enter(p Phase) error {
	now := time.Now()
	if mg.phase != 0 {
		mg.rep.Phases = append(mg.rep.Phases, PhaseTime{mg.phase, now.Sub(mg.began)})
	}
	mg.phase, mg.began = p, now
	mg.in.mu.Lock()
	mg.in.phase = p
	mg.in.mu.Unlock()
	if mg.onPhase != nil {
		mg.onPhase(p)
	}
	return mg.rt.hookErr(sideSource, p)
}

// fail returns err as an *Error of the current phase.
func (mg *migration) fail(err error) *Error {
	e := asError(err).with(mg.in.id, mg.target)
	if e.Phase == 0 {
		e.Phase = mg.phase
	}
	return e
}

// migrateLocal runs a migration of a daemon hosted here.
func (rt *Runtime) migrateLocal(ctx context.Context, in *instance, target identity.NodeID, onPhase func(Phase)) (MigrationReport, error) {
	if target == rt.self || target.IsZero() {
		return MigrationReport{}, &Error{Code: CodeInvalid, Daemon: in.id, Message: "the target is the daemon's own node"}
	}
	in.mu.Lock()
	switch {
	case in.state != stRunning:
		in.mu.Unlock()
		return MigrationReport{}, &Error{Code: CodeBusy, Daemon: in.id, Node: rt.self, Message: "the daemon is " + stateNames[in.state]}
	case in.phase != 0:
		in.mu.Unlock()
		return MigrationReport{}, &Error{Code: CodeBusy, Daemon: in.id, Node: rt.self, Message: "the daemon is migrating"}
	case len(in.standbys) > 0:
		in.mu.Unlock()
		return MigrationReport{}, &Error{Code: CodeBusy, Daemon: in.id, Node: rt.self, Message: "the daemon has standbys: its group moves it by promotion"}
	}
	in.phase, in.target = PhaseSnapshot, target
	in.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.MigrationTimeout)
	defer cancel()
	mg := &migration{rt: rt, in: in, target: target, xfer: newXferID(), onPhase: onPhase}
	mg.rep = MigrationReport{Daemon: in.id, From: rt.self, To: target}
	start := time.Now()
	committed, err := mg.run(ctx)
	if !committed {
		mg.resume()
		e := mg.fail(err)
		rt.counters.migrationFailed(e.Phase)
		return MigrationReport{}, e
	}
	rt.counters.migratedOut.Add(1)
	mg.complete(ctx)
	mg.rep.Phases = append(mg.rep.Phases, PhaseTime{mg.phase, time.Since(mg.began)})
	mg.rep.Total = time.Since(start)
	return mg.rep, nil
}

// run runs the phases up to the commit. It reports whether the target
// committed; if it did not, err says why.
func (mg *migration) run(ctx context.Context) (committed bool, err error) {
	rt, in := mg.rt, mg.in
	if err := mg.enter(PhaseSnapshot); err != nil {
		return false, err
	}
	var table, state []byte
	var e *Error
	if !in.do(func() {
		if state, mg.rep.SnapshotSeq, e = in.takeState(); e == nil {
			table = appendImage(nil, in.senders, nil)
			in.log = &replayLog{max: rt.cfg.MaxReplayLog}
		}
	}) {
		return false, &Error{Code: CodeAborted, Message: "the daemon stopped"}
	}
	if e != nil {
		return false, e
	}
	im := image{table, state}
	mg.rep.StateBytes = im.size()

	if err := mg.enter(PhaseTransfer); err != nil {
		return false, err
	}
	sealed, err := rt.sealFor(mg.target, in.key, sealTransfer, in.id, mg.xfer)
	if err != nil {
		return false, &Error{Code: CodeUnreachable, Message: err.Error()}
	}
	r := &prepareReq{Xfer: mg.xfer, Mode: modeMigrate, Daemon: in.id, Kind: in.kind.Name, Owner: in.owner,
		Seq: mg.rep.SnapshotSeq, Key: sealed, Size: uint64(im.size()), Fork: in.fork}
	if _, err := rt.prepare(ctx, mg.target, r); err != nil {
		return false, err
	}
	if err := rt.sendImage(ctx, mg.target, mg.xfer, im); err != nil {
		return false, mg.abortOn(err)
	}

	if err := mg.enter(PhaseRestore); err != nil {
		return false, mg.abortOn(err)
	}
	if _, err := rt.call(ctx, mg.target, appendXfer(nil, opRestore, mg.xfer)); err != nil {
		return false, mg.abortOn(err)
	}

	if err := mg.enter(PhaseReplay); err != nil {
		return false, mg.abortOn(err)
	}
	for range maxReplayRounds {
		es, e := mg.takeLog(replayBatch, cutoverTail)
		if e != nil {
			return false, mg.abortOn(e)
		}
		if len(es) == 0 {
			break
		}
		mg.rep.Replayed += len(es)
		if err := mg.replay(ctx, es); err != nil {
			return false, mg.abortOn(err)
		}
	}

	if err := mg.enter(PhaseCutover); err != nil {
		return false, mg.abortOn(err)
	}
	var tail []entry
	var final uint64
	overflow := false
	mg.frozen = time.Now()
	in.do(func() {
		in.mu.Lock()
		in.state = stFrozen
		in.mu.Unlock()
		tail, overflow = in.log.take(len(in.log.entries)), in.log.overflow
		final = in.seq.Load()
	})
	if overflow {
		return false, mg.abortOn(&Error{Code: CodeLimitExceeded, Message: fmt.Sprintf("more than %d events during the move", rt.cfg.MaxReplayLog)})
	}
	mg.rep.Replayed += len(tail)
	mg.rep.CutoverSeq = final
	// The daemon applies nothing now: what one call cannot carry goes
	// as replays first, then the rest with the cutover.
	last, size := 0, 0
	for last < len(tail) && last < replayBatch && (last == 0 || size+len(tail[len(tail)-1-last].Data) <= maxBatchBytes) {
		size += len(tail[len(tail)-1-last].Data)
		last++
	}
	if err := mg.replay(ctx, tail[:len(tail)-last]); err != nil {
		return false, mg.abortOn(err)
	}
	_, err = rt.call(ctx, mg.target, appendEntries(nil, opCutover, mg.xfer, tail[len(tail)-last:], final))
	if lose := rt.loseReply.Load(); lose != nil && (*lose)() {
		err = &Error{Code: CodeUnreachable, Message: "the cutover's reply was lost (test)"}
	}
	if err == nil {
		return true, nil
	}
	if answered(err) {
		return false, mg.abortOn(err)
	}
	// The outcome is unknown: ask the target until it says (its answer
	// is final: a transfer not committed is dropped as it answers).
	return mg.resolve(ctx, err)
}

// replay sends logged events to the target, as many calls as they need.
func (mg *migration) replay(ctx context.Context, es []entry) error {
	for len(es) > 0 {
		n := batchLen(es, replayBatch)
		if _, err := mg.rt.call(ctx, mg.target, appendEntries(nil, opReplay, mg.xfer, es[:n], 0)); err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}

// answered reports whether err is the target's own answer (a refusal),
// after which the target surely did not commit.
func answered(err error) bool {
	var de *Error
	if !errors.As(err, &de) {
		return false
	}
	switch de.Code {
	case CodeUnreachable, CodeTimeout, CodeAborted:
		return false
	}
	return true
}

// resolve asks the target whether it committed after a cutover call
// whose outcome is unknown, until it answers or ctx ends.
func (mg *migration) resolve(ctx context.Context, cause error) (bool, error) {
	for {
		resp, err := mg.rt.call(ctx, mg.target, appendStatus(nil, opStatus, mg.xfer, mg.in.id))
		if err == nil {
			v, err := parseUvarint(resp)
			if err == nil {
				return v == 1, cause
			}
		}
		select {
		case <-ctx.Done():
			// The target cannot say: it drops an unconfirmed transfer by
			// itself once it asks this node and hears it did not complete.
			return false, mg.abortOn(cause)
		case <-time.After(statusRetry):
		}
	}
}

// takeLog takes up to n logged events, but only if more than keep are
// logged: the last keep go with the cutover.
func (mg *migration) takeLog(n, keep int) ([]entry, *Error) {
	var es []entry
	var overflow bool
	mg.in.do(func() {
		overflow = mg.in.log.overflow
		if len(mg.in.log.entries) > keep {
			es = mg.in.log.take(n)
		}
	})
	if overflow {
		return nil, &Error{Code: CodeLimitExceeded, Message: fmt.Sprintf("more than %d events during the move", mg.rt.cfg.MaxReplayLog)}
	}
	return es, nil
}

// abortOn tells the target to drop the transfer, in the background, and
// returns err.
func (mg *migration) abortOn(err error) error {
	mg.rt.spawn(func() { mg.rt.abort(mg.target, mg.xfer, mg.in.id) })
	return err
}

// resume makes the source serve again after a migration that did not
// commit: the log is dropped and the events that waited are applied
// here.
func (mg *migration) resume() {
	in := mg.in
	in.do(func() { in.log = nil })
	in.mu.Lock()
	if in.state == stFrozen {
		in.state = stRunning
	}
	in.phase, in.target = 0, identity.NodeID{}
	in.cond.Signal()
	in.mu.Unlock()
}

// complete runs after the target committed: the daemon leaves this node,
// the events that waited in its inbox are handed to the target in order,
// and the target is told the migration completed.
func (mg *migration) complete(ctx context.Context) {
	rt, in := mg.rt, mg.in
	mg.enter(PhaseComplete) // a failure injected here changes nothing: the target holds the daemon
	in.mu.Lock()
	in.state, in.movedTo = stMoved, mg.target
	held := in.queue
	in.queue = nil
	in.cond.Signal()
	in.mu.Unlock()
	rt.mu.Lock()
	if rt.daemons[in.id] == in {
		delete(rt.daemons, in.id)
	}
	rt.tombLocked(in.id, mg.target, mg.xfer)
	rt.markDirtyLocked()
	rt.mu.Unlock()
	rt.routes.learn(in.id, mg.target)
	es := make([]entry, len(held))
	for i, p := range held {
		es[i] = p.e
	}
	for len(held) > 0 {
		n := batchLen(es, maxBatchEvents)
		rs := mg.forward(ctx, es[:n])
		for i, p := range held[:n] {
			p.w.set(p.i, rs[i])
		}
		held, es = held[n:], es[n:]
		mg.rep.Handed += n
	}
	mg.rep.Frozen = time.Since(mg.frozen)
	for attempt := 0; attempt < 3; attempt++ {
		if _, err := rt.call(ctx, mg.target, appendXfer(nil, opComplete, mg.xfer)); err == nil || answered(err) {
			return
		}
	}
}

// forward hands a batch of events that waited through the cutover to the
// target, resending while it fails for want of an answer (the daemon
// skips what it applied), and returns their receipts.
func (mg *migration) forward(ctx context.Context, es []entry) []wireReceipt {
	req := appendEntries(nil, opForward, mg.xfer, es, 0)
	var last error
	for {
		resp, err := mg.rt.call(ctx, mg.target, req)
		if err == nil {
			rs, err := parseReceipts(resp)
			if err == nil && len(rs) == len(es) {
				return rs
			}
			last = &Error{Code: CodeInvalid, Node: mg.target, Message: fmt.Sprintf("forward answered %d receipts for %d events: %v", len(rs), len(es), err)}
			break
		}
		last = err
		if answered(err) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(statusRetry):
		}
	}
	e := asError(last)
	rs := make([]wireReceipt, len(es))
	for i := range rs {
		rs[i] = wireReceipt{Code: e.Code, Message: "the daemon moved and the handover failed: " + e.Error()}
	}
	return rs
}

// handleMigrate runs a migration its owner asked for.
func (rt *Runtime) handleMigrate(ctx context.Context, from identity.NodeID, body []byte) ([]byte, error) {
	id, nodes, err := parseNodes(body)
	if err != nil || len(nodes) != 1 {
		return nil, rpc.Errorf(rpc.StatusBadRequest, "migrate: %v", err)
	}
	in, e := rt.owned(id, from)
	if e != nil {
		return nil, e
	}
	rep, err := rt.migrateLocal(ctx, in, nodes[0], nil)
	if err != nil {
		return nil, err
	}
	return appendReport(nil, &rep), nil
}
