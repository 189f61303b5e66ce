package task_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/rpc"
)

// A worker can deliver only for the tasks placed on it: a lying worker
// that pushes a result for a task running elsewhere is ignored, and the
// real result still arrives.
func TestForeignResultIgnored(t *testing.T) {
	sn, wn, liar := newNode(t), newNode(t), newNode(t)
	s := sn.submitter(t, task.SubmitterConfig{})
	release := make(chan struct{})
	started := make(chan task.ID, 1)
	wn.worker(t, task.WorkerConfig{}, blocking("job", started, release))
	victim := make(chan task.ID, 1)
	pushed := make(chan struct{})
	if err := liar.srv.Handle(task.WorkerService, func(_ context.Context, req []byte) ([]byte, error) { return task.AcceptAll(req) }); err != nil {
		t.Fatal(err)
	}
	if err := liar.srv.HandleStream(task.ResultsService, func(ctx context.Context, _ []byte, w *rpc.ResponseWriter) error {
		select {
		case id := <-victim:
			w.Send(ctx, task.SucceededChunk(id, `"forged"`))
			close(pushed)
		case <-ctx.Done():
		}
		<-ctx.Done()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	connect(t, sn, wn)
	connect(t, sn, liar)

	id, err := s.Submit(ctxT(t), task.Request{Skill: "job", Node: wn.id()})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if _, err := s.Submit(ctxT(t), task.Request{Skill: "job", Node: liar.id()}); err != nil {
		t.Fatal(err) // opens the results stream to the liar
	}
	victim <- id
	<-pushed
	eventually(t, 5*time.Second, "the forged result to be counted as unknown", func() bool { return s.Stats().Unknown > 0 })
	if in, _ := s.Result(id); in.State.Final() {
		t.Fatalf("a forged result was taken: %+v", in)
	}
	close(release)
	in, err := s.Wait(ctxT(t), id)
	if err != nil || string(in.Output) != `"released"` {
		t.Fatalf("the real result: %+v %v", in, err)
	}
}

// One submitter cannot hold more than MaxPerSubmitter tasks at a worker,
// nor send parameters beyond MaxParamsSize, whatever its own submitter
// would have checked.
func TestPerSubmitterBounds(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	p := newPair(t, task.WorkerConfig{MaxRunning: 1, QueueSize: 100, MaxPerSubmitter: 3, MaxParamsSize: 1024}, task.SubmitterConfig{}, blocking("job", nil, release))
	for range 3 {
		p.submit(t, task.Request{Skill: "job"})
	}
	_, err := p.s.Submit(ctxT(t), task.Request{Skill: "job", Node: p.wn.id()})
	if te := code(t, err, task.CodeResourceExhausted); !strings.Contains(te.Message, "holds 3 tasks") {
		t.Fatalf("4th task: %v", err)
	}
	cli := rpc.NewClient(p.sn.m, rpc.ClientOptions{})
	big, _ := json.Marshal(strings.Repeat("x", 2000))
	st, c, msg, err := task.SubmitRaw(ctxT(t), cli, p.wn.id(), task.NewID(time.Now()), "job", big, nil)
	if err != nil || st != 0 || c != task.CodeLimitExceeded {
		t.Fatalf("oversized parameters: state %v code %s (%s) %v", st, c, msg, err)
	}
	st, c, _, err = task.SubmitRaw(ctxT(t), cli, p.wn.id(), task.ID{}, "job", []byte(`1`), nil)
	if err != nil || st != 0 || c != task.CodeContractViolation {
		t.Fatalf("zero id: state %v code %s %v", st, c, err)
	}
}
