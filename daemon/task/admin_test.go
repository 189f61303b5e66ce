package task_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// Shutdown withdraws the skills, refuses new tasks, gives queued ones
// back (they are placed elsewhere), lets running ones finish, and cancels
// what is still running when its context ends.
func TestShutdownDrains(t *testing.T) {
	sn, a, b := newNode(t), newNode(t), newNode(t)
	s := sn.submitter(t, task.SubmitterConfig{})
	started := make(chan task.ID, 8)
	release := make(chan struct{})
	slow := task.Skill{Name: "slow", Handler: func(ctx context.Context, t *task.Task) (task.Result, error) {
		started <- t.ID
		<-release
		return task.Result{Output: json.RawMessage(`"finished"`)}, nil
	}}
	stuck := blocking("stuck", started, nil) // ends only when cancelled
	wa := a.worker(t, task.WorkerConfig{MaxRunning: 2}, slow, stuck)
	cold := whoami("slow", "b")
	cold.Cold = true // a is preferred while it serves
	b.worker(t, task.WorkerConfig{}, cold)
	connect(t, sn, a)
	connect(t, sn, b)
	sees(t, sn, a, hasSkill("stuck"))
	sees(t, sn, b, hasSkill("slow"))

	finishing, _ := s.Submit(ctxT(t), task.Request{Skill: "slow", Node: a.id()})
	cancelled, _ := s.Submit(ctxT(t), task.Request{Skill: "stuck", Node: a.id()})
	<-started
	<-started
	handed, err := s.Submit(ctxT(t), task.Request{Skill: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	if in, _ := s.Result(handed); in.Node != a.id() {
		t.Fatalf("queued task on %s, want a", in.Node.Short())
	}

	ctx, cancel := context.WithCancel(context.Background())
	shut := make(chan error, 1)
	go func() { shut <- wa.Shutdown(ctx) }()
	eventually(t, 10*time.Second, "a to withdraw its skills", func() bool {
		n, ok := sn.m.Capabilities().Index().Lookup(a.id())
		return ok && !hasSkill("slow").Match(n)
	})
	_, err = s.Submit(ctxT(t), task.Request{Skill: "slow", Node: a.id()})
	code(t, err, task.CodeResourceExhausted)

	// The queued task was given back and placed on b.
	in, err := s.Wait(ctxT(t), handed)
	if err != nil || in.Node != b.id() || in.Attempts != 2 {
		t.Fatalf("handed-back task: %+v %v", in, err)
	}
	close(release) // the running slow task finishes within the drain
	in, err = s.Wait(ctxT(t), finishing)
	if err != nil || string(in.Output) != `"finished"` {
		t.Fatalf("running task during drain: %+v %v", in, err)
	}
	cancel() // the stuck task does not finish: it is cancelled
	in, err = s.Wait(ctxT(t), cancelled)
	te := code(t, err, task.CodeCancelled)
	if in.State != task.StateCancelled || te.Message != "worker shut down" {
		t.Fatalf("stuck task: %+v %v", in, err)
	}
	if err := <-shut; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled (it cancelled a task)", err)
	}
	if err := wa.Shutdown(context.Background()); !errors.Is(err, task.ErrClosed) {
		t.Fatalf("second Shutdown = %v", err)
	}
}

// Custom commands reach the worker's handlers by name, with the sender's
// identity.
func TestCommands(t *testing.T) {
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, echo("echo"))
	paused := make(chan bool, 1)
	p.w.HandleCommand("pause", func(_ context.Context, from identity.NodeID, args []byte) ([]byte, error) {
		if from != p.sn.id() {
			return nil, task.Errorf(task.CodeProvenance, "not you")
		}
		paused <- true
		return append([]byte("paused:"), args...), nil
	})
	p.w.HandleCommand("fail", func(context.Context, identity.NodeID, []byte) ([]byte, error) {
		return nil, task.Errorf(task.CodeDependencyMissing, "no config")
	})
	cli := rpc.NewClient(p.sn.m, rpc.ClientOptions{})
	reply, err := task.Command(ctxT(t), cli, p.wn.id(), "pause", []byte("now"))
	if err != nil || string(reply) != "paused:now" || !<-paused {
		t.Fatalf("pause: %q %v", reply, err)
	}
	_, err = task.Command(ctxT(t), cli, p.wn.id(), "fail", nil)
	if te := code(t, err, task.CodeDependencyMissing); te.Message != "no config" || te.Node != p.wn.id() {
		t.Fatalf("fail: %+v", te)
	}
	_, err = task.Command(ctxT(t), cli, p.wn.id(), "nosuch", nil)
	code(t, err, task.CodeNotFound)
}

// Unregister withdraws a skill: its queued tasks come back unstarted (with
// no other node to take them, they fail RESOURCE_EXHAUSTED), and the
// node stops advertising it.
func TestUnregister(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan task.ID, 1)
	p := newPair(t, task.WorkerConfig{MaxRunning: 1}, task.SubmitterConfig{}, blocking("block", started, release), echo("echo"))
	sees(t, p.sn, p.wn, hasSkill("echo"))
	p.submit(t, task.Request{Skill: "block"})
	<-started
	queued := p.submit(t, task.Request{Skill: "echo", Idempotent: true})
	if !p.w.Unregister("echo") || p.w.Unregister("echo") {
		t.Fatal("Unregister reported wrongly")
	}
	_, err := p.s.Wait(ctxT(t), queued)
	te := code(t, err, task.CodeResourceExhausted)
	if !strings.Contains(te.Message, "withdrawn before the task started") {
		t.Fatalf("error %v", err)
	}
	sees(t, p.sn, p.wn, capability.AllOf(hasSkill("block"), capability.LacksTag(task.SkillTagPrefix+"echo")))
	if _, err := p.s.Submit(ctxT(t), task.Request{Skill: "echo", Node: p.wn.id()}); !errors.Is(err, task.ErrUnknownSkill) {
		t.Fatalf("submit to a withdrawn skill: %v", err)
	}
}

// TestSkillsSurviveApplicationAnnounce: the worker's skills are its own
// part of the node's capability set, so the application announcing its
// tags does not withdraw them.
func TestSkillsSurviveApplicationAnnounce(t *testing.T) {
	p := newPair(t, task.WorkerConfig{}, task.SubmitterConfig{}, echo("echo"))
	if err := p.wn.m.AnnounceCapabilities(capability.Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	sees(t, p.sn, p.wn, capability.AllOf(capability.HasTag("gpu"), hasSkill("echo")))
}
