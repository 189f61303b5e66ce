package task

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/rpc"
)

// WorkerConfig configures a Worker. The zero value of every field is a
// documented default.
type WorkerConfig struct {
	// MaxRunning bounds the tasks running at once, all skills together.
	// 0 means DefaultMaxRunning.
	MaxRunning int
	// QueueSize bounds the tasks waiting to run; a submit beyond it is
	// refused with RESOURCE_EXHAUSTED. 0 means DefaultQueueSize.
	QueueSize int
	// MaxPerSubmitter bounds the tasks one submitter holds here: queued,
	// running, or finished with the result not yet acknowledged. 0 means
	// DefaultMaxPerSubmitter.
	MaxPerSubmitter int
	// MaxParamsSize, MaxOutputSize and MaxEventSize bound, in bytes, a
	// task's parameters (larger ones are refused with LIMIT_EXCEEDED), a
	// handler's output (a larger one fails the task with LIMIT_EXCEEDED)
	// and one event's data (Emit fails). 0 means the Default of each.
	MaxParamsSize, MaxOutputSize, MaxEventSize int
	// MaxPendingEvents bounds one task's events not yet delivered; Emit
	// fails with RESOURCE_EXHAUSTED beyond it. 0 means
	// DefaultMaxPendingEvents.
	MaxPendingEvents int
	// MaxUnacked bounds the bytes of results and events one submitter
	// has not acknowledged; beyond it the submitter's new tasks are
	// refused with RESOURCE_EXHAUSTED. 0 means DefaultMaxUnacked.
	MaxUnacked int
	// ResultRetention is how long a result waits for its submitter to
	// acknowledge it before the worker drops it. 0 means
	// DefaultResultRetention.
	ResultRetention time.Duration
	// LoadInterval is how often the load is re-advertised when it
	// changed. 0 means DefaultLoadInterval.
	LoadInterval time.Duration
	// CallTimeout bounds one delivery call. 0 means DefaultCallTimeout.
	CallTimeout time.Duration
	// Logger receives handler panics and delivery failures. Nil discards
	// them.
	Logger *slog.Logger
}

func (c *WorkerConfig) setDefaults() {
	orDefault(&c.MaxRunning, DefaultMaxRunning)
	orDefault(&c.QueueSize, DefaultQueueSize)
	orDefault(&c.MaxPerSubmitter, DefaultMaxPerSubmitter)
	orDefault(&c.MaxParamsSize, DefaultMaxParamsSize)
	orDefault(&c.MaxOutputSize, DefaultMaxOutputSize)
	orDefault(&c.MaxEventSize, DefaultMaxEventSize)
	orDefault(&c.MaxPendingEvents, DefaultMaxPendingEvents)
	orDefault(&c.MaxUnacked, DefaultMaxUnacked)
	orDefault(&c.ResultRetention, DefaultResultRetention)
	orDefault(&c.LoadInterval, DefaultLoadInterval)
	orDefault(&c.CallTimeout, DefaultCallTimeout)
	c.Logger = orDiscard(c.Logger)
}

// orDefault sets *v to d when it is zero or negative.
func orDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// orDiscard returns l, or a logger that discards everything if l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Worker runs the tasks submitters send it, for the skills registered
// with Register. It serves the rpc service WorkerService on the node's
// rpc server and advertises its skills and load in the node's
// capabilities (see docs/TASKS.md).
//
// Goroutines: one per running task (its handler) and one that
// re-advertises the load; each submitter's results stream runs on the rpc
// server's goroutine for its call, and ends when it broke, was replaced,
// or sent nothing for 5 minutes.
type Worker struct {
	m   *mesh.Mesh
	cli *rpc.Client
	cfg WorkerConfig
	log *slog.Logger

	skills   atomic.Pointer[map[string]*skillState] // copy on write, under mu
	commands atomic.Pointer[map[string]CommandHandler]

	advMu sync.Mutex // serialises advertisements, so the last one wins

	// mu guards the scheduling state below and every job's fields.
	// Methods named ...Locked must be called with mu held.
	mu        sync.Mutex
	order     []*skillState // registered skills, in registration order
	jobs      map[ID]*job
	queued    int
	running   int
	deadlines jobHeap     // queued jobs with a deadline
	deadline  *time.Timer // fires at the earliest queued deadline
	// notices holds the jobs started, oldest first, until startNotice
	// after their start, when the submitter of one still running is told
	// (one timer for all, armed while the list is not empty).
	notices     []*job
	noticeTimer *time.Timer
	epoch       time.Time // the worker's start: jobs' start times count from it
	seq         uint64
	subs        map[identity.NodeID]*subState
	done        tombstoneSet
	draining    bool
	loadDirty   bool
	stopped     bool
	drained     chan struct{} // closed when draining and nothing runs
	catalog     []byte        // the skills' JSON, served by opCatalog
	catalogHash string        // its hash, advertised

	stop     chan struct{}   // closed when Shutdown ends
	ctx      context.Context // ends with stop: cancels deliveries in flight
	cancel   context.CancelFunc
	handlers sync.WaitGroup
	workers  sync.WaitGroup // load loop and senders
	stats    workerCounters
}

