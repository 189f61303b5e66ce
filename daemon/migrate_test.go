package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon"
	"github.com/netmesh/netmesh/identity"
)

// stream is a steady flow of events to one daemon: goroutines on several
// nodes, each delivering its events one after the other and checking
// that its sequence numbers rise.
type stream struct {
	t     testing.TB
	id    daemon.ID
	stop  chan struct{}
	wg    sync.WaitGroup
	count atomic.Int64

	mu    sync.Mutex
	acked map[string]uint64
	nodes map[identity.NodeID]int // where receipts said the events were applied
}

func startStream(t testing.TB, id daemon.ID, senders []*node, perNode int) *stream {
	s := &stream{t: t, id: id, stop: make(chan struct{}), acked: map[string]uint64{}, nodes: map[identity.NodeID]int{}}
	for _, n := range senders {
		for g := range perNode {
			s.wg.Go(func() {
				var last uint64
				for i := 0; ; i++ {
					select {
					case <-s.stop:
						return
					default:
					}
					d := fmt.Sprintf("%s/%d/%d", n.id().Short(), g, i)
					r, err := n.rt.Deliver(ctxT(t), id, []byte(d))
					if err != nil {
						t.Errorf("deliver %s: %v", d, err)
						return
					}
					if r.Seq <= last || r.Duplicate {
						t.Errorf("%s: receipt %+v after sequence %d", d, r, last)
						return
					}
					last = r.Seq
					s.mu.Lock()
					s.acked[d] = r.Seq
					s.nodes[r.Node]++
					s.mu.Unlock()
					s.count.Add(1)
				}
			})
		}
	}
	return s
}

// flowing waits until n more events were applied.
func (s *stream) flowing(n int64) {
	s.t.Helper()
	target := s.count.Load() + n
	eventually(s.t, 20*time.Second, "events flowing", func() bool { return s.count.Load() >= target || s.t.Failed() })
}

// halt stops the stream and returns what was acknowledged.
func (s *stream) halt() map[string]uint64 {
	close(s.stop)
	s.wg.Wait()
	return s.acked
}

// haltAndCheck stops the stream and checks the daemon's log, from a
// snapshot rt takes, against what was acknowledged (see checkLog). It
// returns the log, or nil if the test failed already.
func (s *stream) haltAndCheck(rt *daemon.Runtime) []record {
	s.t.Helper()
	acked := s.halt()
	if s.t.Failed() {
		return nil
	}
	snap, err := rt.Snapshot(ctxT(s.t), s.id)
	if err != nil {
		s.t.Fatal(err)
	}
	recs := records(s.t, snap)
	checkLog(s.t, recs, acked)
	return recs
}

// TestMigrateUnderASteadyStream moves a daemon around three nodes, six
// times, while nine senders on the three nodes deliver to it without
// pause: no sender sees an error, and the daemon's log has every
// acknowledged event once, at the sequence number its receipt gave, with
// no gap.
func TestMigrateUnderASteadyStream(t *testing.T) {
	ns := newMesh(t, 3, daemon.Config{}, nil)
	owner := ns[0]
	loc, err := owner.rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: ns[0].id()})
	if err != nil {
		t.Fatal(err)
	}
	s := startStream(t, loc.Daemon, ns, 3)
	s.flowing(50)
	at := ns[0]
	for i, to := range []*node{ns[1], ns[2], ns[0], ns[2], ns[1], ns[0]} {
		var phases []daemon.Phase
		// The owner moves it; a move of a daemon hosted elsewhere is
		// asked of its host.
		rep, err := owner.rt.Migrate(ctxT(t), loc.Daemon, to.id(), daemon.OnPhase(func(p daemon.Phase) { phases = append(phases, p) }))
		if err != nil {
			t.Fatalf("move %d to %s: %v", i, to.id().Short(), err)
		}
		if rep.From != at.id() || rep.To != to.id() || rep.CutoverSeq < rep.SnapshotSeq || len(rep.Phases) == 0 || rep.Phases[len(rep.Phases)-1].Phase != daemon.PhaseComplete {
			t.Fatalf("move %d: report %+v", i, rep)
		}
		if at == owner && !slices.Equal(phases, []daemon.Phase{daemon.PhaseSnapshot, daemon.PhaseTransfer, daemon.PhaseRestore, daemon.PhaseReplay, daemon.PhaseCutover, daemon.PhaseComplete}) {
			t.Fatalf("move %d: phases %v", i, phases)
		}
		t.Logf("move %d: %s → %s: snapshot %d, cutover %d, replayed %d, handed %d, frozen %v, total %v",
			i, rep.From.Short(), rep.To.Short(), rep.SnapshotSeq, rep.CutoverSeq, rep.Replayed, rep.Handed, rep.Frozen, rep.Total)
		at = to
		s.flowing(50)
		info, err := ns[1].rt.Stats(ctxT(t), loc.Daemon)
		if err != nil || info.Node != to.id() {
			t.Fatalf("after move %d: %+v %v", i, info, err)
		}
	}
	recs := s.haltAndCheck(owner.rt)
	if recs == nil {
		return
	}
	if recs[0].Seq != 1 || len(recs) != len(s.acked) {
		t.Fatalf("%d records from %d, %d acknowledged", len(recs), recs[0].Seq, len(s.acked))
	}
	if len(s.nodes) != 3 {
		t.Fatalf("events applied on %d nodes, want 3", len(s.nodes))
	}
	// The nodes it left keep nothing.
	for _, n := range ns[1:] {
		if got := n.rt.List(); len(got) != 0 {
			t.Fatalf("node %s still lists %+v", n.id().Short(), got)
		}
	}
}

