package daemon

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// instState is the state of a hosted daemon.
//
//	arriving ──forward/complete──▶ running ──Stop──▶ stopping ──▶ (gone)
//	    │                          │    ▲
//	    └──abort──▶ (gone)    freeze│    │abort
//	                               ▼    │
//	                              frozen ──commit──▶ moved ──▶ (gone)
//
// A migration's target holds the daemon arriving from its cutover until
// the source confirms (Complete, or a first forwarded event): it applies
// only what the source forwards. The source is frozen while it cuts over:
// events wait in the inbox. Once the target committed, the source hands
// the waiting events over and forgets the daemon.
type instState uint8

const (
	stRunning instState = iota
	stArriving
	stFrozen
	stMoved
	stStopping
	stDropped // an arriving copy whose migration was aborted
)

var stateNames = [...]string{"running", "arriving", "frozen", "moved", "stopping", "dropped"}

// applyBatch bounds the events the goroutine takes from the inbox at
// once; a standby ships them in one call.
const applyBatch = 256

// instance is one daemon hosted by a runtime: the Daemon, its inbox, and
// the goroutine that applies events one at a time (started by start).
type instance struct {
	rt    *Runtime
	id    ID
	kind  *Kind
	key   *identity.Identity
	owner identity.NodeID
	fork  *ForkRecord
	since time.Time

	// Owned by the daemon's goroutine, or by whoever holds the instance
	// before start (a transfer restoring it).
	d        Daemon
	senders  *senderTable
	log      *replayLog      // events applied since a snapshot; nil when no one needs them
	ship     *standbyShip    // the standbys events are shipped to; nil when none
	triggers []seqTrigger    // snapshots wanted right after a sequence number (forks)
	final    *Snapshot       // the snapshot Stop takes after the last event
	finalE   *Error          // why that snapshot failed
	wantFin  identity.NodeID // the node the final snapshot's key is sealed for

	seq, applied, dups atomic.Uint64

	// mu guards the fields below. Methods named ...Locked need it.
	mu       sync.Mutex
	cond     sync.Cond
	state    instState
	queue    []*pending
	ctl      []func()
	exited   bool
	movedTo  identity.NodeID
	phase    Phase
	target   identity.NodeID
	syncing  bool // its standbys are being synced
	standbys []identity.NodeID
	done     chan struct{} // closed when the goroutine has ended
}

// pending is one event in the inbox, and where its receipt goes.
type pending struct {
	e entry
	w *waiter
	i int
}

// waiter collects the receipts of one batch of events.
type waiter struct {
	receipts []wireReceipt
	left     atomic.Int32
	done     chan struct{}
}

func newWaiter(n int) *waiter {
	w := &waiter{receipts: make([]wireReceipt, n), done: make(chan struct{})}
	w.left.Store(int32(n))
	if n == 0 {
		close(w.done)
	}
	return w
}

// set records event i's receipt; the last one releases the waiter.
func (w *waiter) set(i int, r wireReceipt) {
	w.receipts[i] = r
	if w.left.Add(-1) == 0 {
		close(w.done)
	}
}

// replayLog holds the events a daemon applied since a snapshot, for a
// migration's target or a standby being synced.
type replayLog struct {
	entries  []entry
	max      int
	overflow bool
}

func (l *replayLog) add(e entry) {
	if len(l.entries) >= l.max {
		l.overflow = true
		return
	}
	l.entries = append(l.entries, e)
}

// take removes and returns up to n entries.
func (l *replayLog) take(n int) []entry {
	n = min(n, len(l.entries))
	out := l.entries[:n:n]
	l.entries = l.entries[n:]
	return out
}

func newInstance(rt *Runtime, k *Kind, key *identity.Identity, d Daemon, owner identity.NodeID) *instance {
	in := &instance{
		rt: rt, id: idOf(key), kind: k, key: key, owner: owner, d: d,
		since: time.Now(), senders: newSenderTable(), done: make(chan struct{}),
	}
	in.cond.L = &in.mu
	return in
}

// startLocked runs the daemon's goroutine. rt.mu is held (so the
// runtime's Close either waits for it, or stopped it before).
func (in *instance) startLocked() {
	in.rt.wg.Add(1)
	go in.run()
}

