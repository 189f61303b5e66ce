package task

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/rpc"
)

// SubmitterConfig configures a Submitter. The zero value of every field
// is a documented default.
type SubmitterConfig struct {
	// StorePath is the file that makes the task records durable (an
	// embedded bbolt database, created if missing): a submitter that
	// restarts with the same identity and file finds its tasks, and
	// receives the results that finished meanwhile. "" keeps the records
	// in memory only.
	StorePath string
	// Retention is how long a finished task's record is kept. 0 means
	// DefaultRetention.
	Retention time.Duration
	// MaxRecords bounds the records kept; the oldest finished go first.
	// 0 means DefaultMaxRecords.
	MaxRecords int
	// MaxEvents bounds the events kept per task. 0 means
	// DefaultMaxEvents.
	MaxEvents int
	// MaxParamsSize bounds the parameters Submit sends. 0 means
	// DefaultMaxParamsSize.
	MaxParamsSize int
	// MaxAttempts bounds the placements of an idempotent task whose
	// worker is lost, the first included. 0 means DefaultMaxAttempts.
	MaxAttempts int
	// MaxCandidates bounds the nodes one Submit tries. 0 means
	// DefaultMaxCandidates.
	MaxCandidates int
	// SyncInterval is how often each worker holding unfinished tasks is
	// asked about them. 0 means DefaultSyncInterval.
	SyncInterval time.Duration
	// CallTimeout bounds one rpc call to a worker. 0 means
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// Logger receives store failures and lost tasks. Nil discards them.
	Logger *slog.Logger
}

func (c *SubmitterConfig) setDefaults() {
	orDefault(&c.Retention, DefaultRetention)
	orDefault(&c.MaxRecords, DefaultMaxRecords)
	orDefault(&c.MaxEvents, DefaultMaxEvents)
	orDefault(&c.MaxParamsSize, DefaultMaxParamsSize)
	orDefault(&c.MaxAttempts, DefaultMaxAttempts)
	orDefault(&c.MaxCandidates, DefaultMaxCandidates)
	orDefault(&c.SyncInterval, DefaultSyncInterval)
	orDefault(&c.CallTimeout, DefaultCallTimeout)
	c.Logger = orDiscard(c.Logger)
}

// Request is a task to submit.
type Request struct {
	// ID is the task's id; zero makes a new one. Submitting an id again
	// (after an error, say) is safe: a worker that holds it answers with
	// its state and never runs it twice, and an id this submitter already
	// holds returns at once.
	ID ID
	// Skill names the skill.
	Skill string
	// Params are the parameters, one JSON value. Nil means null.
	Params json.RawMessage
	// Priority orders the worker's queue: higher first.
	Priority int
	// Deadline is when the task must be done; zero means none. A task
	// still queued then is dropped with TIMEOUT, a running one is
	// cancelled with TIMEOUT, and a result reaching the submitter after it
	// is refused with LATE_RESULT.
	Deadline time.Time
	// Node places the task on this node. Zero places it on a node whose
	// capabilities offer the skill and match Where.
	Node identity.NodeID
	// Where is the capability filter the node must match besides
	// offering the skill; the zero Filter matches every node.
	Where capability.Filter
	// Idempotent allows the task to run again on another node when its
	// worker is lost (bounded by MaxAttempts). A task that is not runs at
	// most once: if its worker is lost, it is lost.
	Idempotent bool
	// Sign attaches a signed origin link (see Chain), so that a node
	// receiving the task can forward it with proof of where it came from.
	Sign bool
	// Chain is the chain of a task this node received and forwards (its
	// Task.Chain): Submit adds a link for the node it places the task on.
	// ID, Skill and Params must be the received task's.
	Chain Chain
}

// Event is a progress event of a task.
type Event struct {
	Seq  uint64          `json:"seq"`
	Name string          `json:"name"`
	Data json.RawMessage `json:"data"`
	Time time.Time       `json:"time"` // when the submitter received it
}

