package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/rpc"
)

// daemonNode is a mesh with its rpc server and daemon runtime, running
// the benchmarks' kinds.
type daemonNode struct {
	m   *mesh.Mesh
	srv *rpc.Server
	rt  *daemon.Runtime
}

// benchKinds are the kinds of the benchmarks: sink does nothing; blob
// holds a 1 MiB state that every event writes into.
func benchKinds() []daemon.Kind {
	return []daemon.Kind{
		{Name: "sink", New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) { return sink{}, nil }},
		{Name: "blob", New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) {
			return &blob{state: make([]byte, blobSize)}, nil
		}},
	}
}

type sink struct{}

func (sink) Handle(daemon.Event) ([][]byte, error) { return nil, nil }

// blobSize is the state of a blob daemon.
const blobSize = 1 << 20

// blob is a daemon with 1 MiB of state: each event writes its sequence
// number into the state at an offset that moves with it.
type blob struct{ state []byte }

func (d *blob) Handle(ev daemon.Event) ([][]byte, error) {
	off := (ev.Seq * 8) % blobSize
	binary.BigEndian.PutUint64(d.state[off:], ev.Seq)
	return nil, nil
}

func (d *blob) Snapshot() ([]byte, error) { return slices.Clone(d.state), nil }

func (d *blob) Restore(state []byte) error {
	if len(state) != blobSize {
		return fmt.Errorf("state of %d bytes", len(state))
	}
	d.state = state
	return nil
}