// skillState is one registered skill and its queue. Its fields other
// than skill, c and limit are guarded by Worker.mu.
type skillState struct {
	skill   Skill
	c       *contract
	limit   int
	running int
	queue   jobHeap
	hot     bool
}

// job is one task the worker holds, from admission until its result is
// acknowledged. Guarded by Worker.mu.
type job struct {
	id         ID
	from       identity.NodeID // the session peer that sent it
	chain      Chain
	sk         *skillState
	sub        *subState
	params     []byte
	priority   int32
	deadline   time.Time
	seq        uint64
	idempotent bool

	state    State
	qi, di   int // indexes in the run and deadline queues; -1 when out
	cancel   context.CancelFunc
	stopMsg  string        // why the worker cancelled it ("" if it did not)
	started  time.Duration // since Worker.epoch: the job's start, for its notice
	noticed  bool          // the submitter was told it runs (started or an event)
	events   uint64        // events emitted
	pending  int           // events emitted and not yet acknowledged
	final    *deliverItem
	finished time.Time
	inline   chan *deliverItem // a submit reply waiting for the result; nil if none
}

type workerCounters struct {
	accepted, refused, duplicates                    atomic.Uint64
	succeeded, failed, cancelled, timedOut, handBack atomic.Uint64
	panics, delivered, deliveryFailures, dropped     atomic.Uint64
	byCode                                           codeCounts // refused, by code (stats.go)
}

// WorkerStats is a snapshot of a Worker's counters.
type WorkerStats struct {
	// Running and Queued are the tasks running and waiting now; Limit is
	// MaxRunning.
	Running, Queued, Limit int
	// Accepted counts tasks queued; Duplicates counts submits of a task
	// already held (answered, not run again); Refused counts refused
	// submits.
	Accepted, Duplicates, Refused uint64
	// Succeeded, Failed and Cancelled count finished tasks; TimedOut
	// counts those of them that failed with TIMEOUT; HandedBack counts
	// queued tasks given back unstarted at shutdown.
	Succeeded, Failed, Cancelled, TimedOut, HandedBack uint64
	// Panics counts handlers that panicked (failed HANDLER_ERROR).
	Panics uint64
	// Delivered counts the chunks sent on results streams,
	// DeliveryFailures the streams that broke (their unacknowledged
	// results go again on the next), Dropped the results given up after
	// ResultRetention or refused by their submitter.
	Delivered, DeliveryFailures, Dropped uint64
	// Unacked is the bytes of results and events awaiting
	// acknowledgement, all submitters together.
	Unacked int
}