// Info is what the submitter knows of a task.
type Info struct {
	ID    ID     `json:"id"`
	Skill string `json:"skill"`
	State State  `json:"state"`
	// Status and Output are the result of a succeeded task.
	Status string          `json:"status,omitempty"`
	Output json.RawMessage `json:"output,omitempty"`
	// Error says why a task failed, was cancelled or lost.
	Error *Error `json:"error,omitempty"`
	// Node is the worker the task is placed on; zero until placed.
	Node       identity.NodeID `json:"node,omitzero"`
	Where      string          `json:"where,omitempty"`
	Priority   int             `json:"priority"`
	Deadline   time.Time       `json:"deadline,omitzero"`
	Idempotent bool            `json:"idempotent,omitempty"`
	// Attempts counts the placements that were accepted.
	Attempts int       `json:"attempts"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
	// Events counts the events received; the last MaxEvents are kept.
	Events uint64 `json:"events"`
}

// record is one task the submitter holds: what it persists (data) and
// what it keeps in memory only.
type record struct {
	data recordData

	hidden   bool // being submitted: not listed, not persisted
	placing  bool // being placed again: Wait holds on until it is done
	wait     bool // submitted by Run: the worker may answer with the result
	events   []Event
	lastSeq  uint64
	changed  chan struct{} // closed at the next change; nil while nobody waits
	syncMiss int           // syncs in a row the worker could not answer
}

// recordData is a record as persisted.
type recordData struct {
	Info
	Params json.RawMessage   `json:"params"`
	Chain  Chain             `json:"chain,omitempty"`
	Sign   bool              `json:"sign,omitempty"`
	Pinned bool              `json:"pinned,omitempty"` // placed by NodeID, not by filter
	Tried  []identity.NodeID `json:"tried,omitempty"`
}

// Submitter submits tasks and keeps their records: the state, progress
// events and result of each, by id. It keeps a results stream open to
// each worker it has tasks on, over which the worker pushes their events
// and results (see ResultsService).
//
// A submitter marks a task lost when the session with its worker goes
// down, when the worker answers a sync without it, or after three syncs
// in a row the worker could not answer; an idempotent task is then placed
// again, with the same id, on a node not tried yet. A task a worker gives
// back unstarted (it is shutting down) is placed again whether
// idempotent or not.
//
// Goroutines: one watching peer events, one running the sweeps and
// syncs, one per worker it has unfinished tasks on (the results stream;
// it ends 30 s after the last), one per worker with submits queued behind
// those in flight, one per worker with acknowledgements to send, at most
// 16 re-placing lost tasks, and with a StorePath one committing to the
// file.
type Submitter struct {
	m      *mesh.Mesh
	cli    *rpc.Client
	placer *placement.Placer
	cfg    SubmitterConfig
	log    *slog.Logger
	store  *store

	// mu guards the records and the indexes below. Methods named
	// ...Locked must be called with mu held.
	mu      sync.Mutex
	recs    map[ID]*record
	open    map[identity.NodeID]map[ID]*record // unfinished, accepted, by worker
	finals  []ID                               // finished records, in order of finishing
	closed  bool
	catalog map[identity.NodeID]cachedCatalog

	recv map[identity.NodeID]*receiver // guarded by mu

	pipesMu     sync.Mutex // guards pipes, acks and pipesClosed
	pipes       map[identity.NodeID]*pipe
	acks        map[identity.NodeID]*ackState
	pipesClosed bool

	redispatch chan struct{} // a semaphore of maxRedispatch
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	stats      submitterCounters

	beforeDelivery func() // a test hook: runs as a delivery arrives
}

type cachedCatalog struct {
	hash   string
	skills []SkillInfo
}

type submitterCounters struct {
	submitted, refusals, failedPlacements, delivered, unknown atomic.Uint64
	lost, replaced, late, evicted, eventsDropped              atomic.Uint64
	byCode                                                    codeCounts // refusals, by code (stats.go)
}

// SubmitterStats is a snapshot of a Submitter's counters.
type SubmitterStats struct {
	// Records is the number of records held, Open those unfinished.
	Records, Open int
	// Submitted counts tasks a worker accepted; Refusals counts refusals
	// by a worker (the next candidate was tried); FailedPlacements counts
	// Submits that found no node to take the task.
	Submitted, Refusals, FailedPlacements uint64
	// Delivered counts items (events and results) received; Unknown those
	// for tasks this submitter does not hold or did not place there.
	Delivered, Unknown uint64
	// Lost counts tasks marked lost, Replaced those placed again, Late
	// the results refused with LATE_RESULT.
	Lost, Replaced, Late uint64
	// Evicted counts records dropped for MaxRecords; EventsDropped the
	// events dropped for MaxEvents.
	Evicted, EventsDropped uint64
}

// NewSubmitter starts a submitter on m. It serves nothing: it calls the
// workers, and they answer on the results streams it opens. With a
// StorePath it loads the records kept there and asks their workers at
// once what became of the unfinished ones.
func NewSubmitter(m *mesh.Mesh, cfg SubmitterConfig) (*Submitter, error) {
	cfg.setDefaults()
	s := &Submitter{
		m:          m,
		cli:        rpc.NewClient(m, rpc.ClientOptions{}),
		placer:     placement.New(m, placement.Config{Prefix: LoadPrefix, Self: m.ID()}),
		cfg:        cfg,
		log:        cfg.Logger,
		recs:       make(map[ID]*record),
		open:       make(map[identity.NodeID]map[ID]*record),
		catalog:    make(map[identity.NodeID]cachedCatalog),
		pipes:      make(map[identity.NodeID]*pipe),
		acks:       make(map[identity.NodeID]*ackState),
		recv:       make(map[identity.NodeID]*receiver),
		redispatch: make(chan struct{}, maxRedispatch),
	}
	st, err := openStore(cfg.StorePath, s.snapshot)
	if err != nil {
		return nil, err
	}
	s.store = st
	orphans, err := s.loadRecords()
	if err != nil {
		st.close()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go s.watchPeers()
	go s.loop()
	s.mu.Lock()
	for node := range s.open {
		s.ensureReceiverLocked(node) // the results that finished meanwhile come on it
	}
	for _, r := range orphans {
		s.replaceLocked(r, StateLost, &Error{Code: CodeLost, Task: r.data.ID, Message: "the submitter stopped while it placed the task again"}, false)
	}
	s.mu.Unlock()
	return s, nil
}

// loadRecords reads the store into memory. It returns the unfinished
// records that were being placed again when the submitter stopped.
func (s *Submitter) loadRecords() ([]*record, error) {
	var finals, orphans []*record
	err := s.store.load(func(id ID, data []byte) error {
		var d recordData
		if err := json.Unmarshal(data, &d); err != nil || d.ID != id || !d.State.valid() {
			s.log.Warn("task: skipping an unreadable record in the store", "id", id, "err", err)
			return nil
		}
		r := &record{data: d, lastSeq: d.Events}
		s.recs[id] = r
		switch {
		case d.State.Final():
			finals = append(finals, r)
		case d.Node.IsZero():
			orphans = append(orphans, r)
		default:
			s.openLocked(r)
		}
		return nil
	})
	slices.SortFunc(finals, func(a, b *record) int { return a.data.Updated.Compare(b.data.Updated) })
	for _, r := range finals {
		s.finals = append(s.finals, r.data.ID)
	}
	return orphans, err
}

// snapshot encodes records for the store.
func (s *Submitter) snapshot(ids []ID) (map[ID][]byte, []ID) {
	puts := make(map[ID][]byte, len(ids))
	var dels []ID
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		r := s.recs[id]
		if r == nil || r.hidden {
			dels = append(dels, id)
			continue
		}
		b, err := json.Marshal(&r.data)
		if err != nil {
			s.log.Error("task: encoding a record", "id", id, "err", err)
			continue
		}
		puts[id] = b
	}
	return puts, dels
}

// Close stops the submitter: it stops its goroutines, waits for the
// store's last commit, closes the file and drops the records it held in
// memory (Result, Wait, Events and List then find nothing). Tasks in flight keep running
// on their workers; a submitter started again with the same identity
// and StorePath receives their results. The rpc service stays registered
// and answers deliveries "unknown" (so workers forget them): close the
// rpc server or the node too.
func (s *Submitter) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.pipesMu.Lock()
	s.pipesClosed = true
	s.stopAcksLocked()
	s.pipesMu.Unlock()
	s.wg.Wait()
	err := s.store.close()
	s.mu.Lock()
	s.recs, s.open, s.finals, s.catalog, s.recv = nil, nil, nil, nil, nil // the memory goes with the submitter
	s.mu.Unlock()
	return err
}

// Stats returns a snapshot of the submitter's counters.
func (s *Submitter) Stats() SubmitterStats {
	s.mu.Lock()
	st := SubmitterStats{Records: len(s.recs)}
	for _, m := range s.open {
		st.Open += len(m)
	}
	s.mu.Unlock()
	c := &s.stats
	st.Submitted, st.Refusals, st.FailedPlacements = c.submitted.Load(), c.refusals.Load(), c.failedPlacements.Load()
	st.Delivered, st.Unknown = c.delivered.Load(), c.unknown.Load()
	st.Lost, st.Replaced, st.Late = c.lost.Load(), c.replaced.Load(), c.late.Load()
	st.Evicted, st.EventsDropped = c.evicted.Load(), c.eventsDropped.Load()
	return st
}

// Submit places a task on a node that can run it and returns its id once
// the node has queued it. With Request.Node it tries that node only; else
// the nodes whose capabilities offer the skill (tag "skill:<name>") and
// match Where, best first (see package placement), moving on when one
// refuses (RESOURCE_EXHAUSTED, UNKNOWN_SKILL) or cannot be reached, at
// most MaxCandidates. It fails with NO_WORKER when no node matches, with
// the last refusal's code when all refused (the error names the skill,
// the filter and each refusal), with CONTRACT_VIOLATION, LIMIT_EXCEEDED
// or PROVENANCE when the task itself is refused, or with ctx's error.
// When the outcome of a try is unknown (the call broke after the request
// went out), a task that is not idempotent is not tried elsewhere: Submit
// fails, and the worker, which the submitter then answers that it holds
// no such task, drops it.
func (s *Submitter) Submit(ctx context.Context, req Request) (ID, error) {
	return s.submit(ctx, req, false)
}

// Run submits a task like Submit and waits for its result like Wait. The
// worker holds its reply a moment (2 ms) for the result of a task it
// starts at once, so a short task costs one round trip; a longer one goes
// on like a submitted task, its result arriving on the results stream.
// When ctx ends the task goes on: Wait, Result and Cancel take its id,
// which the returned Info carries whenever the task was placed.
func (s *Submitter) Run(ctx context.Context, req Request) (Info, error) {
	id, err := s.submit(ctx, req, true)
	if err != nil {
		return Info{ID: id}, err
	}
	in, err := s.Wait(ctx, id)
	in.ID = id
	return in, err
}

// submit is Submit; wait asks the worker for the result in its reply.
func (s *Submitter) submit(ctx context.Context, req Request, wait bool) (ID, error) {
	if err := s.checkRequest(&req); err != nil {
		return ID{}, err
	}
	now := time.Now()
	id := req.ID
	if id.IsZero() {
		id = NewID(now)
	}
	r := &record{hidden: true, wait: wait}
	r.data = recordData{
		Info: Info{
			ID: id, Skill: req.Skill, State: StateQueued, Priority: req.Priority, Deadline: req.Deadline,
			Idempotent: req.Idempotent, Created: now, Updated: now, Where: req.Where.String(),
		},
		Params: req.Params, Chain: req.Chain, Sign: req.Sign, Pinned: !req.Node.IsZero(),
	}
	if r.data.Pinned {
		r.data.Node = req.Node
		r.data.Where = ""
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ID{}, ErrClosed
	}
	if old := s.recs[id]; old != nil {
		s.mu.Unlock()
		if old.hidden {
			return id, &Error{Code: CodeContractViolation, Task: id, Message: "this task is being submitted already"}
		}
		return id, nil
	}
	if err := s.makeRoomLocked(); err != nil {
		s.mu.Unlock()
		return ID{}, err
	}
	s.recs[id] = r
	s.mu.Unlock()

	inlined, err := s.place(ctx, r, req.Node, req.Where, nil)
	s.mu.Lock()
	if err != nil && !r.data.State.Final() {
		// Not placed; anything that reaches a worker is answered unknown.
		delete(s.recs, id)
		s.unopenLocked(r)
		s.mu.Unlock()
		s.stats.failedPlacements.Add(1)
		var te *Error
		if req.ID.IsZero() && errors.As(err, &te) {
			te.Task = ID{} // an id nobody will see again
		}
		return ID{}, err
	}
	r.hidden = false
	if r.data.State.Final() {
		s.finishedLocked(r)
	}
	s.mu.Unlock()
	if perr := s.store.persist(id); perr != nil {
		s.log.Error("task: storing a submitted task failed", "id", id, "err", perr)
	} else if inlined {
		s.queueAcks(r.data.Node, []ID{id}, nil)
	}
	return id, nil
}

// checkRequest validates a request before anything is sent.
func (s *Submitter) checkRequest(req *Request) error {
	bad := func(code Code, format string, args ...any) error {
		return &Error{Code: code, Task: req.ID, Skill: req.Skill, Message: fmt.Sprintf(format, args...)}
	}
	if req.Params == nil {
		req.Params = json.RawMessage("null")
	}
	switch {
	case !validName(req.Skill, MaxSkillName):
		return bad(CodeContractViolation, "invalid skill name: 1 to %d bytes of a-z, 0-9 and -._/", MaxSkillName)
	case len(req.Params) > s.cfg.MaxParamsSize:
		return bad(CodeLimitExceeded, "parameters of %d bytes exceed %d", len(req.Params), s.cfg.MaxParamsSize)
	case !json.Valid(req.Params):
		return bad(CodeContractViolation, "parameters are not one JSON value")
	case !req.Deadline.IsZero() && !time.Now().Before(req.Deadline):
		return bad(CodeTimeout, "the deadline has passed")
	case req.Node == s.m.ID():
		return bad(CodeNoWorker, "a node does not submit tasks to itself")
	case len(req.Chain) >= MaxChainLinks:
		return bad(CodeLimitExceeded, "the chain has %d links; forwarding adds one, at most %d", len(req.Chain), MaxChainLinks)
	case len(req.Chain) > 0 && req.Chain[len(req.Chain)-1].To != s.m.ID():
		return bad(CodeProvenance, "the chain does not end at this node")
	case len(req.Chain) > 0 && req.ID.IsZero():
		return bad(CodeProvenance, "forwarding a chain needs the task's id")
	}
	req.Params = slices.Clone(req.Params)
	return nil
}

// makeRoomLocked makes room for one more record under MaxRecords by
// dropping the oldest finished record.
func (s *Submitter) makeRoomLocked() error {
	for len(s.recs) >= s.cfg.MaxRecords {
		if len(s.finals) == 0 {
			return &Error{Code: CodeLimitExceeded, Message: fmt.Sprintf("%d unfinished tasks held, the limit", len(s.recs))}
		}
		id := s.finals[0]
		s.finals = s.finals[1:]
		if r := s.recs[id]; r != nil && r.data.State.Final() {
			delete(s.recs, id)
			s.stats.evicted.Add(1)
			s.store.persistAsync(id)
		}
	}
	return nil
}

// place tries the candidate nodes for a record until one accepts it. On
// success the record names the node and counts the attempt. inlined says
// the result came with the acceptance: the caller acknowledges it to the
// worker once the record is stored.
func (s *Submitter) place(ctx context.Context, r *record, node identity.NodeID, where capability.Filter, exclude []identity.NodeID) (inlined bool, err error) {
	d := &r.data
	fail := func(code Code, format string, args ...any) *Error {
		e := &Error{Code: code, Task: d.ID, Skill: d.Skill, Message: fmt.Sprintf(format, args...)}
		if node.IsZero() {
			e.Filter = where.String()
		} else {
			e.Node = node
		}
		return e
	}
	var cands []identity.NodeID
	if !node.IsZero() {
		cands = []identity.NodeID{node}
	} else {
		f := capability.AllOf(capability.HasTag(SkillTagPrefix+d.Skill), where)
		for _, c := range s.placer.Rank(f, capability.HasTag(HotTagPrefix+d.Skill), exclude) {
			cands = append(cands, c.ID)
		}
		if len(cands) == 0 {
			return false, fail(CodeNoWorker, "no node offers skill %q and matches %q", d.Skill, where.String())
		}
	}
	var refusals []string
	var last Code
	var accepted identity.NodeID
	defer func() {
		// A receiver started for a node that did not take the task ends
		// when it lingered long enough without one.
		s.mu.Lock()
		for _, n := range cands[:min(len(cands), s.cfg.MaxCandidates)] {
			if n != accepted {
				s.idleLocked(n)
			}
		}
		s.mu.Unlock()
	}()
	for _, n := range cands[:min(len(cands), s.cfg.MaxCandidates)] {
		it := &submitItem{ID: d.ID, Idempotent: d.Idempotent, Priority: int32(max(min(d.Priority, 1<<31-1), -1<<31)), Skill: d.Skill, Params: d.Params, Wait: r.wait}
		if !d.Deadline.IsZero() {
			if it.Timeout = time.Until(d.Deadline); it.Timeout <= 0 {
				return false, fail(CodeTimeout, "the deadline passed before a node took the task")
			}
			it.Timeout = max(it.Timeout, time.Millisecond)
		}
		switch {
		case len(d.Chain) > 0:
			it.Chain = d.Chain.Forward(s.m.Identity(), d.ID, n)
		case d.Sign:
			it.Chain = Chain{SignOrigin(s.m.Identity(), d.ID, d.Skill, d.Params, n)}
		}
		s.mu.Lock()
		d.Node = n // deliveries from n are accepted from now on
		s.ensureReceiverLocked(n)
		s.mu.Unlock()
		s.placer.Acquire(n)
		v, load, err := s.send(ctx, n, it)
		s.placer.Release(n)
		if err != nil {
			if ctx.Err() != nil {
				return false, fail(CodeCancelled, "%v (the task may have reached %s; it is dropped there)", ctx.Err(), n.Short())
			}
			var re *rpc.Error
			if errors.As(err, &re) && (re.Kind == rpc.KindNoRoute || re.Kind == rpc.KindCircuitOpen) {
				refusals = append(refusals, n.Short()+": unreachable")
				last = CodeNoWorker
				continue // nothing was sent
			}
			if d.Idempotent {
				refusals = append(refusals, n.Short()+": "+err.Error())
				last = CodeNoWorker
				continue
			}
			return false, &Error{Code: CodeLost, Task: d.ID, Skill: d.Skill, Node: n, Message: "the submit's outcome is unknown; not retried elsewhere (the task is not idempotent)", Err: err}
		}
		s.placer.Report(n, load)
		if v.State != 0 {
			accepted = n
			s.mu.Lock()
			d.Attempts++
			d.Tried = append(d.Tried, n)
			switch {
			case v.Final != nil:
				inlined = s.applyLocked(r, v.Final, n, time.Now())
			case d.State == StateQueued && v.State != StateQueued && !v.State.Final():
				d.State = v.State
			}
			if !d.State.Final() {
				s.openLocked(r)
			}
			s.mu.Unlock()
			s.stats.submitted.Add(1)
			return inlined, nil
		}
		s.stats.refusals.Add(1)
		s.stats.byCode.add(v.Code)
		switch v.Code {
		case CodeResourceExhausted, CodeUnknownSkill, CodePermissionDenied:
			refusals = append(refusals, n.Short()+": "+string(v.Code)+" "+v.Message)
			last = v.Code
			continue
		}
		return false, &Error{Code: v.Code, Task: d.ID, Skill: d.Skill, Node: n, Message: v.Message}
	}
	if last == "" {
		last = CodeNoWorker
	}
	return false, fail(last, "no node took the task: %s", joinShort(refusals))
}

// joinShort joins refusals for an error message, bounded.
func joinShort(parts []string) string {
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += "; "
		}
		out += p
		if len(out) > maxMessage {
			return truncate(out, maxMessage) + "..."
		}
	}
	return out
}

// openLocked indexes an unfinished, placed record under its worker.
func (s *Submitter) openLocked(r *record) {
	if s.closed {
		return
	}
	m := s.open[r.data.Node]
	if m == nil {
		m = make(map[ID]*record)
		s.open[r.data.Node] = m
	}
	m[r.data.ID] = r
}

// unopenLocked removes a record from the index of unfinished records.
func (s *Submitter) unopenLocked(r *record) {
	for node, m := range s.open {
		if _, ok := m[r.data.ID]; ok {
			delete(m, r.data.ID)
			if len(m) == 0 {
				delete(s.open, node)
				s.idleLocked(node)
			}
		}
	}
}

// changedLocked wakes the waiters of a record and stamps it.
func (s *Submitter) changedLocked(r *record, now time.Time) {
	r.data.Updated = now
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// changes returns a channel closed at the record's next change.
func (r *record) changes() <-chan struct{} {
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.changed
}

// finishedLocked files a record that just became final.
func (s *Submitter) finishedLocked(r *record) {
	s.unopenLocked(r)
	s.finals = append(s.finals, r.data.ID)
}

// info returns a record's Info, with its own copies.
func (r *record) info() Info {
	in := r.data.Info
	if in.Error != nil {
		e := *in.Error
		in.Error = &e
	}
	return in
}

// Result returns what the submitter knows of task id now, or an error of
// code NOT_FOUND.
func (s *Submitter) Result(id ID) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recs[id]
	if r == nil || r.hidden {
		return Info{}, &Error{Code: CodeNotFound, Task: id, Message: "no such task here"}
	}
	return r.info(), nil
}

// Wait waits until task id is final (or ctx ends) and returns its Info.
// For a task that did not succeed, the error is Info.Error: use errors.Is
// with the sentinels (ErrTimeout, ErrLost, ...).
func (s *Submitter) Wait(ctx context.Context, id ID) (Info, error) {
	for {
		s.mu.Lock()
		r := s.recs[id]
		if r == nil {
			s.mu.Unlock()
			return Info{}, &Error{Code: CodeNotFound, Task: id, Message: "no such task here"}
		}
		if r.data.State.Final() && !r.hidden && !r.placing {
			in := r.info()
			s.mu.Unlock()
			if in.Error != nil {
				return in, in.Error
			}
			return in, nil
		}
		ch := r.changes()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Info{}, ctx.Err()
		case <-s.ctx.Done():
			return Info{}, ErrClosed
		}
	}
}

// Events returns an iterator over task id's progress events: those kept
// (the last MaxEvents), then new ones as they arrive, until the task is
// final, ctx ends (the iterator yields ctx's error) or the task is
// unknown (NOT_FOUND).
func (s *Submitter) Events(ctx context.Context, id ID) func(yield func(Event, error) bool) {
	return func(yield func(Event, error) bool) {
		var next uint64 // the first sequence number not yielded
		for {
			s.mu.Lock()
			r := s.recs[id]
			if r == nil || r.hidden {
				s.mu.Unlock()
				yield(Event{}, &Error{Code: CodeNotFound, Task: id, Message: "no such task here"})
				return
			}
			i, _ := slices.BinarySearchFunc(r.events, next, func(e Event, seq uint64) int { return cmp.Compare(e.Seq, seq) })
			batch := slices.Clone(r.events[i:])
			final := r.data.State.Final()
			ch := r.changes()
			s.mu.Unlock()
			for _, e := range batch {
				if !yield(e, nil) {
					return
				}
				next = e.Seq + 1
			}
			if len(batch) > 0 {
				continue
			}
			if final {
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
				yield(Event{}, ctx.Err())
				return
			case <-s.ctx.Done():
				yield(Event{}, ErrClosed)
				return
			}
		}
	}
}

// ListFilter selects tasks for List. Zero fields select everything.
type ListFilter struct {
	State State
	Skill string
	Node  identity.NodeID
	// Limit bounds the tasks returned (the newest); 0 means no bound.
	Limit int
}

// List returns the tasks that match f, oldest first, without their
// outputs (Result has them).
func (s *Submitter) List(f ListFilter) []Info {
	s.mu.Lock()
	var out []Info
	for _, r := range s.recs {
		d := &r.data
		if r.hidden || (f.State != 0 && d.State != f.State) || (f.Skill != "" && d.Skill != f.Skill) || (!f.Node.IsZero() && d.Node != f.Node) {
			continue
		}
		in := r.info()
		in.Output = nil
		out = append(out, in)
	}
	s.mu.Unlock()
	// By creation, then id: an id orders by its millisecond only, and two
	// tasks submitted in the same one by their random part.
	slices.SortFunc(out, func(a, b Info) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}

// Cancel asks the worker to cancel task id: a queued task ends cancelled
// at once; a running one has its handler's context cancelled and ends
// cancelled when the handler returns (Wait for it). Cancelling a final
// task does nothing.
func (s *Submitter) Cancel(ctx context.Context, id ID) error {
	s.mu.Lock()
	r := s.recs[id]
	if r == nil || r.hidden {
		s.mu.Unlock()
		return &Error{Code: CodeNotFound, Task: id, Message: "no such task here"}
	}
	if r.data.State.Final() {
		s.mu.Unlock()
		return nil
	}
	node := r.data.Node
	s.mu.Unlock()
	resp, err := s.cli.Call(ctx, node, WorkerService, appendIDs(nil, opCancel, []ID{id}))
	if err != nil {
		return &Error{Code: asCallCode(err), Task: id, Node: node, Message: "cancel", Err: err}
	}
	states, err := parseStates(resp)
	if err != nil || len(states) != 1 {
		return &Error{Code: CodeHandlerError, Task: id, Node: node, Message: "bad cancel reply", Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.data.State.Final() || r.data.Node != node {
		return nil
	}
	switch states[0] {
	case 0:
		s.endLocked(r, StateCancelled, &Error{Code: CodeCancelled, Task: id, Node: node, Message: "cancelled; the worker no longer held the task"})
	case StateCancelled:
		s.endLocked(r, StateCancelled, &Error{Code: CodeCancelled, Task: id, Node: node, Message: "cancelled by the submitter"})
	}
	return nil
}

// asCallCode is the code of an rpc failure.
func asCallCode(err error) Code {
	var re *rpc.Error
	if errors.As(err, &re) && re.Kind == rpc.KindTimeout {
		return CodeTimeout
	}
	if errors.As(err, &re) && re.Kind == rpc.KindCancelled {
		return CodeCancelled
	}
	return CodeLost
}

// endLocked makes a record final with state and err (nil for success)
// and schedules it for the store.
func (s *Submitter) endLocked(r *record, state State, err *Error) {
	r.data.State = state
	r.data.Error = err
	s.changedLocked(r, time.Now())
	if !r.hidden {
		s.finishedLocked(r)
		s.store.persistAsync(r.data.ID)
	}
}
