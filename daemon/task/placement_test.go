package task_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/mesh"
)

// whoami is a skill that returns the name of the node it ran on.
func whoami(skill, name string) task.Skill {
	out, _ := json.Marshal(name)
	return task.Skill{Name: skill, Handler: func(context.Context, *task.Task) (task.Result, error) {
		return task.Result{Output: out}, nil
	}}
}

// tag adds tags to a node's capabilities.
func tag(t testing.TB, n *node, tags ...string) {
	t.Helper()
	err := n.m.UpdateCapabilities(func(s capability.Set) capability.Set {
		s.Tags = append(append([]string(nil), s.Tags...), tags...)
		return s
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The filter chooses the node; among matching nodes the one with free
// slots wins over a full one.
func TestPlacementByFilterAndLoad(t *testing.T) {
	sn, a, b := newNode(t), newNode(t), newNode(t)
	s := sn.submitter(t, task.SubmitterConfig{})
	release := make(chan struct{})
	defer close(release)
	started := make(chan task.ID, 4)
	a.worker(t, task.WorkerConfig{MaxRunning: 1}, whoami("job", "a"), blocking("block", started, release))
	b.worker(t, task.WorkerConfig{MaxRunning: 4}, whoami("job", "b"))
	tag(t, a, "gpu")
	connect(t, sn, a)
	connect(t, sn, b)
	sees(t, sn, a, capability.AllOf(hasSkill("job"), capability.HasTag("gpu")))
	sees(t, sn, b, hasSkill("job"))

	for range 5 {
		id, err := s.Submit(ctxT(t), task.Request{Skill: "job", Where: capability.HasTag("gpu")})
		if err != nil {
			t.Fatal(err)
		}
		if in, err := s.Wait(ctxT(t), id); err != nil || string(in.Output) != `"a"` || in.Node != a.id() {
			t.Fatalf("gpu task ran on %s (%+v, %v), want a", in.Output, in, err)
		}
	}
	// Fill a's only slot; the next placements see a full and go to b.
	if _, err := s.Submit(ctxT(t), task.Request{Skill: "block", Node: a.id()}); err != nil {
		t.Fatal(err)
	}
	<-started
	for range 5 {
		id, err := s.Submit(ctxT(t), task.Request{Skill: "job"})
		if err != nil {
			t.Fatal(err)
		}
		if in, err := s.Wait(ctxT(t), id); err != nil || in.Node != b.id() {
			t.Fatalf("with a full, the task went to %s: %+v %v", in.Node.Short(), in, err)
		}
	}
}

// A node that refuses (its queue is full) is passed over for the next
// candidate, and the refusal is counted.
func TestRefusalTriesNextNode(t *testing.T) {
	sn, a, b := newNode(t), newNode(t), newNode(t)
	s := sn.submitter(t, task.SubmitterConfig{})
	release := make(chan struct{})
	defer close(release)
	started := make(chan task.ID, 4)
	// a re-announces its load only hourly: the submitter keeps seeing it
	// hot, and tries it first.
	wa := a.worker(t, task.WorkerConfig{MaxRunning: 1, QueueSize: 1, LoadInterval: time.Hour}, blocking("job", started, release))
	cold := whoami("job", "b")
	cold.Cold = true // a is hot and preferred: tried first
	b.worker(t, task.WorkerConfig{}, cold)
	connect(t, sn, a)
	connect(t, sn, b)
	sees(t, sn, a, capability.HasTag(task.HotTagPrefix+"job"))
	sees(t, sn, b, hasSkill("job"))
	if _, err := s.Submit(ctxT(t), task.Request{Skill: "job", Node: a.id()}); err != nil {
		t.Fatal(err)
	}
	<-started
	if _, err := s.Submit(ctxT(t), task.Request{Skill: "job", Node: a.id()}); err != nil {
		t.Fatal(err) // a's queue is now full
	}
	refusedBefore := wa.Stats().Refused
	id, err := s.Submit(ctxT(t), task.Request{Skill: "job"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.Wait(ctxT(t), id)
	if err != nil || in.Node != b.id() || string(in.Output) != `"b"` {
		t.Fatalf("task %+v %v, want it on b", in, err)
	}
	if got := wa.Stats().Refused - refusedBefore; got != 1 || s.Stats().Refusals != 1 {
		t.Fatalf("a refused %d times, the submitter counted %d refusals; want 1 and 1", got, s.Stats().Refusals)
	}
}

// With no node to take the task, the error names the skill and the
// filter, and says why each candidate refused.
func TestNoWorkerErrors(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan task.ID, 1)
	p := newPair(t, task.WorkerConfig{MaxRunning: 1, QueueSize: 1}, task.SubmitterConfig{}, blocking("job", started, release))
	_, err := p.s.Submit(ctxT(t), task.Request{Skill: "job", Where: capability.HasTag("gpu")})
	te := code(t, err, task.CodeNoWorker)
	if te.Skill != "job" || te.Filter != "gpu" || !strings.Contains(err.Error(), `skill job where gpu`) {
		t.Fatalf("error %q (%+v)", err, te)
	}
	_, err = p.s.Submit(ctxT(t), task.Request{Skill: "nosuch"})
	code(t, err, task.CodeNoWorker)
	_, err = p.s.Submit(ctxT(t), task.Request{Skill: "job", Node: p.sn.id()})
	code(t, err, task.CodeNoWorker) // not to itself

	p.submit(t, task.Request{Skill: "job"})
	<-started
	p.submit(t, task.Request{Skill: "job"})
	_, err = p.s.Submit(ctxT(t), task.Request{Skill: "job"})
	te = code(t, err, task.CodeResourceExhausted)
	if te.Skill != "job" || !strings.Contains(te.Message, p.wn.id().Short()+": RESOURCE_EXHAUSTED queue full") {
		t.Fatalf("error %q", err)
	}
	_, err = p.s.Submit(ctxT(t), task.Request{Skill: "nosuch", Node: p.wn.id()})
	code(t, err, task.CodeUnknownSkill)
}

// A worker advertises each skill, the hot ones apart, its load and its
// catalog's hash; the catalog itself comes with one call.
func TestSkillsAdvertised(t *testing.T) {
	sk := echo("resize")
	sk.Version = "1.2.0"
	sk.Input = objectWithN
	sk.Statuses = []string{"success", "retry_later"}
	p := newPair(t, task.WorkerConfig{MaxRunning: 7}, task.SubmitterConfig{}, sk)
	sees(t, p.sn, p.wn, capability.AllOf(hasSkill("resize"), capability.HasTag("hot:resize"), capability.Equals("task.limit", "7"), capability.Equals("task.running", "0")))
	n, _ := p.sn.m.Capabilities().Index().Lookup(p.wn.id())
	_, hash := p.w.Catalog()
	if n.Set.Metadata[task.CatalogKey] != hash || len(hash) != 16 {
		t.Fatalf("advertised catalog %q, worker's %q", n.Set.Metadata[task.CatalogKey], hash)
	}
	cat, err := p.s.Catalog(ctxT(t), p.wn.id())
	if err != nil {
		t.Fatal(err)
	}
	if len(cat) != 1 || cat[0].Name != "resize" || cat[0].Version != "1.2.0" || len(cat[0].Statuses) != 2 || cat[0].Concurrency != 7 {
		t.Fatalf("catalog %+v", cat)
	}
	var schema map[string]any
	if err := json.Unmarshal(cat[0].Input, &schema); err != nil || schema["type"] != "object" {
		t.Fatalf("catalog input schema %s", cat[0].Input)
	}

	p.w.SetHot("resize", false)
	sees(t, p.sn, p.wn, capability.AllOf(hasSkill("resize"), capability.LacksTag("hot:resize")))
	if err := p.w.Register(echo("second")); err != nil {
		t.Fatal(err)
	}
	sees(t, p.sn, p.wn, capability.Not(capability.Equals(task.CatalogKey, hash)))
	if cat, err := p.s.Catalog(ctxT(t), p.wn.id()); err != nil || len(cat) != 2 {
		t.Fatalf("catalog after a change: %+v %v", cat, err)
	}
}

// The submitter refuses a result that reaches it after the deadline
// (here the delivery is held back, as a slow network would).
func TestLateResult(t *testing.T) {
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, echo("echo"))
	deadline := time.Now().Add(300 * time.Millisecond)
	task.SetBeforeDelivery(p.s, func() { time.Sleep(time.Until(deadline) + 50*time.Millisecond) })
	id := p.submit(t, task.Request{Skill: "echo", Params: json.RawMessage(`1`), Deadline: deadline})
	in, err := p.s.Wait(ctxT(t), id)
	code(t, err, task.CodeLateResult)
	if in.State != task.StateFailed || in.Output != nil || !errors.Is(err, task.ErrLateResult) {
		t.Fatalf("info %+v", in)
	}
	if p.w.Stats().Succeeded != 1 || p.s.Stats().Late != 1 {
		t.Fatalf("worker %+v, submitter %+v", p.w.Stats(), p.s.Stats())
	}
}

// restart closes n and starts a node with the same identity and address.
func restart(t testing.TB, n *node, mod ...func(*mesh.Config)) *node {
	t.Helper()
	addr := n.m.Addr()
	id := n.m.Identity()
	n.close()
	return newNode(t, append([]func(*mesh.Config){func(c *mesh.Config) {
		c.Identity = id
		c.ListenAddr = addr.String()
	}}, mod...)...)
}

// Submitting a task id again, from a submitter that restarted and lost
// its records, does not run the task a second time: the worker answers
// with its state, and the result reaches the new submitter.
func TestDuplicateSubmitRunsOnce(t *testing.T) {
	var runs atomic.Int64
	release := make(chan struct{})
	sk := task.Skill{Name: "once", Handler: func(ctx context.Context, t *task.Task) (task.Result, error) {
		runs.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return task.Result{Output: json.RawMessage(`"done"`)}, nil
	}}
	wn, sn := newNode(t), newNode(t)
	w := wn.worker(t, task.WorkerConfig{}, sk)
	s := sn.submitter(t, task.SubmitterConfig{})
	connect(t, sn, wn)
	id, err := s.Submit(ctxT(t), task.Request{Skill: "once", Node: wn.id()})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Submit(ctxT(t), task.Request{ID: id, Skill: "once", Node: wn.id()})
	if err != nil || again != id {
		t.Fatalf("second submit of the same id: %v %v", again, err)
	}
	eventually(t, 5*time.Second, "the task to run", func() bool { return runs.Load() == 1 })

	s.Close()
	sn = restart(t, sn)
	s2 := sn.submitter(t, task.SubmitterConfig{})
	connect(t, sn, wn)
	got, err := s2.Submit(ctxT(t), task.Request{ID: id, Skill: "once", Node: wn.id()})
	if err != nil || got != id {
		t.Fatalf("resubmit after restart: %v %v", got, err)
	}
	close(release)
	in, err := s2.Wait(ctxT(t), id)
	if err != nil || string(in.Output) != `"done"` {
		t.Fatalf("result after resubmit: %+v %v", in, err)
	}
	if runs.Load() != 1 || w.Stats().Duplicates != 1 {
		t.Fatalf("ran %d times, %d duplicates", runs.Load(), w.Stats().Duplicates)
	}
}