// run applies the events of the inbox one at a time, and between them
// the control functions queued by do, until the daemon stops or moves.
func (in *instance) run() {
	defer in.rt.wg.Done()
	defer close(in.done)
	for {
		in.mu.Lock()
		for len(in.ctl) == 0 && !in.runnableLocked() && !in.finishedLocked() {
			in.cond.Wait()
		}
		if len(in.ctl) > 0 {
			fs := in.ctl
			in.ctl = nil
			in.mu.Unlock()
			for _, f := range fs {
				f()
			}
			continue
		}
		if in.finishedLocked() {
			in.exited = true
			in.mu.Unlock()
			in.finish()
			return
		}
		n := min(len(in.queue), applyBatch)
		batch := make([]*pending, n)
		copy(batch, in.queue)
		rest := copy(in.queue, in.queue[n:])
		clear(in.queue[rest:])
		in.queue = in.queue[:rest]
		in.mu.Unlock()
		in.apply(batch)
	}
}

func (in *instance) runnableLocked() bool {
	return len(in.queue) > 0 && in.state != stFrozen
}

func (in *instance) finishedLocked() bool {
	switch in.state {
	case stMoved, stDropped:
		return true
	case stStopping:
		return len(in.queue) == 0
	}
	return false
}

// finish ends the daemon on this node: after a graceful stop it takes
// the final snapshot; then it closes the daemon.
func (in *instance) finish() {
	if in.state == stStopping {
		in.final, in.finalE = in.snapshotFor(in.wantFin)
	}
	if c, ok := in.d.(Closer); ok {
		func() {
			defer func() {
				if r := recover(); r != nil {
					in.rt.log.Error("daemon: Close panicked", "daemon", in.id, "panic", r)
				}
			}()
			c.Close()
		}()
	}
}

// do runs f on the daemon's goroutine between two events, and waits for
// it. It returns false, without running f, once the goroutine has ended.
func (in *instance) do(f func()) bool {
	done := make(chan struct{})
	in.mu.Lock()
	if in.exited {
		in.mu.Unlock()
		return false
	}
	in.ctl = append(in.ctl, func() { f(); close(done) })
	in.cond.Signal()
	in.mu.Unlock()
	<-done
	return true
}

// enqueue puts the events es into the inbox, as far as it has room; the
// events beyond get a BACKPRESSURE receipt at once. direct says they come
// from a sender rather than from the source of a migration (forwarded):
// an arriving daemon takes only forwarded events. It returns statusOK, or
// the status that refuses them all (with the node it moved to).
func (in *instance) enqueue(es []entry, w *waiter, direct bool) (byte, identity.NodeID) {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case in.state == stMoved:
		return statusMoved, in.movedTo
	case in.state == stStopping || in.state == stDropped:
		return statusStopping, identity.NodeID{}
	case in.state == stArriving && direct:
		return statusNotReady, identity.NodeID{}
	}
	room := in.rt.cfg.InboxSize - len(in.queue)
	if !direct {
		room = len(es) // forwarded events were accepted by the source already
	}
	for i, e := range es {
		if i >= room {
			w.set(i, wireReceipt{Code: CodeBackpressure, Message: fmt.Sprintf("inbox full (%d events)", in.rt.cfg.InboxSize)})
			continue
		}
		in.queue = append(in.queue, &pending{e: e, w: w, i: i})
	}
	in.cond.Signal()
	return statusOK, identity.NodeID{}
}

// apply applies a batch taken from the inbox, ships it to the standbys if
// there are any, then releases the senders.
func (in *instance) apply(batch []*pending) {
	rs := make([]wireReceipt, len(batch))
	for i, p := range batch {
		rs[i] = in.applyOne(p.e, false)
		if len(in.triggers) > 0 {
			in.fire()
		}
	}
	if in.ship != nil {
		in.ship.send(in, batch, rs)
	}
	for i, p := range batch {
		p.w.set(p.i, rs[i])
	}
}

