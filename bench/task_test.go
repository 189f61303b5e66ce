package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
	"github.com/netmesh/netmesh/rpc"
)

// taskNode is a mesh with its rpc server.
type taskNode struct {
	m   *mesh.Mesh
	srv *rpc.Server
}

func startTaskNode(tb testing.TB) *taskNode {
	tb.Helper()
	m := testnode.Start(tb, func(c *mesh.Config) {
		c.Capabilities = capability.Config{MinAnnounceInterval: 100 * time.Millisecond, TTL: 30 * time.Second}
	})
	srv, err := rpc.NewServer(m, rpc.ServerOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	n := &taskNode{m: m, srv: srv}
	tb.Cleanup(func() {
		srv.Close()
		m.Close()
	})
	return n
}

// noop is the benchmarks' skill: it does nothing and returns null.
var noop = task.Skill{Name: "noop", Handler: func(context.Context, *task.Task) (task.Result, error) { return task.Result{}, nil }}

// taskCluster is one submitter node and two worker nodes with the noop
// skill, the submitter connected to both and seeing their skills.
type taskCluster struct {
	s       *task.Submitter
	sub     *taskNode
	workers []*taskNode
}

func newTaskCluster(tb testing.TB, scfg task.SubmitterConfig, wcfg task.WorkerConfig, skill task.Skill, nworkers int) *taskCluster {
	tb.Helper()
	c := &taskCluster{sub: startTaskNode(tb)}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	for range nworkers {
		wn := startTaskNode(tb)
		w, err := task.NewWorker(wn.m, wn.srv, wcfg)
		if err != nil {
			tb.Fatal(err)
		}
		if err := w.Register(skill); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			w.Shutdown(ctx)
		})
		if _, err := c.sub.m.Connect(ctx, wn.m.Addr(), mesh.Pin{Key: wn.m.Identity().PublicKey()}); err != nil {
			tb.Fatal(err)
		}
		c.workers = append(c.workers, wn)
	}
	s, err := task.NewSubmitter(c.sub.m, scfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	c.s = s
	for len(c.sub.m.FindNodes(capability.HasTag(task.SkillTagPrefix+skill.Name))) < nworkers {
		if ctx.Err() != nil {
			tb.Fatal("the submitter never saw the workers' skills")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

// packets counts the packets m sent and received on all its sessions.
func packets(m *mesh.Mesh) uint64 {
	var n uint64
	for _, p := range m.Peers() {
		st := p.Stats()
		n += st.TxPackets + st.RxPackets
	}
	return n
}

// run runs b.N operations from inflight goroutines and reports ops/s
// under unit, and the p50 and p99 latency of one operation.
func runConcurrent(b *testing.B, inflight int, unit string, op func() error) {
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range inflight {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := op(); err != nil {
					failed.Store(&err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
	slices.Sort(lat)
	us := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(us(0.50), "p50-µs")
	b.ReportMetric(us(0.99), "p99-µs")
}

// BenchmarkTasks measures a no-op task from submit to result with one
// submitter and two workers on loopback, placed by the skill's tag and
// the workers' load, with 1 and 64 tasks in flight: impl=task is Submit
// then Wait, impl=task-run is Run (the worker answers a short task in the
// submit reply), impl=task-durable is Submit then Wait with the records
// in a durable store (every task commits twice, when it is queued and
// when its result arrives) and impl=task-run-durable Run with the store
// (a task answered in the reply commits once).
// impl=unary is an rpc unary call (16 bytes each way) from the submitter's
// node to a worker's in the same run, the yardstick of issue 18's latency
// target. allocs/op is the allocations of one task in the whole process:
// submitter and both workers.
func BenchmarkTasks(b *testing.B) {
	for _, impl := range []string{"unary", "task", "task-run", "task-durable", "task-run-durable"} {
		for _, inflight := range []int{1, 64} {
			b.Run(fmt.Sprintf("impl=%s/inflight=%d", impl, inflight), func(b *testing.B) {
				var scfg task.SubmitterConfig
				if strings.HasSuffix(impl, "-durable") {
					scfg.StorePath = filepath.Join(b.TempDir(), "tasks.db")
				}
				c := newTaskCluster(b, scfg, task.WorkerConfig{}, noop, 2)
				ctx := context.Background()
				if impl == "unary" {
					if err := c.workers[0].srv.Handle("echo", func(_ context.Context, req []byte) ([]byte, error) { return req, nil }); err != nil {
						b.Fatal(err)
					}
					cli := rpc.NewClient(c.sub.m, rpc.ClientOptions{})
					node := c.workers[0].m.ID()
					req := make([]byte, 16)
					call := func() error { _, err := cli.Call(ctx, node, "echo", req); return err }
					for range 100 { // warm up the streams' RTT estimate
						call()
					}
					before := packets(c.sub.m)
					runConcurrent(b, inflight, "calls/s", call)
					b.ReportMetric(float64(packets(c.sub.m)-before)/float64(b.N), "pkts/op")
					return
				}
				params := json.RawMessage(`{}`)
				op := func() error {
					id, err := c.s.Submit(ctx, task.Request{Skill: "noop", Params: params})
					if err == nil {
						_, err = c.s.Wait(ctx, id)
					}
					return err
				}
				if strings.HasPrefix(impl, "task-run") {
					op = func() error {
						_, err := c.s.Run(ctx, task.Request{Skill: "noop", Params: params})
						return err
					}
				}
				for range 100 {
					if err := op(); err != nil {
						b.Fatal(err)
					}
				}
				before := packets(c.sub.m)
				runConcurrent(b, inflight, "tasks/s", op)
				b.ReportMetric(float64(packets(c.sub.m)-before)/float64(b.N), "pkts/op")
			})
		}
	}
}

// BenchmarkTaskQueueMemory measures the memory of 100,000 tasks queued at
// one worker (its one slot is held by a task that never ends): the heap
// the worker holds for them (worker-B/task, measured after the submitter
// is closed and collected) and what the submitter's records cost
// (submitter-B/task). Each task has 16 bytes of parameters. Run it with
// -benchtime 1x: one op is the whole 100,000.
func BenchmarkTaskQueueMemory(b *testing.B) {
	const tasks = 100_000
	release := make(chan struct{})
	defer close(release)
	block := task.Skill{Name: "block", Handler: func(ctx context.Context, _ *task.Task) (task.Result, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return task.Result{}, nil
	}}
	wcfg := task.WorkerConfig{MaxRunning: 1, QueueSize: tasks, MaxPerSubmitter: tasks + 1}
	for range b.N {
		c := newTaskCluster(b, task.SubmitterConfig{MaxRecords: 2 * tasks}, wcfg, block, 1)
		node := c.workers[0].m.ID()
		ctx := context.Background()
		if _, err := c.s.Submit(ctx, task.Request{Skill: "block", Node: node}); err != nil {
			b.Fatal(err)
		}
		before := heapInUse()
		params := json.RawMessage(`{"n":"0123456"}`)
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Pointer[error]
		for range 64 {
			wg.Go(func() {
				for next.Add(1) <= tasks {
					if _, err := c.s.Submit(ctx, task.Request{Skill: "block", Node: node, Params: params}); err != nil {
						failed.Store(&err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err := failed.Load(); err != nil {
			b.Fatal(*err)
		}
		both := heapInUse()
		c.s.Close()
		c.s = nil
		worker := heapInUse()
		b.ReportMetric(float64(worker-before)/tasks, "worker-B/task")
		b.ReportMetric(float64(both-worker)/tasks, "submitter-B/task")
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
