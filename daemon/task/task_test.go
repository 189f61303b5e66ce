package task_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
)

func TestSubmitAndWaitByID(t *testing.T) {
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, echo("echo"))
	id := p.submit(t, task.Request{Skill: "echo", Params: json.RawMessage(`{"x":1}`)})
	in, err := p.s.Wait(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != task.StateSucceeded || string(in.Output) != `{"x":1}` || in.Status != "success" || in.Node != p.wn.id() || in.Attempts != 1 {
		t.Fatalf("info %+v", in)
	}
	got, err := p.s.Result(id)
	if err != nil || got.State != task.StateSucceeded {
		t.Fatalf("Result = %+v, %v", got, err)
	}
	if _, err := p.s.Result(task.NewID(time.Now())); !errors.Is(err, task.ErrNotFound) {
		t.Fatalf("Result of an unknown id: %v", err)
	}
	if s := p.w.Stats(); s.Accepted != 1 || s.Succeeded != 1 {
		t.Fatalf("worker stats %+v", s)
	}
}

var objectWithN = json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}`)

// Parameters that break the input schema are refused before the handler
// runs; an output that breaks the output schema, or a status not
// declared, fails the task with CONTRACT_VIOLATION.
func TestContractViolations(t *testing.T) {
	var ran atomic.Int64
	sk := task.Skill{
		Name: "square", Input: objectWithN, Output: objectWithN, Statuses: []string{"success", "retry_later"},
		Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
			ran.Add(1)
			var in struct{ N int }
			json.Unmarshal(t.Params, &in)
			switch in.N {
			case 1:
				return task.Result{Output: json.RawMessage(`{"n":"one"}`)}, nil
			case 2:
				return task.Result{Status: "maybe", Output: json.RawMessage(`{"n":2}`)}, nil
			case 3:
				return task.Result{Status: "retry_later", Output: json.RawMessage(`{"n":3}`)}, nil
			}
			return task.Result{Output: fmt.Appendf(nil, `{"n":%d}`, in.N*in.N)}, nil
		},
	}
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, sk)
	_, err := p.s.Submit(ctxT(t), task.Request{Skill: "square", Node: p.wn.id(), Params: json.RawMessage(`{"n":"x"}`)})
	te := code(t, err, task.CodeContractViolation)
	if te.Node != p.wn.id() || !errors.Is(err, task.ErrContractViolation) {
		t.Fatalf("error %+v", te)
	}
	if ran.Load() != 0 {
		t.Fatal("the handler ran for invalid parameters")
	}
	for n, want := range map[int]task.Code{1: task.CodeContractViolation, 2: task.CodeContractViolation} {
		id := p.submit(t, task.Request{Skill: "square", Params: fmt.Appendf(nil, `{"n":%d}`, n)})
		in, err := p.s.Wait(ctxT(t), id)
		code(t, err, want)
		if in.State != task.StateFailed || in.Output != nil {
			t.Fatalf("n=%d: %+v", n, in)
		}
	}
	id := p.submit(t, task.Request{Skill: "square", Params: json.RawMessage(`{"n":3}`)})
	if in, err := p.s.Wait(ctxT(t), id); err != nil || in.Status != "retry_later" {
		t.Fatalf("declared status: %+v %v", in, err)
	}
	id = p.submit(t, task.Request{Skill: "square", Params: json.RawMessage(`{"n":7}`)})
	if in, err := p.s.Wait(ctxT(t), id); err != nil || string(in.Output) != `{"n":49}` {
		t.Fatalf("valid task: %+v %v", in, err)
	}
}

func TestInvalidSkillsRefused(t *testing.T) {
	n := newNode(t)
	w := n.worker(t, task.WorkerConfig{})
	h := echo("x").Handler
	for _, s := range []task.Skill{
		{Name: "", Handler: h},
		{Name: "Upper", Handler: h},
		{Name: "a:b", Handler: h},
		{Name: "nohandler"},
		{Name: "badschema", Input: json.RawMessage(`{"type":7}`), Handler: h},
		{Name: "notjson", Output: json.RawMessage(`{`), Handler: h},
		{Name: "remote", Input: json.RawMessage(`{"$ref":"http://example.com/s.json"}`), Handler: h},
		{Name: "badstatus", Statuses: []string{"OK!"}, Handler: h},
	} {
		if err := w.Register(s); !errors.Is(err, task.ErrInvalidSkill) {
			t.Errorf("Register(%q) = %v, want ErrInvalidSkill", s.Name, err)
		}
	}
	if err := w.Register(echo("ok")); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(echo("ok")); !errors.Is(err, task.ErrSkillExists) {
		t.Fatalf("second Register: %v", err)
	}
}

// Queued tasks run by priority, then deadline, then arrival.
func TestPriorityOrder(t *testing.T) {
	var mu sync.Mutex
	var order []string
	release := make(chan struct{})
	started := make(chan task.ID, 1)
	rec := task.Skill{Name: "rec", Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
		mu.Lock()
		order = append(order, string(t.Params))
		mu.Unlock()
		return task.Result{}, nil
	}}
	p := newPair(t, task.WorkerConfig{MaxRunning: 1}, task.SubmitterConfig{}, blocking("block", started, release), rec)
	p.submit(t, task.Request{Skill: "block"})
	<-started
	far := time.Now().Add(time.Hour)
	near := time.Now().Add(30 * time.Minute)
	var ids []task.ID
	for _, r := range []task.Request{
		{Params: json.RawMessage(`"p0-a"`)},
		{Params: json.RawMessage(`"p5-far"`), Priority: 5, Deadline: far},
		{Params: json.RawMessage(`"p0-b"`)},
		{Params: json.RawMessage(`"p5-none"`), Priority: 5},
		{Params: json.RawMessage(`"p9"`), Priority: 9},
		{Params: json.RawMessage(`"p5-near"`), Priority: 5, Deadline: near},
		{Params: json.RawMessage(`"p-1"`), Priority: -1},
	} {
		r.Skill = "rec"
		ids = append(ids, p.submit(t, r))
	}
	close(release)
	for _, id := range ids {
		if _, err := p.s.Wait(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{`"p9"`, `"p5-near"`, `"p5-far"`, `"p5-none"`, `"p0-a"`, `"p0-b"`, `"p-1"`}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, want) {
		t.Fatalf("ran %v, want %v", order, want)
	}
}

// A task whose deadline passes while it waits in the queue fails with
// TIMEOUT without running.
func TestDeadlineWhileQueued(t *testing.T) {
	var ran atomic.Bool
	release := make(chan struct{})
	started := make(chan task.ID, 1)
	mark := task.Skill{Name: "mark", Handler: func(context.Context, *task.Task) (task.Result, error) {
		ran.Store(true)
		return task.Result{}, nil
	}}
	p := newPair(t, task.WorkerConfig{MaxRunning: 1}, task.SubmitterConfig{}, blocking("block", started, release), mark)
	p.submit(t, task.Request{Skill: "block"})
	<-started
	id := p.submit(t, task.Request{Skill: "mark", Deadline: time.Now().Add(300 * time.Millisecond)})
	in, err := p.s.Wait(ctxT(t), id)
	te := code(t, err, task.CodeTimeout)
	if in.State != task.StateFailed || te.Message != "deadline passed while queued" {
		t.Fatalf("info %+v, error %v", in, err)
	}
	close(release)
	if ran.Load() {
		t.Fatal("the expired task ran")
	}
	if s := p.w.Stats(); s.TimedOut != 1 {
		t.Fatalf("worker stats %+v", s)
	}
}

// A running task whose deadline passes has its context cancelled and
// fails with TIMEOUT.
func TestDeadlineWhileRunning(t *testing.T) {
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, blocking("block", nil, nil))
	id := p.submit(t, task.Request{Skill: "block", Deadline: time.Now().Add(200 * time.Millisecond)})
	in, err := p.s.Wait(ctxT(t), id)
	code(t, err, task.CodeTimeout)
	if in.State != task.StateFailed {
		t.Fatalf("info %+v", in)
	}
}

// A full queue refuses with RESOURCE_EXHAUSTED.
func TestQueueFullRefused(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan task.ID, 1)
	p := newPair(t, task.WorkerConfig{MaxRunning: 1, QueueSize: 1}, task.SubmitterConfig{}, blocking("block", started, release))
	p.submit(t, task.Request{Skill: "block"})
	<-started
	p.submit(t, task.Request{Skill: "block"})
	_, err := p.s.Submit(ctxT(t), task.Request{Skill: "block", Node: p.wn.id()})
	te := code(t, err, task.CodeResourceExhausted)
	if te.Skill != "block" || te.Node != p.wn.id() {
		t.Fatalf("error %+v", te)
	}
}

// Per-skill concurrency and the worker-wide limit hold.
func TestConcurrencyLimits(t *testing.T) {
	var running, peak atomic.Int64
	var peakMu sync.Mutex
	slow := func(name string, conc int) task.Skill {
		return task.Skill{Name: name, Concurrency: conc, Handler: func(context.Context, *task.Task) (task.Result, error) {
			n := running.Add(1)
			peakMu.Lock()
			peak.Store(max(peak.Load(), n))
			peakMu.Unlock()
			time.Sleep(20 * time.Millisecond)
			running.Add(-1)
			return task.Result{}, nil
		}}
	}
	p := newPair(t, task.WorkerConfig{MaxRunning: 3, QueueSize: 100}, task.SubmitterConfig{}, slow("one", 1))
	var ids []task.ID
	for range 6 {
		ids = append(ids, p.submit(t, task.Request{Skill: "one"}))
	}
	for _, id := range ids {
		if _, err := p.s.Wait(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
	}
	if peak.Load() != 1 {
		t.Fatalf("skill with concurrency 1 ran %d at once", peak.Load())
	}
	if err := p.w.Register(slow("many", 0)); err != nil {
		t.Fatal(err)
	}
	sees(t, p.sn, p.wn, hasSkill("many"))
	peak.Store(0)
	ids = ids[:0]
	for range 12 {
		ids = append(ids, p.submit(t, task.Request{Skill: "many"}))
	}
	for _, id := range ids {
		if _, err := p.s.Wait(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
	}
	if peak.Load() > 3 {
		t.Fatalf("worker with MaxRunning 3 ran %d at once", peak.Load())
	}
}

func TestCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan task.ID, 1)
	p := newPair(t, task.WorkerConfig{MaxRunning: 1}, task.SubmitterConfig{}, blocking("block", started, release))
	running := p.submit(t, task.Request{Skill: "block"})
	<-started
	queued := p.submit(t, task.Request{Skill: "block"})

	if err := p.s.Cancel(ctxT(t), queued); err != nil {
		t.Fatal(err)
	}
	in, err := p.s.Wait(ctxT(t), queued)
	if !errors.Is(err, task.ErrCancelled) || in.State != task.StateCancelled {
		t.Fatalf("queued task after cancel: %+v %v", in, err)
	}
	if err := p.s.Cancel(ctxT(t), running); err != nil {
		t.Fatal(err)
	}
	in, err = p.s.Wait(ctxT(t), running)
	if !errors.Is(err, task.ErrCancelled) || in.State != task.StateCancelled {
		t.Fatalf("running task after cancel: %+v %v", in, err)
	}
	select {
	case id := <-started:
		t.Fatalf("the cancelled queued task %s ran", id)
	default:
	}
	if err := p.s.Cancel(ctxT(t), running); err != nil {
		t.Fatalf("cancelling a final task: %v", err)
	}
}

// Progress events arrive in order, before the result; events that break
// the contract are refused to the handler.
func TestProgressEventsInOrder(t *testing.T) {
	const n = 300
	emitErrs := make(chan []error, 1)
	sk := task.Skill{
		Name:   "progress",
		Events: map[string]json.RawMessage{"step": json.RawMessage(`{"type":"integer"}`), "note": nil},
		Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
			emitErrs <- []error{t.Emit("step", json.RawMessage(`"x"`)), t.Emit("other", nil)}
			emit := func(name string, data json.RawMessage) error {
				for {
					err := t.Emit(name, data)
					if !errors.Is(err, task.ErrResourceExhausted) {
						return err
					}
					time.Sleep(time.Millisecond) // undelivered events at the bound
				}
			}
			for i := 1; i <= n; i++ {
				if err := emit("step", fmt.Appendf(nil, "%d", i)); err != nil {
					return task.Result{}, err
				}
			}
			if err := emit("note", json.RawMessage(`{"done":true}`)); err != nil {
				return task.Result{}, err
			}
			return task.Result{Output: json.RawMessage(`"ok"`)}, nil
		},
	}
	p := newPair(t, task.WorkerConfig{MaxPendingEvents: 16}, task.SubmitterConfig{MaxEvents: 2 * n}, sk)
	id := p.submit(t, task.Request{Skill: "progress"})
	var seen []int
	var last string
	for ev, err := range p.s.Events(ctxT(t), id) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name == "step" {
			var i int
			json.Unmarshal(ev.Data, &i)
			seen = append(seen, i)
		}
		last = ev.Name
	}
	if len(seen) != n || last != "note" {
		t.Fatalf("got %d step events, last %q", len(seen), last)
	}
	for i, v := range seen {
		if v != i+1 {
			t.Fatalf("event %d is step %d: out of order", i, v)
		}
	}
	in, err := p.s.Wait(ctxT(t), id)
	if err != nil || in.Events != n+1 {
		t.Fatalf("info %+v %v", in, err)
	}
	errs := <-emitErrs
	code(t, errs[0], task.CodeContractViolation)
	code(t, errs[1], task.CodeContractViolation)
}

func TestList(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan task.ID, 1)
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, echo("echo"), blocking("block", started, release))
	sees(t, p.sn, p.wn, hasSkill("block"))
	a := p.submit(t, task.Request{Skill: "echo"})
	b := p.submit(t, task.Request{Skill: "block"})
	<-started
	if _, err := p.s.Wait(ctxT(t), a); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the blocked task to be running", func() bool {
		in, _ := p.s.Result(b)
		return in.State == task.StateRunning
	})
	all := p.s.List(task.ListFilter{})
	if len(all) != 2 || all[0].ID != a || all[1].ID != b {
		t.Fatalf("List = %+v", all)
	}
	if l := p.s.List(task.ListFilter{State: task.StateRunning}); len(l) != 1 || l[0].ID != b {
		t.Fatalf("running: %+v", l)
	}
	if l := p.s.List(task.ListFilter{Skill: "echo"}); len(l) != 1 || l[0].ID != a {
		t.Fatalf("skill echo: %+v", l)
	}
	if l := p.s.List(task.ListFilter{Node: p.sn.id()}); len(l) != 0 {
		t.Fatalf("node filter: %+v", l)
	}
	if l := p.s.List(task.ListFilter{Limit: 1}); len(l) != 1 || l[0].ID != b {
		t.Fatalf("limit 1: %+v", l)
	}
}

// Handler errors keep their codes; plain errors become HANDLER_ERROR; a
// panic fails the task without taking the worker down.
func TestHandlerErrors(t *testing.T) {
	sk := task.Skill{Name: "fail", Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
		switch string(t.Params) {
		case `"dep"`:
			return task.Result{}, task.Errorf(task.CodeDependencyMissing, "no GPU driver")
		case `"panic"`:
			panic("boom")
		}
		return task.Result{}, errors.New("plain failure")
	}}
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, sk)
	for params, want := range map[string]task.Code{`"dep"`: task.CodeDependencyMissing, `"panic"`: task.CodeHandlerError, `"x"`: task.CodeHandlerError} {
		id := p.submit(t, task.Request{Skill: "fail", Params: json.RawMessage(params)})
		_, err := p.s.Wait(ctxT(t), id)
		code(t, err, want)
	}
	if s := p.w.Stats(); s.Panics != 1 || s.Failed != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// Many submits in flight to two workers at once: every task runs once and
// its result comes back, through batched calls and results streams.
func TestManyInFlight(t *testing.T) {
	sn, a, b := newNode(t), newNode(t), newNode(t)
	s := sn.submitter(t, task.SubmitterConfig{})
	var runs sync.Map
	count := task.Skill{Name: "count", Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
		if _, loaded := runs.LoadOrStore(t.ID, true); loaded {
			return task.Result{}, errors.New("ran twice")
		}
		return task.Result{Output: t.Params}, nil
	}}
	a.worker(t, task.WorkerConfig{}, count)
	b.worker(t, task.WorkerConfig{}, count)
	connect(t, sn, a)
	connect(t, sn, b)
	sees(t, sn, a, hasSkill("count"))
	sees(t, sn, b, hasSkill("count"))
	const goroutines, each = 64, 30
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				params := fmt.Appendf(nil, "%d", g*each+i)
				id, err := s.Submit(ctxT(t), task.Request{Skill: "count", Params: params})
				if err == nil {
					var in task.Info
					if in, err = s.Wait(ctxT(t), id); err == nil && string(in.Output) != string(params) {
						err = fmt.Errorf("task %s: output %s, want %s", id, in.Output, params)
					}
				}
				if err != nil {
					failed.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatal(*err)
	}
	n := 0
	runs.Range(func(any, any) bool { n++; return true })
	if n != goroutines*each {
		t.Fatalf("%d tasks ran, want %d", n, goroutines*each)
	}
	if st := s.Stats(); st.Submitted != goroutines*each || st.Open != 0 {
		t.Fatalf("submitter stats %+v", st)
	}
}