// NewWorker starts a worker on m, serving WorkerService on srv (the rpc
// server of m). It has no skills until Register.
func NewWorker(m *mesh.Mesh, srv *rpc.Server, cfg WorkerConfig) (*Worker, error) {
	cfg.setDefaults()
	w := &Worker{
		m:         m,
		cli:       rpc.NewClient(m, rpc.ClientOptions{}),
		cfg:       cfg,
		log:       cfg.Logger,
		jobs:      make(map[ID]*job),
		subs:      make(map[identity.NodeID]*subState),
		done:      newTombstoneSet(tombstones),
		stop:      make(chan struct{}),
		deadlines: newDeadlineQueue(),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.skills.Store(&map[string]*skillState{})
	w.commands.Store(&map[string]CommandHandler{})
	w.deadline = time.AfterFunc(time.Hour, w.expire)
	w.deadline.Stop()
	w.epoch = time.Now()
	w.noticeTimer = time.AfterFunc(time.Hour, w.notice)
	w.noticeTimer.Stop()
	if err := srv.Handle(WorkerService, w.serve); err != nil {
		return nil, err
	}
	if err := srv.HandleStream(ResultsService, w.serveResults); err != nil {
		return nil, err
	}
	w.workers.Add(1)
	go w.loadLoop()
	return w, nil
}

// Register adds a skill and advertises it. It fails with ErrInvalidSkill
// (the error says why), ErrSkillExists, ErrClosed after Shutdown, or the
// error of announcing the new capability set (too many tags, say), in
// which case the skill is not registered.
func (w *Worker) Register(s Skill) error {
	c, err := s.compile()
	if err != nil {
		return err
	}
	limit := w.cfg.MaxRunning
	if s.Concurrency > 0 {
		limit = min(s.Concurrency, limit)
	}
	ss := &skillState{skill: s, c: c, limit: limit, hot: !s.Cold, queue: newRunQueue()}
	w.mu.Lock()
	if w.draining {
		w.mu.Unlock()
		return ErrClosed
	}
	skills := *w.skills.Load()
	if _, ok := skills[s.Name]; ok {
		w.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrSkillExists, s.Name)
	}
	next := maps.Clone(skills)
	next[s.Name] = ss
	w.skills.Store(&next)
	w.order = append(w.order, ss)
	w.recatalogLocked()
	w.mu.Unlock()
	if err := w.advertise(); err != nil {
		w.Unregister(s.Name)
		return err
	}
	return nil
}

// Unregister removes a skill and withdraws it from the node's
// capabilities. Its queued tasks are given back unstarted (their
// submitters place them elsewhere); its running tasks go on until their
// handlers return. It reports whether the skill was registered.
func (w *Worker) Unregister(name string) bool {
	w.mu.Lock()
	ss := (*w.skills.Load())[name]
	if ss == nil {
		w.mu.Unlock()
		return false
	}
	next := maps.Clone(*w.skills.Load())
	delete(next, name)
	w.skills.Store(&next)
	w.order = slices.DeleteFunc(w.order, func(x *skillState) bool { return x == ss })
	w.recatalogLocked()
	w.handBackLocked(ss, "the skill was withdrawn before the task started")
	w.mu.Unlock()
	w.advertise()
	return true
}

// handBackLocked gives a skill's queued tasks back to their submitters,
// unstarted.
func (w *Worker) handBackLocked(ss *skillState, why string) {
	for j := ss.queue.head(); j != nil; j = ss.queue.head() {
		w.stats.handBack.Add(1)
		w.finishLocked(j, &deliverItem{Kind: itemFinal, ID: j.id, State: StateFailed, Code: CodeResourceExhausted, Message: why, Unstarted: true})
	}
}

// SetHot marks a registered skill ready now (hot) or only supported.
// Placement prefers hot skills; a skill with no free slot is not
// advertised as hot whatever this says.
func (w *Worker) SetHot(name string, hot bool) {
	w.mu.Lock()
	if ss := (*w.skills.Load())[name]; ss != nil {
		ss.hot = hot
	}
	w.mu.Unlock()
	w.advertise()
}

// Catalog returns the worker's skills as its catalog describes them, and
// the hash it advertises.
func (w *Worker) Catalog() ([]SkillInfo, string) {
	w.mu.Lock()
	raw, hash := w.catalog, w.catalogHash
	w.mu.Unlock()
	var infos []SkillInfo
	json.Unmarshal(raw, &infos)
	return infos, hash
}

// recatalogLocked rebuilds the catalog after the skills changed.
func (w *Worker) recatalogLocked() {
	infos := make([]SkillInfo, 0, len(w.order))
	for _, ss := range w.order {
		infos = append(infos, ss.skill.info(ss.c, ss.limit))
	}
	slices.SortFunc(infos, func(a, b SkillInfo) int { return strings.Compare(a.Name, b.Name) })
	w.catalog, _ = json.Marshal(infos) // cannot fail: the schemas were parsed
	w.catalogHash = catalogHash(w.catalog)
}

// Load returns the worker's current load.
func (w *Worker) Load() placement.Load {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.loadLocked()
}