// applyOne applies one event: a resend already applied is recognised and
// skipped; a replayed event's outputs are dropped. It logs the event if
// a log is kept.
func (in *instance) applyOne(e entry, replay bool) wireReceipt {
	k := senderKey{e.Origin, e.Inc}
	if !replay && e.Inc != 0 && in.senders.seen(k, e.Ctr) {
		in.dups.Add(1)
		return wireReceipt{Duplicate: true}
	}
	seq := in.seq.Load() + 1
	outs, err := in.handle(Event{Seq: seq, From: e.Origin, Data: e.Data, Replay: replay})
	in.seq.Store(seq)
	in.applied.Add(1)
	if e.Inc != 0 {
		in.senders.record(k, e.Ctr, seq)
	}
	e.Seq = seq
	if in.log != nil {
		in.log.add(e)
	}
	r := wireReceipt{Seq: seq}
	if replay {
		return r
	}
	size := 0
	for _, o := range outs {
		size += len(o)
	}
	switch {
	case err != nil:
		r.Code, r.Message = CodeHandlerError, truncate(err.Error(), maxMessage)
	case len(outs) > maxOutputs || size > in.rt.cfg.MaxOutputSize:
		r.Code, r.Message = CodeLimitExceeded, fmt.Sprintf("%d outputs of %d bytes, at most %d of %d", len(outs), size, maxOutputs, in.rt.cfg.MaxOutputSize)
	default:
		r.Outputs = outs
	}
	return r
}

// fire runs the triggers due at the current sequence number.
func (in *instance) fire() {
	seq := in.seq.Load()
	keep := in.triggers[:0]
	for _, t := range in.triggers {
		if t.seq == seq {
			t.f()
		} else {
			keep = append(keep, t)
		}
	}
	in.triggers = keep
}

// handle calls the daemon's Handle; a panic is an error.
func (in *instance) handle(ev Event) (outs [][]byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			in.rt.log.Error("daemon: Handle panicked", "daemon", in.id, "seq", ev.Seq, "panic", r)
			outs, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return in.d.Handle(ev)
}

// takeState returns the daemon's state (nil if it is not Stateful) and
// the sequence number it includes, on the daemon's goroutine.
func (in *instance) takeState() ([]byte, uint64, *Error) {
	seq := in.seq.Load()
	s, ok := in.d.(Stateful)
	if !ok {
		return nil, seq, nil
	}
	var state []byte
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		state, err = s.Snapshot()
	}()
	switch {
	case err != nil:
		return nil, 0, &Error{Code: CodeSnapshotFailed, Message: err.Error(), Daemon: in.id}
	case len(state) > in.rt.cfg.MaxStateSize:
		return nil, 0, &Error{Code: CodeSnapshotFailed, Message: fmt.Sprintf("state of %d bytes, at most %d", len(state), in.rt.cfg.MaxStateSize), Daemon: in.id}
	}
	return state, seq, nil
}

// snapshotFor takes a Snapshot whose key is sealed for node, on the
// daemon's goroutine.
func (in *instance) snapshotFor(node identity.NodeID) (*Snapshot, *Error) {
	state, seq, e := in.takeState()
	if e != nil {
		return nil, e
	}
	s := &Snapshot{Daemon: in.id, Kind: in.kind.Name, Seq: seq, State: state, Owner: in.owner, SealedFor: node, Fork: in.fork}
	key, err := in.rt.sealFor(node, in.key, sealSnapshot, in.id, ID{})
	if err != nil {
		return nil, &Error{Code: CodeKeyRefused, Message: err.Error(), Daemon: in.id, Node: node}
	}
	s.Key = key
	return s, nil
}

// info describes the daemon.
func (in *instance) info() Info {
	in.mu.Lock()
	defer in.mu.Unlock()
	st := stateNames[in.state]
	if in.state == stRunning && in.phase != 0 {
		st = "migrating"
	}
	return Info{
		ID: in.id, Kind: in.kind.Name, Node: in.rt.self, Owner: in.owner, State: st,
		Phase: in.phase, Target: in.target,
		Seq: in.seq.Load(), Applied: in.applied.Load(), Duplicates: in.dups.Load(),
		Queued: len(in.queue), Since: in.since, Standbys: append([]identity.NodeID(nil), in.standbys...), Fork: in.fork,
	}
}
