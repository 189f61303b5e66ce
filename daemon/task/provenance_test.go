package task_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// provenance is what the final worker saw of a task's origin.
type provenance struct {
	Origin identity.NodeID   `json:"origin"`
	From   identity.NodeID   `json:"from"`
	Chain  []identity.NodeID `json:"chain"`
}

// witness is a skill that returns the task's verified provenance.
func witness(name string) task.Skill {
	return task.Skill{Name: name, Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
		out, _ := json.Marshal(provenance{Origin: t.Origin, From: t.From, Chain: t.Chain.Nodes()})
		return task.Result{Output: out}, nil
	}}
}

// A controller forwards a task on behalf of its submitter: the worker
// verifies the signed chain and knows the original submitter and the
// hop. Forged and reordered chains are refused with PROVENANCE.
func TestProvenanceChain(t *testing.T) {
	on, cn, wn, mn := newNode(t), newNode(t), newNode(t), newNode(t)
	origin := on.submitter(t, task.SubmitterConfig{})
	fwd := cn.submitter(t, task.SubmitterConfig{})
	wn.worker(t, task.WorkerConfig{}, witness("job"))
	cn.worker(t, task.WorkerConfig{}, task.Skill{Name: "job", Handler: func(ctx context.Context, t *task.Task) (task.Result, error) {
		id, err := fwd.Submit(ctx, task.Request{ID: t.ID, Skill: t.Skill, Params: t.Params, Chain: t.Chain, Node: wn.id()})
		if err != nil {
			return task.Result{}, err
		}
		in, err := fwd.Wait(ctx, id)
		return task.Result{Output: in.Output}, err
	}})
	connect(t, on, cn)
	connect(t, cn, wn)
	connect(t, mn, wn)

	id, err := origin.Submit(ctxT(t), task.Request{Skill: "job", Node: cn.id(), Sign: true, Params: json.RawMessage(`{"n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	in, err := origin.Wait(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	var got provenance
	json.Unmarshal(in.Output, &got)
	if got.Origin != on.id() || got.From != cn.id() || len(got.Chain) != 2 || got.Chain[0] != on.id() || got.Chain[1] != cn.id() {
		t.Fatalf("the worker saw %+v; want origin %s via %s", got, on.id().Short(), cn.id().Short())
	}

	// A direct submit carries no chain: the origin is the session peer.
	direct, err := fwd.Submit(ctxT(t), task.Request{Skill: "job", Node: wn.id()})
	if err != nil {
		t.Fatal(err)
	}
	in, _ = fwd.Wait(ctxT(t), direct)
	json.Unmarshal(in.Output, &got)
	if got.Origin != cn.id() || len(got.Chain) != 0 {
		t.Fatalf("direct submit: %+v", got)
	}

	// Mallory, with a session to the worker, claims tasks from the
	// origin through the controller.
	cli := rpc.NewClient(mn.m, rpc.ClientOptions{})
	oid, cid, mid := on.m.Identity(), cn.m.Identity(), mn.m.Identity()
	params := []byte(`{"n":2}`)
	tid := task.NewID(in.Created)
	genuine := task.Chain{task.SignOrigin(oid, tid, "job", params, cn.id())}.Forward(cid, tid, mn.id())
	forgedOrigin := task.Chain{task.SignOrigin(mid, tid, "job", params, mn.id())}
	forgedOrigin[0].Key = oid.PublicKey()
	for name, chain := range map[string]task.Chain{
		"forged origin":      forgedOrigin.Forward(mid, tid, wn.id()),
		"reordered":          task.Chain{genuine[1], genuine[0]}.Forward(mid, tid, wn.id()),
		"replayed to worker": task.Chain{task.SignOrigin(oid, tid, "job", params, cn.id())}.Forward(cid, tid, wn.id()),
		"other parameters":   task.Chain{task.SignOrigin(oid, tid, "job", []byte(`{"n":3}`), cn.id())}.Forward(cid, tid, mn.id()).Forward(mid, tid, wn.id()),
	} {
		st, c, msg, err := task.SubmitRaw(ctxT(t), cli, wn.id(), tid, "job", params, chain)
		if err != nil || st != 0 || c != task.CodeProvenance {
			t.Errorf("%s: state %v code %q (%s), %v; want refused with PROVENANCE", name, st, c, msg, err)
		}
	}
	// The genuine chain, forwarded once more by mallory, is accepted: it
	// proves the path it took, mallory included.
	if st, c, msg, err := task.SubmitRaw(ctxT(t), cli, wn.id(), tid, "job", params, genuine.Forward(mid, tid, wn.id())); err != nil || st == 0 {
		t.Fatalf("genuine chain refused: %q %s %v", c, msg, err)
	}
}