// failAt makes the hook of rt fail at phase on side s, once.
func failAt(rt *daemon.Runtime, s daemon.Side, p daemon.Phase, err error) {
	var once atomic.Bool
	daemon.SetHook(rt, func(side2 daemon.Side, p2 daemon.Phase) error {
		if side2 == s && p2 == p && once.CompareAndSwap(false, true) {
			return err
		}
		return nil
	})
}

// TestMigrateFailureAtEveryPhase injects a failure at each phase, on the
// source and on the target, while events flow: every migration fails
// with the phase named, the daemon keeps serving on the source, the
// target holds nothing, and no event is lost or applied twice; both
// runtimes' stats count what happened. Then a migration succeeds.
func TestMigrateFailureAtEveryPhase(t *testing.T) {
	ns := newMesh(t, 3, daemon.Config{}, nil)
	src, dst := ns[0], ns[1]
	loc, err := src.rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: src.id()})
	if err != nil {
		t.Fatal(err)
	}
	s := startStream(t, loc.Daemon, ns, 2)
	injected := errors.New("injected")
	cases := []struct {
		rt    *daemon.Runtime
		side  daemon.Side
		phase daemon.Phase
	}{
		{src.rt, daemon.SideSource, daemon.PhaseSnapshot},
		{src.rt, daemon.SideSource, daemon.PhaseTransfer},
		{src.rt, daemon.SideSource, daemon.PhaseRestore},
		{src.rt, daemon.SideSource, daemon.PhaseReplay},
		{src.rt, daemon.SideSource, daemon.PhaseCutover},
		{dst.rt, daemon.SideTarget, daemon.PhaseTransfer},
		{dst.rt, daemon.SideTarget, daemon.PhaseRestore},
		{dst.rt, daemon.SideTarget, daemon.PhaseReplay},
		{dst.rt, daemon.SideTarget, daemon.PhaseCutover},
	}
	for _, c := range cases {
		failAt(c.rt, c.side, c.phase, injected)
		// Enough events during the transfer that a replay call is made.
		burst := daemon.OnPhase(func(p daemon.Phase) {
			if p == daemon.PhaseTransfer {
				if st := src.rt.RuntimeStats(); st.Hosted != 1 || st.Migrating != 1 {
					t.Errorf("%v %v: source hosts %d, migrating %d; want 1 and 1", c.side, c.phase, st.Hosted, st.Migrating)
				}
				for i := range 100 {
					if _, err := src.rt.Deliver(ctxT(t), loc.Daemon, fmt.Appendf(nil, "burst/%v/%v/%d", c.side, c.phase, i)); err != nil {
						t.Errorf("burst: %v", err)
					}
				}
			}
		})
		_, err := src.rt.Migrate(ctxT(t), loc.Daemon, dst.id(), burst)
		if err == nil {
			t.Fatalf("%v %v: the migration succeeded", c.side, c.phase)
		}
		var de *daemon.Error
		if !errors.As(err, &de) || de.Phase != c.phase {
			t.Fatalf("%v %v: error %v, want one in phase %v", c.side, c.phase, err, c.phase)
		}
		daemon.SetHook(c.rt, nil)
		s.flowing(20)
		r, err := ns[2].rt.Deliver(ctxT(t), loc.Daemon, []byte(fmt.Sprintf("after/%v/%v", c.side, c.phase)))
		if err != nil || r.Node != src.id() {
			t.Fatalf("%v %v: after the failure: %+v %v", c.side, c.phase, r, err)
		}
		eventually(t, 10*time.Second, "the target to drop the transfer", func() bool {
			return len(dst.rt.List()) == 0 && dst.rt.Load().Running == 0
		})
	}
	// Each failure counts on the source under its phase; the target
	// counts the arrivals it dropped once they had begun: those the
	// source aborted after a restore, or whose replay or cutover the
	// target failed (one whose restore failed was never restored).
	want := [daemon.PhaseComplete + 1]uint64{daemon.PhaseSnapshot: 1, daemon.PhaseTransfer: 2, daemon.PhaseRestore: 2, daemon.PhaseReplay: 2, daemon.PhaseCutover: 2}
	if st := src.rt.RuntimeStats(); st.MigrationFailures != want || st.MigratedOut != 0 || st.Migrating != 0 || st.Spawned != 1 {
		t.Fatalf("source stats %+v; want failures %v, one spawn, nothing moved or moving", st, want)
	}
	if st := dst.rt.RuntimeStats(); st.ArrivalsDropped != 5 || st.MigratedIn != 0 || st.Hosted != 0 || st.Incoming != 0 {
		t.Fatalf("target stats %+v; want 5 arrivals dropped and nothing hosted or arriving", st)
	}
	// Typed refusals of the target, and a caller that gives up.
	if err := dst.rt.Register(daemon.Kind{Name: "only-src", New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) { return &seqlog{}, nil }}); err != nil {
		t.Fatal(err)
	}
	_, err = src.rt.Migrate(ctxT(t), loc.Daemon, identity.NodeID{1, 2, 3})
	code(t, err, daemon.CodeUnreachable)
	ctx, cancel := context.WithCancel(ctxT(t))
	_, err = src.rt.Migrate(ctx, loc.Daemon, dst.id(), daemon.OnPhase(func(p daemon.Phase) {
		if p == daemon.PhaseRestore {
			cancel()
		}
	}))
	e := code(t, err, daemon.CodeAborted)
	if e.Phase != daemon.PhaseRestore {
		t.Fatalf("cancelled in %v", e.Phase)
	}
	// A target too slow for the caller's deadline.
	release := make(chan struct{})
	daemon.SetHook(dst.rt, func(side daemon.Side, p daemon.Phase) error {
		if p == daemon.PhaseRestore {
			<-release
		}
		return nil
	})
	ctx, cancel = context.WithTimeout(ctxT(t), time.Second)
	_, err = src.rt.Migrate(ctx, loc.Daemon, dst.id())
	cancel()
	close(release)
	daemon.SetHook(dst.rt, nil)
	code(t, err, daemon.CodeTimeout)
	eventually(t, 10*time.Second, "the target to drop the slow transfer", func() bool { return dst.rt.Load().Running == 0 })
	// Now it moves.
	if _, err := src.rt.Migrate(ctxT(t), loc.Daemon, dst.id()); err != nil {
		t.Fatal(err)
	}
	if st := src.rt.RuntimeStats(); st.MigratedOut != 1 || st.Hosted != 0 {
		t.Fatalf("source stats after the move %+v; want one migrated out, none hosted", st)
	}
	eventually(t, 10*time.Second, "the target to count the arrival", func() bool {
		st := dst.rt.RuntimeStats()
		return st.MigratedIn == 1 && st.Hosted == 1 && st.Spawned == 0
	})
	s.flowing(20)
	s.haltAndCheck(src.rt)
}

