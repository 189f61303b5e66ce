package task_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
)

// Run answers a short task from the submit reply: the worker sends
// nothing on the results stream for it, and forgets the result once the
// submitter acknowledges it.
func TestRunShortTaskInline(t *testing.T) {
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, echo("echo"))
	for i := range 20 {
		params := json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
		in, err := p.s.Run(ctxT(t), task.Request{Skill: "echo", Node: p.wn.id(), Params: params})
		if err != nil {
			t.Fatal(err)
		}
		if in.State != task.StateSucceeded || string(in.Output) != string(params) || in.ID.IsZero() || in.Node != p.wn.id() {
			t.Fatalf("run %d: %+v", i, in)
		}
		if got, err := p.s.Result(in.ID); err != nil || got.State != task.StateSucceeded {
			t.Fatalf("Result after Run: %+v %v", got, err)
		}
	}
	if st := p.w.Stats(); st.Succeeded != 20 || st.Delivered != 0 {
		t.Fatalf("worker stats %+v: want 20 results, none on the results stream", st)
	}
	eventually(t, 10*time.Second, "the worker forgets the acknowledged results", func() bool { return p.w.Stats().Unacked == 0 })
}

// A task longer than the worker's wait is answered "running", and its
// result arrives on the results stream; a task that emits events has its
// result follow them there, in order.
func TestRunLongTaskAndEvents(t *testing.T) {
	started := make(chan task.ID, 1)
	release := make(chan struct{})
	stepper := task.Skill{Name: "steps", Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
		for i := 1; i <= 3; i++ {
			if err := t.Emit("step", fmt.Appendf(nil, "%d", i)); err != nil {
				return task.Result{}, err
			}
		}
		return task.Result{Output: json.RawMessage(`"stepped"`)}, nil
	}}
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, blocking("slow", started, release), stepper)
	id := task.NewID(time.Now())
	done := make(chan error, 1)
	go func() {
		in, err := p.s.Run(ctxT(t), task.Request{ID: id, Skill: "slow", Node: p.wn.id()})
		if err == nil && string(in.Output) != `"released"` {
			err = fmt.Errorf("output %s", in.Output)
		}
		done <- err
	}()
	<-started
	// Once the submitter lists the task the worker has answered the
	// submit: the result can only come on the stream.
	eventually(t, 10*time.Second, "the submit answered", func() bool {
		in, err := p.s.Result(id)
		return err == nil && in.State == task.StateRunning
	})
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	in, err := p.s.Run(ctxT(t), task.Request{Skill: "steps", Node: p.wn.id()})
	if err != nil || string(in.Output) != `"stepped"` || in.Events != 3 {
		t.Fatalf("steps: %+v %v", in, err)
	}
	var seqs []uint64
	for ev, err := range p.s.Events(ctxT(t), in.ID) {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ev.Seq)
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("events %v", seqs)
	}
	if st := p.w.Stats(); st.Delivered == 0 {
		t.Fatalf("worker stats %+v: the results went on no stream", st)
	}
}

// With a durable store a result that came in the submit reply is stored
// before the worker is told to forget it: a submitter opened again on the
// store has it.
func TestRunDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, echo("echo"))
	s, err := task.NewSubmitter(p.sn.m, task.SubmitterConfig{StorePath: path})
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.Run(ctxT(t), task.Request{Skill: "echo", Node: p.wn.id(), Params: json.RawMessage(`7`)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the worker forgets the acknowledged result", func() bool { return p.w.Stats().Unacked == 0 })
	s.Close()
	s2, err := task.NewSubmitter(p.sn.m, task.SubmitterConfig{StorePath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Result(in.ID)
	if err != nil || got.State != task.StateSucceeded || string(got.Output) != `7` {
		t.Fatalf("after reopening: %+v %v", got, err)
	}
}