func (w *Worker) loadLocked() placement.Load {
	return placement.Load{Running: w.running, Queued: w.queued, Limit: w.cfg.MaxRunning}
}

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() WorkerStats {
	w.mu.Lock()
	st := WorkerStats{Running: w.running, Queued: w.queued, Limit: w.cfg.MaxRunning}
	for _, s := range w.subs {
		st.Unacked += s.unacked
	}
	w.mu.Unlock()
	c := &w.stats
	st.Accepted, st.Duplicates, st.Refused = c.accepted.Load(), c.duplicates.Load(), c.refused.Load()
	st.Succeeded, st.Failed, st.Cancelled = c.succeeded.Load(), c.failed.Load(), c.cancelled.Load()
	st.TimedOut, st.HandedBack, st.Panics = c.timedOut.Load(), c.handBack.Load(), c.panics.Load()
	st.Delivered, st.DeliveryFailures, st.Dropped = c.delivered.Load(), c.deliveryFailures.Load(), c.dropped.Load()
	return st
}

// serve answers the calls of WorkerService.
func (w *Worker) serve(ctx context.Context, req []byte) ([]byte, error) {
	from, _ := rpc.CallerID(ctx)
	if len(req) == 0 {
		return nil, rpc.Errorf(rpc.StatusBadRequest, "empty request")
	}
	body := req[1:]
	var reply []byte
	var err error
	switch req[0] {
	case opSubmit:
		reply, err = w.serveSubmit(from, body)
	case opCancel:
		reply, err = w.serveCancel(from, body)
	case opSync:
		reply, err = w.serveSync(from, body)
	case opAck:
		var acked, unknown []ID
		if acked, unknown, err = parseAck(body); err == nil {
			w.mu.Lock()
			w.ackLocked(from, acked, unknown)
			w.mu.Unlock()
		}
	case opCatalog:
		w.mu.Lock()
		raw, hash := w.catalog, w.catalogHash
		w.mu.Unlock()
		return appendCatalog(nil, hash, raw), nil
	case opCommand:
		return w.serveCommand(ctx, from, body)
	default:
		return nil, rpc.Errorf(rpc.StatusBadRequest, "unknown op %#x", req[0])
	}
	if err != nil {
		return nil, rpc.Errorf(rpc.StatusBadRequest, "%v", err)
	}
	return reply, nil
}

// serveSubmit admits a batch of tasks.
func (w *Worker) serveSubmit(from identity.NodeID, body []byte) ([]byte, error) {
	items, acked, unknown, err := parseSubmit(body)
	if err != nil {
		return nil, err
	}
	skills := *w.skills.Load()
	r := submitReply{Verdicts: make([]verdict, len(items))}
	// The checks that cost CPU run before taking the lock.
	ok := make([]*skillState, len(items))
	for i := range items {
		it := &items[i]
		r.Verdicts[i].ID = it.ID
		if e := w.check(skills, from, it); e != nil {
			r.Verdicts[i].Code, r.Verdicts[i].Message = e.Code, truncate(e.Message, maxMessage)
			continue
		}
		ok[i] = skills[it.Skill]
	}
	now := time.Now()
	w.mu.Lock()
	w.ackLocked(from, acked, unknown)
	for i := range items {
		if ok[i] == nil {
			continue
		}
		st, e := w.admitLocked(from, &items[i], ok[i], now)
		if e != nil {
			r.Verdicts[i].Code, r.Verdicts[i].Message = e.Code, truncate(e.Message, maxMessage)
			continue
		}
		r.Verdicts[i].State = st
	}
	w.dispatchLocked()
	r.Load = w.loadLocked()
	var waiting *job
	var inline chan *deliverItem
	if len(items) == 1 && items[0].Wait && r.Verdicts[0].State != 0 {
		if j := w.jobs[items[0].ID]; j != nil && j.state == StateRunning && j.inline == nil && j.events == 0 {
			waiting, inline = j, make(chan *deliverItem, 1)
			j.inline = inline
			r.Verdicts[0].State = StateRunning
		}
	}
	w.mu.Unlock()
	if waiting != nil {
		if it := w.awaitInline(waiting, inline); it != nil {
			r.Verdicts[0].State, r.Verdicts[0].Final = it.State, it
		}
	}
	for _, v := range r.Verdicts {
		if v.State == 0 {
			w.stats.refused.Add(1)
			w.stats.byCode.add(v.Code)
		}
	}
	return appendSubmitReply(nil, &r), nil
}