// startDaemonNode starts a node that declares a silent peer down within
// about 1.75 s: after 250 ms without a packet (1.25 keepalives of
// 200 ms) it probes the peer, and declares it down when the probes went
// unanswered for ProbeTimeout (1.5 s). The standby benchmark's failover
// starts then.
func startDaemonNode(tb testing.TB) *daemonNode {
	tb.Helper()
	m, err := mesh.New(mesh.Config{
		ListenAddr:          "127.0.0.1:0",
		KeepaliveInterval:   200 * time.Millisecond,
		HandshakeRetransmit: 50 * time.Millisecond,
		HandshakeGiveUp:     2 * time.Second,
		Capabilities:        capability.Config{MinAnnounceInterval: 100 * time.Millisecond, TTL: 30 * time.Second},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Close()
		tb.Fatal(err)
	}
	srv, err := rpc.NewServer(m, rpc.ServerOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	rt, err := daemon.NewRuntime(m, srv, daemon.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	for _, k := range benchKinds() {
		if err := rt.Register(k); err != nil {
			tb.Fatal(err)
		}
	}
	n := &daemonNode{m: m, srv: srv, rt: rt}
	tb.Cleanup(n.close)
	return n
}

// close stops the node; it may be called twice.
func (n *daemonNode) close() {
	n.rt.Close()
	n.srv.Close()
	n.m.Close()
}

// daemonCluster starts n nodes, connects every pair, and waits until
// each sees the others' runtimes.
func daemonCluster(tb testing.TB, n int) []*daemonNode {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	ns := make([]*daemonNode, n)
	for i := range ns {
		ns[i] = startDaemonNode(tb)
	}
	for i, a := range ns {
		for _, b := range ns[i+1:] {
			if _, err := a.m.Connect(ctx, b.m.Addr(), mesh.Pin{Key: b.m.Identity().PublicKey()}); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for _, a := range ns {
		for len(a.m.FindNodes(capability.HasTag(daemon.KindTagPrefix+"blob"))) < n {
			if ctx.Err() != nil {
				tb.Fatal("the runtimes never saw each other")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return ns
}

// BenchmarkDaemonEvents measures events delivered to a no-op daemon on
// another node, receipt included, from 1 and 16 goroutines of the
// sending node (impl=daemon), next to an rpc unary call (16 bytes each
// way) between the same two nodes in the same run (impl=unary).
// Concurrent events to one daemon travel in batches, one batch in
// flight: 16 senders share calls. allocs/op counts both nodes.
func BenchmarkDaemonEvents(b *testing.B) {
	for _, impl := range []string{"unary", "daemon"} {
		for _, senders := range []int{1, 16} {
			b.Run(fmt.Sprintf("impl=%s/senders=%d", impl, senders), func(b *testing.B) {
				ns := daemonCluster(b, 2)
				ctx := context.Background()
				var op func() error
				unit := "events/s"
				if impl == "unary" {
					if err := ns[1].srv.Handle("echo", func(_ context.Context, req []byte) ([]byte, error) { return req, nil }); err != nil {
						b.Fatal(err)
					}
					cli := rpc.NewClient(ns[0].m, rpc.ClientOptions{})
					req := make([]byte, 16)
					op = func() error { _, err := cli.Call(ctx, ns[1].m.ID(), "echo", req); return err }
					unit = "calls/s"
				} else {
					loc, err := ns[0].rt.Spawn(ctx, "sink", daemon.SpawnOptions{Node: ns[1].m.ID()})
					if err != nil {
						b.Fatal(err)
					}
					event := make([]byte, 16)
					op = func() error { _, err := ns[0].rt.Deliver(ctx, loc.Daemon, event); return err }
				}
				for range 100 { // warm up the streams' RTT estimate
					if err := op(); err != nil {
						b.Fatal(err)
					}
				}
				runConcurrent(b, senders, unit, op)
			})
		}
	}
}

// eventRate and eventSenders pace the event stream of
// BenchmarkDaemonMigration: 10,000 events/s handed to a pool of
// goroutines on the third node, each delivering one event at a time.
const (
	eventRate    = 10_000
	eventSenders = 32
	// moveGap is the pause between two moves.
	moveGap = 200 * time.Millisecond
)

// BenchmarkDaemonMigration moves a daemon with 1 MiB of state back and
// forth between two nodes while a third sends it 10,000 events/s. One op
// is one migration (run it with -benchtime 20x). It reports the
// migration's duration (ms/move, p50), how long the daemon stopped
// applying at the cutover (frozen-µs, p50), the largest delay any event
// saw during a move, from the time it was due to its receipt, as the
// p50 and p99 over the moves (max-delay-p50-µs, max-delay-p99-µs), the
// same for a window as long before each move, when nothing moves
// (quiet-delay-p50-µs, quiet-delay-p99-µs: what the machine's noise
// alone does to the stream), the
// events applied during a move (events/move), and lost and duplicated
// events, checked from the receipts' sequence numbers: every event
// acknowledged has its own number, and they cover 1 to the last with no
// gap.
func BenchmarkDaemonMigration(b *testing.B) {
	ns := daemonCluster(b, 3)
	owner := ns[2]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loc, err := owner.rt.Spawn(ctx, "blob", daemon.SpawnOptions{Node: ns[0].m.ID()})
	if err != nil {
		b.Fatal(err)
	}
	type sent struct {
		due, done time.Time
		seq       uint64
	}
	var mu sync.Mutex
	var log []sent
	var failed atomic.Pointer[error]
	due := make(chan time.Time, eventRate) // a second of events may wait for a sender
	var wg sync.WaitGroup
	event := make([]byte, 64)
	for range eventSenders {
		wg.Go(func() {
			for d := range due {
				r, err := owner.rt.Deliver(ctx, loc.Daemon, event)
				if err != nil {
					if ctx.Err() == nil {
						failed.Store(&err)
					}
					return
				}
				s := sent{due: d, done: time.Now(), seq: r.Seq}
				mu.Lock()
				log = append(log, s)
				mu.Unlock()
			}
		})
	}
	pacer := make(chan struct{})
	streamStart := time.Now()
	go func() {
		defer close(due)
		start := time.Now()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				for target := int(now.Sub(start).Seconds() * eventRate); n < target; n++ {
					select {
					case due <- start.Add(time.Duration(n) * time.Second / eventRate):
					default: // every sender is stuck: the stream stalls, which the delays show
					}
				}
			case <-pacer:
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the stream in steady state
	type move struct {
		start, end time.Time
		rep        daemon.MigrationReport
	}
	moves := make([]move, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		to := ns[(i+1)%2].m.ID()
		start := time.Now()
		rep, err := owner.rt.Migrate(ctx, loc.Daemon, to)
		if err != nil {
			b.Fatal(err)
		}
		moves = append(moves, move{start, time.Now(), rep})
		time.Sleep(moveGap) // events flow between moves
	}
	b.StopTimer()
	close(pacer)
	wg.Wait()
	streamed := time.Since(streamStart)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	snap, err := owner.rt.Snapshot(context.Background(), loc.Daemon)
	if err != nil {
		b.Fatal(err)
	}
	// Lost and duplicated, from the sequence numbers: an event lost in a
	// move (applied on the source, missing on the target) leaves its
	// number to another, which two receipts then carry; an event applied
	// twice takes two numbers, and the daemon ends beyond the receipts.
	seqs := make([]uint64, len(log))
	for i, s := range log {
		seqs[i] = s.seq
	}
	slices.Sort(seqs)
	lost := 0
	for i := 1; i < len(seqs); i++ {
		if seqs[i] == seqs[i-1] {
			lost++
		}
	}
	dup := int(snap.Seq) - (len(seqs) - lost)
	// And the state: each of the last 131,072 events wrote its number in
	// its own slot.
	for seq := snap.Seq; seq > 0 && seq+blobSize/8 > snap.Seq; seq-- {
		if got := binary.BigEndian.Uint64(snap.State[(seq*8)%blobSize:]); got != seq {
			b.Fatalf("the state's slot of event %d holds %d", seq, got)
		}
	}
	// The largest delay of the events in flight during each move, and,
	// as a baseline, during a window as long just before it, when
	// nothing moved.
	worstIn := func(from, to time.Time) (worst time.Duration, n int) {
		for _, s := range log {
			if s.done.After(from) && s.due.Before(to) {
				worst = max(worst, s.done.Sub(s.due))
				n++
			}
		}
		return worst, n
	}
	var durations, frozen, maxDelays, baseDelays []time.Duration
	perMove := 0
	for _, mv := range moves {
		durations = append(durations, mv.end.Sub(mv.start))
		frozen = append(frozen, mv.rep.Frozen)
		worst, n := worstIn(mv.start, mv.end)
		perMove += n
		maxDelays = append(maxDelays, worst)
		quiet := mv.start.Add(-moveGap / 4)
		base, _ := worstIn(quiet.Add(-mv.end.Sub(mv.start)), quiet)
		baseDelays = append(baseDelays, base)
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		slices.Sort(ds)
		return ds[max(0, min(int(float64(len(ds))*p+0.5)-1, len(ds)-1))]
	}
	b.ReportMetric(float64(pct(durations, 0.5).Microseconds())/1e3, "ms/move")
	b.ReportMetric(float64(pct(frozen, 0.5).Microseconds()), "frozen-µs")
	b.ReportMetric(float64(pct(maxDelays, 0.5).Microseconds()), "max-delay-p50-µs")
	b.ReportMetric(float64(pct(maxDelays, 0.99).Microseconds()), "max-delay-p99-µs")
	b.ReportMetric(float64(pct(baseDelays, 0.5).Microseconds()), "quiet-delay-p50-µs")
	b.ReportMetric(float64(pct(baseDelays, 0.99).Microseconds()), "quiet-delay-p99-µs")
	b.ReportMetric(float64(perMove)/float64(len(moves)), "events/move")
	b.ReportMetric(float64(len(log))/streamed.Seconds(), "events/s")
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(dup), "duplicated")
	if lost != 0 || dup != 0 {
		b.Fatalf("lost %d, duplicated %d", lost, dup)
	}
}

// BenchmarkStandbyFailover measures a standby group's failover: the time
// from the active's node closing (without notice, as a crash) to the
// promoted standby applying an event again, as a sender on another node
// sees it (it retries every 10 ms). The coordinator learns of the death
// from the mesh, when the session is declared down: 250 ms of silence
// and 1.5 s of unanswered probes (see startDaemonNode). That wait is most of the number
// (failover-ms); promote-ms is the rest, from the peer event to the
// promoted standby serving. One op is one failover of a fresh four-node
// cluster (run it with -benchtime 5x).
func BenchmarkStandbyFailover(b *testing.B) {
	var failovers, promotions []time.Duration
	b.StopTimer()
	for range b.N {
		ns := daemonCluster(b, 4)
		coord, active := ns[0], ns[1]
		ctx, cancel := context.WithCancel(context.Background())
		g, err := coord.rt.NewStandbyGroup(ctx, "blob", daemon.StandbyOptions{Standbys: 2, Active: active.m.ID()})
		if err != nil {
			b.Fatal(err)
		}
		for range 100 {
			if _, err := coord.rt.Deliver(ctx, g.ID(), make([]byte, 64)); err != nil {
				b.Fatal(err)
			}
		}
		down := make(chan time.Time, 1)
		go func() {
			for ev := range coord.m.WatchPeers(ctx) {
				if ev.Peer == active.m.ID() && !ev.Up {
					down <- time.Now()
					return
				}
			}
		}()
		b.StartTimer()
		died := time.Now()
		active.close()
		for {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
			_, err := coord.rt.Deliver(cctx, g.ID(), make([]byte, 64))
			cancel()
			if err == nil {
				break
			}
			if time.Since(died) > 30*time.Second {
				b.Fatalf("no failover in 30 s: %v", err)
			}
		}
		served := time.Now()
		b.StopTimer()
		failovers = append(failovers, served.Sub(died))
		promotions = append(promotions, served.Sub(<-down))
		cancel()
		g.Close()
		for _, n := range ns {
			n.close()
		}
	}
	slices.Sort(failovers)
	slices.Sort(promotions)
	b.ReportMetric(float64(failovers[len(failovers)/2].Microseconds())/1e3, "failover-ms")
	b.ReportMetric(float64(promotions[len(promotions)/2].Microseconds())/1e3, "promote-ms")
}
