package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// The target's side of a transfer: a daemon arriving by migration, by a
// placed spawn, or as a standby. A transfer is a sequence of calls from
// the node that opened it (its source), each naming it by its random id:
//
//	prepare ──▶ chunk… ──▶ restore ──▶ replay… ──▶ cutover ──▶ forward…/complete
//	receiving              restored                committed   confirmed
//
// A spawn starts serving at restore (at prepare when it carries no
// state); a standby is held at restore. A migration's daemon arrives at
// cutover: the target holds it from then on (committed) but applies only
// what the source forwards until the source confirms, so that a source
// that never learned of the commit (its reply was lost) and resumed
// serving has no rival: asked for the transfer's status it is told
// "committed" and completes; a transfer aborted before the confirmation
// is dropped. A transfer that goes silent for MigrationTimeout is
// dropped; a committed one first asks its source whether it completed.

// xferState is the state of an inbound transfer.
type xferState uint8

const (
	xReceiving xferState = iota // prepared: the image arrives
	xRestored                   // the daemon is made; replays arrive
	xCommitted                  // cut over: the daemon is here, arriving
	xConfirmed                  // the source knows: the daemon serves
)

// incoming is one inbound transfer.
type incoming struct {
	xfer  ID
	from  identity.NodeID // the node that opened it: only it may continue it
	mode  byte
	kind  *Kind
	key   *identity.Identity
	id    ID
	owner identity.NodeID
	seq   uint64
	fork  *ForkRecord
	fresh bool // a spawn without an image: New, no Restore; it starts at once
	size  uint64
	last  atomic.Int64 // unix nanoseconds of the last message

	// mu serialises the transfer's messages and guards the fields below.
	// It is taken before Runtime.mu, never after.
	mu        sync.Mutex
	state     xferState
	image     []byte
	inst      *instance
	resolving bool
}

func (x *incoming) touch() { x.last.Store(time.Now().UnixNano()) }

// handlePrepare opens an inbound transfer: it checks the kind, the
// requirements, the size, the key and the room, before it holds
// anything.
func (rt *Runtime) handlePrepare(from identity.NodeID, body []byte) ([]byte, error) {
	r, err := parsePrepare(body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	if err := rt.hookErr(sideTarget, PhaseTransfer); err != nil {
		return nil, err
	}
	k := rt.kind(r.Kind)
	switch {
	case k == nil:
		return nil, &Error{Code: CodeFactoryNotFound, Kind: r.Kind, Node: rt.self, Message: fmt.Sprintf("no factory for kind %q", r.Kind)}
	case !rt.meets(k.Requires):
		return nil, &Error{Code: CodeRequirementsNotMet, Kind: r.Kind, Node: rt.self, Message: fmt.Sprintf("this node does not match %q", k.Requires.String())}
	case r.Size > uint64(rt.cfg.MaxStateSize)+maxImageOverhead:
		return nil, &Error{Code: CodeLimitExceeded, Node: rt.self, Message: fmt.Sprintf("image of %d bytes, at most %d", r.Size, rt.cfg.MaxStateSize)}
	case r.Mode == modeSpawn && r.Owner != from:
		return nil, &Error{Code: CodeNotOwner, Message: "a spawned daemon's owner is the node that spawns it"}
	}
	x := &incoming{xfer: r.Xfer, from: from, mode: r.Mode, kind: k, owner: r.Owner, seq: r.Seq, fork: r.Fork, size: r.Size}
	x.fresh = r.Size == 0 && r.Mode == modeSpawn // a new daemon: no image to restore
	if r.Key == nil {
		if x.key, err = identity.Generate(); err != nil {
			return nil, err
		}
	} else if x.key, err = rt.openKey(r.Key, sealTransfer, r.Daemon, r.Xfer); err != nil {
		return nil, &Error{Code: CodeKeyRefused, Daemon: r.Daemon, Node: rt.self, Message: err.Error()}
	}
	x.id = idOf(x.key)
	if r.Fork != nil {
		if err := r.Fork.Verify(); err != nil || r.Fork.Child != x.id {
			return nil, &Error{Code: CodeInvalid, Daemon: x.id, Message: fmt.Sprintf("fork record does not verify: %v", err)}
		}
	}
	x.touch()
	if e := rt.admit(x); e != nil {
		return nil, e
	}
	if x.fresh {
		x.mu.Lock()
		defer x.mu.Unlock()
		if e := rt.restoreLocked(x); e != nil {
			rt.forget(x)
			return nil, e
		}
	}
	return x.id[:], nil
}

// maxImageOverhead bounds an image beyond its state: the sender table.
const maxImageOverhead = maxSenders * 64

// admit registers an inbound transfer if the runtime has room for it.
func (rt *Runtime) admit(x *incoming) *Error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return &Error{Code: CodeShuttingDown, Node: rt.self}
	}
	if _, ok := rt.incoming[x.xfer]; ok {
		return &Error{Code: CodeInvalid, Message: "transfer id in use"}
	}
	perNode, perOwner := 0, 0
	for _, o := range rt.incoming {
		if o.id == x.id && x.mode != modeStandby && o.mode != modeStandby {
			return &Error{Code: CodeBusy, Daemon: x.id, Node: rt.self, Message: "the daemon is arriving already"}
		}
		if o.from == x.from {
			perNode++
		}
		if o.owner == x.owner {
			perOwner++
		}
	}
	for _, in := range rt.daemons {
		if in.owner == x.owner {
			perOwner++
		}
	}
	switch {
	case x.mode != modeStandby && rt.daemons[x.id] != nil:
		return &Error{Code: CodeBusy, Daemon: x.id, Node: rt.self, Message: "the daemon runs here already"}
	case len(rt.daemons)+len(rt.incoming)+len(rt.standbys) >= rt.cfg.MaxDaemons:
		return &Error{Code: CodeResourceExhausted, Node: rt.self, Message: fmt.Sprintf("%d daemons and standbys, at most %d", len(rt.daemons)+len(rt.incoming)+len(rt.standbys), rt.cfg.MaxDaemons)}
	case perOwner >= rt.cfg.MaxPerOwner:
		return &Error{Code: CodeResourceExhausted, Node: rt.self, Message: fmt.Sprintf("owner %s has %d daemons here, at most %d", x.owner.Short(), perOwner, rt.cfg.MaxPerOwner)}
	case len(rt.incoming) >= maxIncoming || perNode >= maxIncomingPerNode:
		return &Error{Code: CodeResourceExhausted, Node: rt.self, Message: "too many transfers under way"}
	}
	rt.incoming[x.xfer] = x
	rt.markDirtyLocked()
	return nil
}