// inlineTimers keeps the timers of awaitInline for the next.
var inlineTimers sync.Pool

// awaitInline waits up to inlineWait for the result of a job a submit
// reply waits on, which finishLocked sends on ch, and returns it, or nil
// when the job runs on (its result then goes on the results stream).
func (w *Worker) awaitInline(j *job, ch chan *deliverItem) *deliverItem {
	t, _ := inlineTimers.Get().(*time.Timer)
	if t == nil {
		t = time.NewTimer(inlineWait)
	} else {
		t.Reset(inlineWait)
	}
	defer func() {
		t.Stop() // since Go 1.23 a stopped timer's channel holds nothing
		inlineTimers.Put(t)
	}()
	select {
	case it := <-ch:
		return it
	case <-t.C:
	}
	w.mu.Lock()
	if j.inline == ch {
		j.inline = nil
	}
	w.mu.Unlock()
	select {
	case it := <-ch: // finished before the lock
		return it
	default:
		return nil
	}
}

// check runs the checks of one submitted task that need no lock: the
// skill, the sizes, the provenance chain and the input contract.
func (w *Worker) check(skills map[string]*skillState, from identity.NodeID, it *submitItem) *Error {
	ss := skills[it.Skill]
	switch {
	case it.ID.IsZero():
		return &Error{Code: CodeContractViolation, Message: "zero task id"}
	case ss == nil:
		return &Error{Code: CodeUnknownSkill, Message: fmt.Sprintf("no skill %q here", it.Skill)}
	case len(ss.skill.Groups) > 0 && !w.m.InGroup(from, ss.skill.Groups...):
		return &Error{Code: CodePermissionDenied, Message: fmt.Sprintf("skill %q is for the groups %v", it.Skill, ss.skill.Groups)}
	case len(it.Params) > w.cfg.MaxParamsSize:
		return &Error{Code: CodeLimitExceeded, Message: fmt.Sprintf("parameters of %d bytes exceed %d", len(it.Params), w.cfg.MaxParamsSize)}
	}
	if it.Chain != nil {
		if err := it.Chain.Verify(it.ID, it.Skill, it.Params, w.m.ID(), from); err != nil {
			return asError(err, CodeProvenance)
		}
	}
	if err := validate(ss.c.input, it.Params); err != nil {
		return &Error{Code: CodeContractViolation, Message: "parameters: " + err.Error()}
	}
	return nil
}

// admitLocked queues one checked task, or says why not. A task already
// held is answered with its state and not queued again.
func (w *Worker) admitLocked(from identity.NodeID, it *submitItem, ss *skillState, now time.Time) (State, *Error) {
	if j := w.jobs[it.ID]; j != nil {
		if j.from != from {
			return 0, &Error{Code: CodeContractViolation, Message: "task id in use by another submitter"}
		}
		w.stats.duplicates.Add(1)
		if j.final != nil && j.sub.stream != nil {
			w.resendLocked(j.sub) // the submitter may have missed it
		}
		return j.state, nil
	}
	if w.done.has(it.ID, now) {
		return 0, &Error{Code: CodeContractViolation, Message: "task already finished here and acknowledged"}
	}
	if w.draining {
		return 0, &Error{Code: CodeResourceExhausted, Message: "worker shutting down"}
	}
	if w.queued >= w.cfg.QueueSize {
		return 0, &Error{Code: CodeResourceExhausted, Message: fmt.Sprintf("queue full (%d tasks)", w.queued)}
	}
	sub := w.subLocked(from)
	if sub.held >= w.cfg.MaxPerSubmitter {
		return 0, &Error{Code: CodeResourceExhausted, Message: fmt.Sprintf("this submitter holds %d tasks here, the limit", sub.held)}
	}
	if sub.unacked >= w.cfg.MaxUnacked {
		return 0, &Error{Code: CodeResourceExhausted, Message: fmt.Sprintf("this submitter has %d bytes of results unacknowledged", sub.unacked)}
	}
	w.seq++
	j := &job{
		id: it.ID, from: from, chain: it.Chain, sk: ss, sub: sub, params: it.Params,
		priority: it.Priority, seq: w.seq, idempotent: it.Idempotent, state: StateQueued, qi: -1, di: -1,
	}
	if it.Timeout > 0 {
		j.deadline = now.Add(it.Timeout)
	}
	w.jobs[j.id] = j
	sub.held++
	w.queued++
	heap.Push(&ss.queue, j)
	if !j.deadline.IsZero() {
		heap.Push(&w.deadlines, j)
		if j.di == 0 {
			w.deadline.Reset(time.Until(j.deadline))
		}
	}
	w.loadDirty = true
	w.stats.accepted.Add(1)
	return StateQueued, nil
}

