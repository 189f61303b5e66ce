package task_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
	"github.com/netmesh/netmesh/rpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gossip makes capability gossip go out every 100 ms, and a node's
// announcement expire 3 s after it stops.
func gossip(cfg *mesh.Config) {
	cfg.Capabilities.TTL = 3 * time.Second
	cfg.Capabilities.MinAnnounceInterval = 100 * time.Millisecond
}

// node is one mesh node with its rpc server.
type node struct {
	m   *mesh.Mesh
	srv *rpc.Server
}

// newNode starts a node on 127.0.0.1, closed when the test ends.
func newNode(t testing.TB, mod ...func(*mesh.Config)) *node {
	t.Helper()
	m := testnode.Start(t, append([]func(*mesh.Config){testnode.FastTimers, gossip}, mod...)...)
	srv, err := rpc.NewServer(m, rpc.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{m: m, srv: srv}
	t.Cleanup(n.close)
	return n
}

// close stops the node; it may be called more than once.
func (n *node) close() {
	n.srv.Close()
	n.m.Close()
}

func (n *node) id() identity.NodeID { return n.m.ID() }

// worker starts a worker on n, shut down (at once) when the test ends.
func (n *node) worker(t testing.TB, cfg task.WorkerConfig, skills ...task.Skill) *task.Worker {
	t.Helper()
	w, err := task.NewWorker(n.m, n.srv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range skills {
		if err := w.Register(s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		w.Shutdown(ctx)
	})
	return w
}

// submitter starts a submitter on n, closed when the test ends.
func (n *node) submitter(t testing.TB, cfg task.SubmitterConfig) *task.Submitter {
	t.Helper()
	s, err := task.NewSubmitter(n.m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// connect makes a session from a to b.
func connect(t testing.TB, a, b *node) { testnode.Connect(t, a.m, b.m) }

func ctxT(t testing.TB) context.Context { return testnode.Context(t, 20*time.Second) }

// eventually is testnode.Eventually.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testnode.Eventually(t, d, what, cond)
}

// sees waits until n's capability index shows worker w matching f.
func sees(t testing.TB, n, w *node, f capability.Filter) {
	t.Helper()
	testnode.Sees(t, n.m, w.m, f)
}

// hasSkill is the filter of a worker offering skill.
func hasSkill(skill string) capability.Filter { return capability.HasTag(task.SkillTagPrefix + skill) }

// echo is a skill that returns its parameters.
func echo(name string) task.Skill {
	return task.Skill{Name: name, Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
		return task.Result{Output: t.Params}, nil
	}}
}

// blocking is a skill whose tasks run until release is closed (or their
// context ends), after reporting their id on started.
func blocking(name string, started chan<- task.ID, release <-chan struct{}) task.Skill {
	return task.Skill{Name: name, Handler: func(ctx context.Context, t *task.Task) (task.Result, error) {
		if started != nil {
			started <- t.ID
		}
		select {
		case <-release:
			return task.Result{Output: json.RawMessage(`"released"`)}, nil
		case <-ctx.Done():
			return task.Result{}, ctx.Err()
		}
	}}
}

// code asserts that err is a *task.Error of code c.
func code(t testing.TB, err error, c task.Code) *task.Error {
	t.Helper()
	var te *task.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T), want a *task.Error %s", err, err, c)
	}
	if te.Code != c {
		t.Fatalf("error %v: code %s, want %s", err, te.Code, c)
	}
	return te
}

// pair is a worker node and a submitter node, connected, the submitter
// seeing the worker's skills.
type pair struct {
	wn, sn *node
	w      *task.Worker
	s      *task.Submitter
}

func newPair(t testing.TB, wc task.WorkerConfig, sc task.SubmitterConfig, skills ...task.Skill) *pair {
	t.Helper()
	p := &pair{wn: newNode(t), sn: newNode(t)}
	p.s = p.sn.submitter(t, sc) // closed after the worker has shut down
	p.w = p.wn.worker(t, wc, skills...)
	connect(t, p.sn, p.wn)
	if len(skills) > 0 {
		sees(t, p.sn, p.wn, hasSkill(skills[0].Name))
	}
	return p
}

// submit submits to the pair's worker by NodeID.
func (p *pair) submit(t testing.TB, req task.Request) task.ID {
	t.Helper()
	req.Node = p.wn.id()
	id, err := p.s.Submit(ctxT(t), req)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return id
}