// transfer returns the inbound transfer xfer, if from opened it.
func (rt *Runtime) transfer(xfer ID, from identity.NodeID) (*incoming, *Error) {
	rt.mu.Lock()
	x := rt.incoming[xfer]
	rt.mu.Unlock()
	if x == nil || x.from != from {
		return nil, &Error{Code: CodeNotFound, Node: rt.self, Message: "no such transfer"}
	}
	x.touch()
	return x, nil
}

// transferIn returns the inbound transfer a request that names it alone
// (restore, complete) is about, if from opened it.
func (rt *Runtime) transferIn(from identity.NodeID, body []byte) (*incoming, error) {
	xfer, err := parseID(body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	x, e := rt.transfer(xfer, from)
	if e != nil {
		return nil, e
	}
	return x, nil
}

// forget removes an inbound transfer. It reports whether it was there
// to remove.
func (rt *Runtime) forget(x *incoming) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.incoming[x.xfer] != x {
		return false
	}
	delete(rt.incoming, x.xfer)
	rt.markDirtyLocked()
	return true
}

// handleChunk appends a chunk to a transfer's image; chunks come in
// order.
func (rt *Runtime) handleChunk(from identity.NodeID, body []byte) ([]byte, error) {
	xfer, off, data, err := parseChunk(body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	x, e := rt.transfer(xfer, from)
	if e != nil {
		return nil, e
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case x.state != xReceiving:
		return nil, &Error{Code: CodeInvalid, Message: "chunk after restore"}
	case off != uint64(len(x.image)):
		return nil, &Error{Code: CodeInvalid, Message: fmt.Sprintf("chunk at %d, expected %d", off, len(x.image))}
	case off+uint64(len(data)) > x.size:
		return nil, &Error{Code: CodeInvalid, Message: "image longer than announced"}
	}
	if x.image == nil {
		x.image = make([]byte, 0, x.size)
	}
	x.image = append(x.image, data...)
	return nil, nil
}

// handleRestore makes the daemon from the transfer's image: a spawn then
// serves, a standby is held, a migration waits for its replay.
func (rt *Runtime) handleRestore(from identity.NodeID, body []byte) ([]byte, error) {
	x, err := rt.transferIn(from, body)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state != xReceiving || uint64(len(x.image)) != x.size {
		return nil, &Error{Code: CodeInvalid, Message: fmt.Sprintf("restore with %d of %d bytes", len(x.image), x.size)}
	}
	if err := rt.hookErr(sideTarget, PhaseRestore); err != nil {
		rt.forget(x)
		return nil, err
	}
	if e := rt.restoreLocked(x); e != nil {
		rt.forget(x)
		return nil, e
	}
	return nil, nil
}

// restoreLocked makes the transfer's daemon and, for a spawn, starts it,
// for a standby, holds it. x.mu is held.
func (rt *Runtime) restoreLocked(x *incoming) *Error {
	if x.mode == modeStandby {
		return rt.holdStandby(x)
	}
	in, e := rt.build(x.kind, x.key, x.fresh, x.owner, x.seq, x.image, x.fork)
	if e != nil {
		return e
	}
	x.image, x.inst, x.state = nil, in, xRestored
	if x.mode != modeSpawn {
		return nil
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.incoming[x.xfer] != x {
		return &Error{Code: CodeAborted, Message: "transfer dropped"}
	}
	delete(rt.incoming, x.xfer)
	if e := rt.hostLocked(in); e != nil {
		return e
	}
	rt.counters.spawned.Add(1)
	return nil
}

// build makes a daemon of kind k with key: new, or restored from image
// (its sender table and state) at sequence number seq.
func (rt *Runtime) build(k *Kind, key *identity.Identity, fresh bool, owner identity.NodeID, seq uint64, image []byte, fork *ForkRecord) (*instance, *Error) {
	id := idOf(key)
	var table *senderTable
	var state []byte
	if !fresh {
		var err error
		if table, state, err = parseImage(image); err != nil {
			return nil, &Error{Code: CodeRestoreFailed, Daemon: id, Node: rt.self, Err: err}
		}
	}
	var d Daemon
	err := protect(func() error {
		var err error
		if d, err = k.New(id, key); err == nil && d == nil {
			err = errors.New("the factory returned no daemon")
		}
		if err == nil && !fresh {
			if s, ok := d.(Stateful); ok {
				err = s.Restore(state)
			}
		}
		return err
	})
	if err != nil {
		return nil, &Error{Code: CodeRestoreFailed, Daemon: id, Node: rt.self, Message: err.Error()}
	}
	in := newInstance(rt, k, key, d, owner)
	in.seq.Store(seq)
	in.fork = fork
	if table != nil {
		in.senders = table
	}
	return in, nil
}

// protect runs f, turning a panic into an error.
func protect(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// hostLocked makes in a daemon hosted here and starts it. rt.mu is
// held.
func (rt *Runtime) hostLocked(in *instance) *Error {
	if rt.closed {
		return &Error{Code: CodeShuttingDown, Node: rt.self}
	}
	if rt.daemons[in.id] != nil {
		return &Error{Code: CodeBusy, Daemon: in.id, Node: rt.self, Message: "the daemon runs here already"}
	}
	rt.daemons[in.id] = in
	delete(rt.tombs, in.id)
	rt.markDirtyLocked()
	in.startLocked()
	return nil
}

// handleReplay applies events the source applied since its snapshot
// (opReplay), or the last of them and commits (opCutover).
func (rt *Runtime) handleReplay(from identity.NodeID, op byte, body []byte) ([]byte, error) {
	xfer, es, final, err := parseEntries(op, body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	x, e := rt.transfer(xfer, from)
	if e != nil {
		return nil, e
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state != xRestored || x.mode != modeMigrate {
		return nil, &Error{Code: CodeInvalid, Message: "replay out of order"}
	}
	phase := PhaseReplay
	if op == opCutover {
		phase = PhaseCutover
	}
	if err := rt.hookErr(sideTarget, phase); err != nil {
		return nil, err
	}
	in := x.inst
	if len(es) > 0 && es[0].Seq != in.seq.Load()+1 {
		return nil, &Error{Code: CodeInvalid, Message: fmt.Sprintf("replay from %d, expected %d", es[0].Seq, in.seq.Load()+1)}
	}
	for _, e := range es {
		in.applyOne(e, true)
	}
	if op == opReplay {
		return appendUvarint(nil, in.seq.Load()), nil
	}
	if final != in.seq.Load() {
		return nil, &Error{Code: CodeInvalid, Message: fmt.Sprintf("cutover at %d, the daemon is at %d", final, in.seq.Load())}
	}
	in.state = stArriving
	rt.mu.Lock()
	e = rt.hostLocked(in)
	rt.mu.Unlock()
	if e != nil {
		return nil, e
	}
	x.state = xCommitted
	return nil, nil
}

// confirmLocked makes an arriving daemon serve: its source knows it
// committed. x.mu is held.
func (x *incoming) confirmLocked() {
	if x.state != xCommitted {
		return
	}
	x.state = xConfirmed
	x.inst.rt.counters.migratedIn.Add(1)
	x.inst.mu.Lock()
	if x.inst.state == stArriving {
		x.inst.state = stRunning
		x.inst.cond.Signal()
	}
	x.inst.mu.Unlock()
}

// handleComplete confirms a committed transfer and forgets it.
func (rt *Runtime) handleComplete(from identity.NodeID, body []byte) ([]byte, error) {
	x, err := rt.transferIn(from, body)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state < xCommitted {
		return nil, &Error{Code: CodeInvalid, Message: "complete before cutover"}
	}
	x.confirmLocked()
	rt.forget(x)
	return nil, nil
}

// handleForward applies the events that waited at the source through the
// cutover, and confirms the transfer.
func (rt *Runtime) handleForward(ctx context.Context, from identity.NodeID, body []byte) ([]byte, error) {
	xfer, es, _, err := parseEntries(opForward, body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	x, e := rt.transfer(xfer, from)
	if e != nil {
		return nil, e
	}
	x.mu.Lock()
	if x.state < xCommitted {
		x.mu.Unlock()
		return nil, &Error{Code: CodeInvalid, Message: "forward before cutover"}
	}
	x.confirmLocked()
	in := x.inst
	x.mu.Unlock()
	w := newWaiter(len(es))
	if status, node := in.enqueue(es, w, false); status != statusOK {
		return nil, &Error{Code: CodeNotFound, Node: node, Message: "the daemon left again"}
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return nil, ctxError(ctx)
	}
	return appendReceipts(nil, w.receipts), nil
}

// handleAbort drops a transfer that was not confirmed.
func (rt *Runtime) handleAbort(from identity.NodeID, body []byte) ([]byte, error) {
	xfer, _, err := parseStatus(body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	x, e := rt.transfer(xfer, from)
	if e != nil {
		return nil, nil // nothing to drop
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state == xConfirmed {
		return nil, &Error{Code: CodeInvalid, Message: "the transfer was confirmed"}
	}
	rt.dropLocked(x)
	return nil, nil
}

// dropLocked drops a transfer that was not confirmed, and its daemon if
// it was committed. x.mu is held.
func (rt *Runtime) dropLocked(x *incoming) {
	if rt.forget(x) && x.mode == modeMigrate {
		rt.counters.arrivalsDropped.Add(1)
	}
	if x.state != xCommitted {
		return
	}
	in := x.inst
	in.mu.Lock()
	in.state = stDropped
	in.cond.Signal()
	in.mu.Unlock()
	rt.mu.Lock()
	if rt.daemons[in.id] == in {
		delete(rt.daemons, in.id)
		rt.markDirtyLocked()
	}
	rt.mu.Unlock()
}

// handleStatus answers whether a transfer committed. Asked of a target
// by its source: a transfer not committed yet is dropped on the spot, so
// the answer is final. Asked of a source by a target whose transfer went
// silent: whether it completed.
func (rt *Runtime) handleStatus(from identity.NodeID, body []byte) ([]byte, error) {
	xfer, daemon, err := parseStatus(body)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err}
	}
	if x, e := rt.transfer(xfer, from); e == nil {
		x.mu.Lock()
		defer x.mu.Unlock()
		if x.state >= xCommitted {
			return appendUvarint(nil, 1), nil
		}
		rt.dropLocked(x)
		return appendUvarint(nil, 0), nil
	}
	if t, ok := rt.tombFor(daemon); ok && t.xfer == xfer && t.to == from {
		return appendUvarint(nil, 1), nil
	}
	return appendUvarint(nil, 0), nil
}

// expireIncoming drops the inbound transfers silent for MigrationTimeout;
// a committed one first asks its source whether it completed.
func (rt *Runtime) expireIncoming(now time.Time) {
	cutoff := now.Add(-rt.cfg.MigrationTimeout).UnixNano()
	rt.mu.Lock()
	var old []*incoming
	for _, x := range rt.incoming {
		if x.last.Load() < cutoff {
			old = append(old, x)
		}
	}
	rt.mu.Unlock()
	for _, x := range old {
		x.mu.Lock()
		switch {
		case x.state == xCommitted && !x.resolving:
			x.resolving = rt.spawn(func() { rt.resolve(x) })
		case x.state == xConfirmed:
			rt.forget(x)
		case x.state < xCommitted:
			rt.dropLocked(x)
		}
		x.mu.Unlock()
	}
}

// resolve asks the source of a committed transfer that went silent
// whether it completed: it did, and the daemon serves here; it did not,
// or cannot say, and the daemon is dropped (the source kept it).
func (rt *Runtime) resolve(x *incoming) {
	resp, err := rt.call(rt.ctx, x.from, appendStatus(nil, opStatus, x.xfer, x.id))
	done := false
	if err == nil {
		v, err := parseUvarint(resp)
		done = err == nil && v == 1
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.resolving = false
	if done {
		x.confirmLocked()
		rt.forget(x)
		return
	}
	rt.log.Warn("daemon: an arriving daemon's source did not complete; dropping it", "daemon", x.id, "source", x.from, "err", err)
	rt.dropLocked(x)
}