// subLocked returns the state of submitter node, creating it.
func (w *Worker) subLocked(node identity.NodeID) *subState {
	s := w.subs[node]
	if s == nil {
		s = &subState{node: node, wake: make(chan struct{}, 1)}
		w.subs[node] = s
	}
	return s
}

// dispatchLocked starts queued tasks while slots are free: each time the
// best head among the skills with a free slot.
func (w *Worker) dispatchLocked() {
	now := time.Now()
	for w.running < w.cfg.MaxRunning && !w.stopped {
		var best *skillState
		for _, ss := range w.order {
			if h := ss.queue.head(); ss.running < ss.limit && h != nil && (best == nil || runsBefore(h, best.queue.head())) {
				best = ss
			}
		}
		if best == nil {
			return
		}
		j := heap.Pop(&best.queue).(*job)
		w.deadlines.remove(j)
		if !j.deadline.IsZero() && !now.Before(j.deadline) {
			w.finishLocked(j, w.failure(j, CodeTimeout, "deadline passed while queued"))
			continue
		}
		w.startLocked(j)
	}
}

// startLocked runs a job's handler.
func (w *Worker) startLocked(j *job) {
	w.queued--
	w.running++
	j.sk.running++
	j.state = StateRunning
	var ctx context.Context
	if j.deadline.IsZero() {
		ctx, j.cancel = context.WithCancel(context.Background())
	} else {
		ctx, j.cancel = context.WithDeadline(context.Background(), j.deadline)
	}
	j.started = time.Since(w.epoch)
	if w.notices = append(w.notices, j); len(w.notices) == 1 {
		w.noticeTimer.Reset(startNotice)
	}
	w.loadDirty = true
	t := &Task{
		ID: j.id, Skill: j.sk.skill.Name, Params: j.params, Priority: int(j.priority), Deadline: j.deadline,
		From: j.from, Origin: j.from, Chain: j.chain, Idempotent: j.idempotent, w: w, j: j,
	}
	if j.chain != nil {
		t.Origin = j.chain.Origin()
	}
	w.handlers.Add(1)
	go w.run(ctx, t)
}

// run calls a task's handler and records its outcome.
func (w *Worker) run(ctx context.Context, t *Task) {
	defer w.handlers.Done()
	j := t.j
	res, err := w.call(ctx, t)
	item := w.outcome(ctx, j, res, err)
	w.mu.Lock()
	if !j.state.Final() { // Shutdown may have finished it already
		w.finishLocked(j, item)
		w.dispatchLocked()
	}
	w.mu.Unlock()
	j.cancel()
}

// call runs the handler, turning a panic into an error.
func (w *Worker) call(ctx context.Context, t *Task) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			w.stats.panics.Add(1)
			w.log.Error("task handler panicked", "skill", t.Skill, "task", t.ID, "panic", p)
			err = &Error{Code: CodeHandlerError, Message: "handler panicked"}
		}
	}()
	return t.j.sk.skill.Handler(ctx, t)
}

