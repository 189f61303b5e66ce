package task_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
)

// A worker killed mid-task: its non-idempotent task becomes lost, saying
// so; its idempotent task is placed again, with the same id, on the other
// capable node, and succeeds there.
func TestWorkerKilledMidTask(t *testing.T) {
	sn, a, b := newNode(t), newNode(t), newNode(t)
	s := sn.submitter(t, task.SubmitterConfig{})
	started := make(chan task.ID, 4)
	release := make(chan struct{})
	defer close(release)
	hot := blocking("job", started, release)
	cold := whoami("job", "b")
	cold.Cold = true // a is preferred: both tasks go there first
	a.worker(t, task.WorkerConfig{}, hot)
	wb := b.worker(t, task.WorkerConfig{}, cold)
	connect(t, sn, a)
	connect(t, sn, b)
	sees(t, sn, a, hasSkill("job"))
	sees(t, sn, b, hasSkill("job"))

	once, err := s.Submit(ctxT(t), task.Request{Skill: "job", Node: a.id()})
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Submit(ctxT(t), task.Request{Skill: "job", Idempotent: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		<-started
	}
	if in, _ := s.Result(again); in.Node != a.id() {
		t.Fatalf("the idempotent task went to %s first, want a", in.Node.Short())
	}
	a.close() // killed: no goodbye, the submitter notices the dead session

	in, err := s.Wait(ctxT(t), once)
	te := code(t, err, task.CodeLost)
	if in.State != task.StateLost || te.Node != a.id() || te.Message == "" {
		t.Fatalf("non-idempotent task: %+v, error %v", in, err)
	}
	in, err = s.Wait(ctxT(t), again)
	if err != nil || in.State != task.StateSucceeded || in.Node != b.id() || string(in.Output) != `"b"` || in.Attempts != 2 || in.ID != again {
		t.Fatalf("idempotent task: %+v %v", in, err)
	}
	if st := s.Stats(); st.Lost != 2 || st.Replaced != 1 {
		t.Fatalf("stats %+v", st)
	}
	if wb.Stats().Accepted != 1 {
		t.Fatalf("b accepted %d tasks", wb.Stats().Accepted)
	}
}

// A worker that restarts forgets its tasks; the submitter's sync finds
// out and marks them lost.
func TestWorkerRestartedTaskLost(t *testing.T) {
	wn, sn := newNode(t), newNode(t)
	started := make(chan task.ID, 1)
	release := make(chan struct{})
	defer close(release)
	wn.worker(t, task.WorkerConfig{}, blocking("job", started, release))
	s := sn.submitter(t, task.SubmitterConfig{SyncInterval: 100 * time.Millisecond})
	connect(t, sn, wn)
	id, err := s.Submit(ctxT(t), task.Request{Skill: "job", Node: wn.id()})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	wn2 := restart(t, wn)
	wn2.worker(t, task.WorkerConfig{}, echo("job"))
	connect(t, sn, wn2)
	_, err = s.Wait(ctxT(t), id)
	te := code(t, err, task.CodeLost)
	if te.Node != wn.id() {
		t.Fatalf("error %+v", te)
	}
}

// A submitter with a durable store that restarts finds its tasks, and
// receives the results that finished while it was down: the worker keeps
// them until they are acknowledged.
func TestSubmitterRestartDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	wn, sn := newNode(t), newNode(t)
	started := make(chan task.ID, 1)
	release := make(chan struct{})
	w := wn.worker(t, task.WorkerConfig{}, echo("echo"), blocking("block", started, release))
	cfg := task.SubmitterConfig{StorePath: path, SyncInterval: 100 * time.Millisecond}
	s := sn.submitter(t, cfg)
	connect(t, sn, wn)

	done, err := s.Submit(ctxT(t), task.Request{Skill: "echo", Node: wn.id(), Params: json.RawMessage(`{"kept":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wait(ctxT(t), done); err != nil {
		t.Fatal(err)
	}
	pending, err := s.Submit(ctxT(t), task.Request{Skill: "block", Node: wn.id(), Params: json.RawMessage(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sn = restart(t, sn)

	close(release) // the task finishes while its submitter is down
	eventually(t, 10*time.Second, "the task to finish", func() bool { return w.Stats().Succeeded == 2 })
	if st := w.Stats(); st.Unacked == 0 {
		t.Fatalf("the worker holds no unacknowledged result: %+v", st)
	}

	s2 := sn.submitter(t, cfg)
	if in, err := s2.Result(done); err != nil || in.State != task.StateSucceeded || string(in.Output) != `{"kept":true}` {
		t.Fatalf("finished task after restart: %+v %v", in, err)
	}
	if in, err := s2.Result(pending); err != nil || in.State.Final() {
		t.Fatalf("pending task after restart: %+v %v", in, err)
	}
	connect(t, sn, wn)
	in, err := s2.Wait(ctxT(t), pending)
	if err != nil || string(in.Output) != `"released"` {
		t.Fatalf("result delivered after restart: %+v %v", in, err)
	}
	eventually(t, 5*time.Second, "the worker to drop the acknowledged result", func() bool { return w.Stats().Unacked == 0 })
	if l := s2.List(task.ListFilter{}); len(l) != 2 {
		t.Fatalf("List after restart: %+v", l)
	}
}