// TestMigrateRefusals: a target without the kind's factory, or without
// its requirements, refuses in the transfer phase; a daemon whose
// snapshot fails stays; the daemon keeps serving on the source.
func TestMigrateRefusals(t *testing.T) {
	ns := newMesh(t, 3, daemon.Config{}, func(i int) []string {
		if i == 0 {
			return []string{"gpu"}
		}
		return nil
	})
	src, dst := ns[0], ns[1]
	if err := src.rt.Register(daemon.Kind{Name: "only-here", New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) { return &seqlog{}, nil }}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind string
		code daemon.Code
	}{
		{"only-here", daemon.CodeFactoryNotFound},
		{"gpu-job", daemon.CodeRequirementsNotMet},
		{"failing", daemon.CodeSnapshotFailed},
	} {
		loc, err := src.rt.Spawn(ctxT(t), c.kind, daemon.SpawnOptions{Node: src.id()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.rt.Deliver(ctxT(t), loc.Daemon, []byte("before")); err != nil {
			t.Fatal(err)
		}
		_, err = src.rt.Migrate(ctxT(t), loc.Daemon, dst.id())
		e := code(t, err, c.code)
		if want := map[daemon.Code]daemon.Phase{daemon.CodeSnapshotFailed: daemon.PhaseSnapshot}[c.code]; want == 0 && e.Phase != daemon.PhaseTransfer || want != 0 && e.Phase != want {
			t.Fatalf("%s: phase %v", c.kind, e.Phase)
		}
		r, err := ns[2].rt.Deliver(ctxT(t), loc.Daemon, []byte("after"))
		if err != nil || r.Node != src.id() || r.Seq != 2 {
			t.Fatalf("%s: after the refusal: %+v %v", c.kind, r, err)
		}
	}
	if len(dst.rt.List()) != 0 {
		t.Fatalf("the target holds %+v", dst.rt.List())
	}
}

// TestMigrateCutoverReplyLost loses the reply to the cutover, once after
// the target committed and once after it refused: the source asks the
// target, learns what happened, and completes or goes on serving;
// nothing is lost or applied twice.
func TestMigrateCutoverReplyLost(t *testing.T) {
	ns := newMesh(t, 3, daemon.Config{}, nil)
	src, dst := ns[0], ns[1]
	loc, err := src.rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: src.id()})
	if err != nil {
		t.Fatal(err)
	}
	s := startStream(t, loc.Daemon, ns, 2)
	s.flowing(30)
	// The target refused, and the source did not hear it.
	daemon.LoseCutoverReply(src.rt)
	failAt(dst.rt, daemon.SideTarget, daemon.PhaseCutover, errors.New("injected"))
	_, err = src.rt.Migrate(ctxT(t), loc.Daemon, dst.id())
	if e := code(t, err, daemon.CodeUnreachable); e.Phase != daemon.PhaseCutover {
		t.Fatalf("failed in %v", e.Phase)
	}
	daemon.SetHook(dst.rt, nil)
	s.flowing(30)
	if info, err := src.rt.Stats(ctxT(t), loc.Daemon); err != nil || info.Node != src.id() || info.State != "running" {
		t.Fatalf("info %+v %v", info, err)
	}
	// The target committed, and the source did not hear it.
	daemon.LoseCutoverReply(src.rt)
	rep, err := src.rt.Migrate(ctxT(t), loc.Daemon, dst.id())
	if err != nil {
		t.Fatal(err)
	}
	if rep.To != dst.id() {
		t.Fatalf("report %+v", rep)
	}
	s.flowing(30)
	if s.haltAndCheck(src.rt) == nil {
		return
	}
	if info, err := src.rt.Stats(ctxT(t), loc.Daemon); err != nil || info.Node != dst.id() || info.State != "running" {
		t.Fatalf("info %+v %v", info, err)
	}
}