// outcome turns what a handler returned into the task's final item,
// checking the result against the skill's contract.
func (w *Worker) outcome(ctx context.Context, j *job, res Result, err error) *deliverItem {
	w.mu.Lock()
	stopMsg := j.stopMsg
	w.mu.Unlock()
	switch {
	case stopMsg != "":
		return w.failure(j, CodeCancelled, stopMsg)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return w.failure(j, CodeTimeout, "deadline passed while running")
	case err != nil:
		e := asError(err, CodeHandlerError)
		code := e.Code
		if !validCode(string(code)) || code == CodeLost {
			code = CodeHandlerError
		}
		return w.failure(j, code, e.Message)
	}
	status := res.Status
	if status == "" {
		status = DefaultStatus
	}
	out := res.Output
	if out == nil {
		out = json.RawMessage("null")
	}
	c := j.sk.c
	switch {
	case !slices.Contains(c.statuses, status):
		return w.failure(j, CodeContractViolation, fmt.Sprintf("status %q is not one of %v", truncate(status, maxLabel), c.statuses))
	case len(out) > w.cfg.MaxOutputSize:
		return w.failure(j, CodeLimitExceeded, fmt.Sprintf("output of %d bytes exceeds %d", len(out), w.cfg.MaxOutputSize))
	}
	if err := validate(c.output, out); err != nil {
		return w.failure(j, CodeContractViolation, "output: "+err.Error())
	}
	return &deliverItem{Kind: itemFinal, ID: j.id, State: StateSucceeded, Status: status, Output: out}
}

// failure is the final item of a task that did not succeed.
func (w *Worker) failure(j *job, code Code, msg string) *deliverItem {
	st := StateFailed
	if code == CodeCancelled {
		st = StateCancelled
	}
	return &deliverItem{Kind: itemFinal, ID: j.id, State: st, Code: code, Message: truncate(msg, maxMessage)}
}

// finishLocked records a job's final item and queues it for delivery.
func (w *Worker) finishLocked(j *job, item *deliverItem) {
	switch j.state {
	case StateQueued:
		j.sk.queue.remove(j)
		w.deadlines.remove(j)
		w.queued--
	case StateRunning:
		w.running--
		j.sk.running--
	}
	j.state = item.State
	j.finished = time.Now()
	j.params = nil
	item.Events = j.events
	j.final = item
	w.loadDirty = true
	switch {
	case item.State == StateSucceeded:
		w.stats.succeeded.Add(1)
	case item.State == StateCancelled:
		w.stats.cancelled.Add(1)
	default:
		w.stats.failed.Add(1)
		if item.Code == CodeTimeout {
			w.stats.timedOut.Add(1)
		}
	}
	j.sub.finals = append(j.sub.finals, j)
	switch {
	case j.inline != nil && j.events == 0:
		// The submit reply carries it; it stays unacknowledged like one
		// sent on the stream (and is sent there again on a new stream).
		j.inline <- item
		j.inline = nil
		j.sub.unacked += itemSize(item)
	case j.inline != nil:
		// Its events went on the stream: the result follows them there.
		j.inline <- nil
		j.inline = nil
		fallthrough
	default:
		w.enqueueLocked(j.sub, item)
	}
	w.checkDrainedLocked()
}

// notice tells the submitters of the tasks running for startNotice that
// they run, unless an event told them already, and re-arms its timer for
// the next.
func (w *Worker) notice() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	now := time.Since(w.epoch)
	n := 0
	for ; n < len(w.notices); n++ {
		j := w.notices[n]
		if wait := startNotice - (now - j.started); wait > 0 {
			w.noticeTimer.Reset(wait)
			break
		}
		if j.state == StateRunning && !j.noticed {
			j.noticed = true
			w.enqueueLocked(j.sub, &deliverItem{Kind: itemStarted, ID: j.id})
		}
	}
	clear(w.notices[:n])
	w.notices = w.notices[n:]
	if len(w.notices) == 0 {
		w.notices = nil // let the array go
	}
}

// expire fails the queued tasks whose deadline passed and re-arms the
// deadline timer.
func (w *Worker) expire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for j := w.deadlines.head(); j != nil && !now.Before(j.deadline); j = w.deadlines.head() {
		w.finishLocked(j, w.failure(j, CodeTimeout, "deadline passed while queued"))
	}
	if j := w.deadlines.head(); j != nil {
		w.deadline.Reset(j.deadline.Sub(now))
	}
}

// serveCancel cancels the tasks named, if the caller submitted them:
// a queued task ends cancelled at once; a running one has its context
// cancelled and ends cancelled when its handler returns. The reply gives
// each task's state (0: not held here).
func (w *Worker) serveCancel(from identity.NodeID, body []byte) ([]byte, error) {
	ids, err := parseIDs(body)
	if err != nil {
		return nil, err
	}
	states := make([]State, len(ids))
	w.mu.Lock()
	for i, id := range ids {
		j := w.jobs[id]
		if j == nil || j.from != from {
			continue
		}
		switch j.state {
		case StateQueued:
			w.finishLocked(j, w.failure(j, CodeCancelled, "cancelled by the submitter"))
		case StateRunning:
			w.stopLocked(j, "cancelled by the submitter")
		}
		states[i] = j.state
	}
	w.dispatchLocked()
	w.mu.Unlock()
	return appendStates(nil, states), nil
}

// stopLocked cancels a running job's context; the job ends cancelled
// with why when its handler returns.
func (w *Worker) stopLocked(j *job, why string) {
	if j.stopMsg == "" {
		j.stopMsg = why
		j.cancel()
	}
}

// serveSync answers a submitter that asks what became of its tasks, and
// sends again on its stream the results it did not acknowledge.
func (w *Worker) serveSync(from identity.NodeID, body []byte) ([]byte, error) {
	ids, err := parseIDs(body)
	if err != nil {
		return nil, err
	}
	states := make([]State, len(ids))
	w.mu.Lock()
	for i, id := range ids {
		if j := w.jobs[id]; j != nil && j.from == from {
			states[i] = j.state
		}
	}
	if s := w.subs[from]; s != nil && s.stream != nil {
		w.resendLocked(s) // the submitter may have missed a result
	}
	w.mu.Unlock()
	return appendStates(nil, states), nil
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Task is one task as its handler sees it.
type Task struct {
	ID    ID
	Skill string
	// Params are the parameters, valid against the skill's Input schema.
	// They are the handler's to keep.
	Params json.RawMessage
	// Priority and Deadline are what the submitter asked; Deadline is
	// zero when there is none (ctx carries it too).
	Priority int
	Deadline time.Time
	// From is the node that sent the task, authenticated by the session
	// it came over. Origin is the node that submitted it first: From,
	// or the verified signer of Chain's first link.
	From, Origin identity.NodeID
	// Chain is the task's verified forwarding chain; nil when From
	// submitted it directly. A handler that forwards the task passes it
	// in Request.Chain.
	Chain Chain
	// Idempotent is true when the submitter allows the task to run again
	// elsewhere.
	Idempotent bool

	w *Worker
	j *job
}

// Emit sends a progress event to the submitter, in order with the task's
// other events and before its result. data must be JSON (nil means null)
// valid against the skill's schema for the event. Emit fails with
// CONTRACT_VIOLATION (an undeclared event or invalid data),
// LIMIT_EXCEEDED (data larger than MaxEventSize), RESOURCE_EXHAUSTED
// (MaxPendingEvents not yet delivered: wait and emit again, or drop it),
// or CANCELLED when the task has ended.
func (t *Task) Emit(name string, data json.RawMessage) error {
	w, j := t.w, t.j
	c := j.sk.c
	if data == nil {
		data = json.RawMessage("null")
	}
	if !validName(name, maxLabel) {
		return &Error{Code: CodeContractViolation, Task: t.ID, Message: fmt.Sprintf("event name %q", truncate(name, maxLabel))}
	}
	if len(data) > w.cfg.MaxEventSize {
		return &Error{Code: CodeLimitExceeded, Task: t.ID, Message: fmt.Sprintf("event of %d bytes exceeds %d", len(data), w.cfg.MaxEventSize)}
	}
	var sch *jsonschema.Schema // nil: any JSON
	if c.events != nil {
		s, ok := c.events[name]
		if !ok {
			return &Error{Code: CodeContractViolation, Task: t.ID, Message: fmt.Sprintf("event %q is not declared", name)}
		}
		sch = s
	}
	if err := validate(sch, data); err != nil {
		return &Error{Code: CodeContractViolation, Task: t.ID, Message: fmt.Sprintf("event %q: %v", name, err)}
	}
	data = slices.Clone(data)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case j.state != StateRunning || j.stopMsg != "":
		return &Error{Code: CodeCancelled, Task: t.ID, Message: "the task has ended"}
	case j.pending >= w.cfg.MaxPendingEvents:
		return &Error{Code: CodeResourceExhausted, Task: t.ID, Message: fmt.Sprintf("%d events not yet delivered", j.pending)}
	}
	j.events++
	j.pending++
	j.noticed = true
	w.enqueueLocked(j.sub, &deliverItem{Kind: itemEvent, ID: j.id, Seq: j.events, Name: name, Data: data})
	return nil
}