// TestSealedKeyRefusedByANodeNotTheTarget sends a node a transfer whose
// key is sealed for another node: it cannot open it and refuses.
func TestSealedKeyRefusedByANodeNotTheTarget(t *testing.T) {
	ns := newMesh(t, 3, daemon.Config{}, nil)
	key, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	err = daemon.PrepareSealedFor(ctxT(t), ns[0].rt, ns[2].id(), ns[1].id(), "seqlog", key)
	code(t, err, daemon.CodeKeyRefused)
	// The same transfer sealed for its target is taken.
	if err := daemon.PrepareSealedFor(ctxT(t), ns[0].rt, ns[2].id(), ns[2].id(), "seqlog", key); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateLongTail has 2,000 events of 1 KiB applied between the
// replay and the cutover: more than one call carries, so the frozen
// daemon's tail goes as replays before the cutover. Nothing is lost.
func TestMigrateLongTail(t *testing.T) {
	ns := newMesh(t, 2, daemon.Config{}, nil)
	src, dst := ns[0], ns[1]
	loc, err := src.rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: src.id()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]uint64{}
	daemon.SetHook(src.rt, func(s daemon.Side, p daemon.Phase) error {
		if s != daemon.SideSource || p != daemon.PhaseCutover {
			return nil
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 250 {
					d := fmt.Sprintf("%d/%d/%s", g, i, make([]byte, 1000))
					r, err := dst.rt.Deliver(ctxT(t), loc.Daemon, []byte(d))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[d] = r.Seq
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return nil
	})
	rep, err := src.rt.Migrate(ctxT(t), loc.Daemon, dst.id())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed < 2000 || rep.CutoverSeq != 2000 {
		t.Fatalf("report %+v", rep)
	}
	snap, err := src.rt.Snapshot(ctxT(t), loc.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, snap)
	if len(recs) != 2000 {
		t.Fatalf("%d records", len(recs))
	}
	checkLog(t, recs, acked)
}
