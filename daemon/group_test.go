package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon"
)

// workers tags every node but the first "worker": the first coordinates
// and hosts nothing, so a test can kill any other.
func workers(i int) []string {
	if i == 0 {
		return nil
	}
	return []string{"worker"}
}

var onWorkers = capability.HasTag("worker")

// TestReplicaGroupRespawnsAfterANodeDies places two replicas on distinct
// nodes, spreads events over them, kills the node of one, and finds it
// running again elsewhere with the same id. The same seed gives the same
// ids.
func TestReplicaGroupRespawnsAfterANodeDies(t *testing.T) {
	ns := newMesh(t, 5, daemon.Config{}, workers)
	c := ns[0]
	seed := bytes.Repeat([]byte{7}, 32)
	g, err := c.rt.NewReplicaGroup(ctxT(t), "seqlog", daemon.ReplicaOptions{N: 2, Where: onWorkers, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	st := g.State(ctxT(t))
	if len(st.Members) != 2 || st.Members[0].Node == st.Members[1].Node || !st.Members[0].Healthy || !st.Members[1].Healthy {
		t.Fatalf("state %+v", st)
	}
	perMember := map[daemon.ID]int{}
	for i := range 20 {
		r, err := g.Deliver(ctxT(t), fmt.Appendf(nil, "e%d", i))
		if err != nil {
			t.Fatal(err)
		}
		perMember[r.Daemon]++
	}
	for _, id := range g.IDs() {
		if perMember[id] < 5 {
			t.Fatalf("events per replica %v: not spread", perMember)
		}
	}
	// Kill the node of replica 0.
	victim := st.Members[0]
	for _, n := range ns {
		if n.id() == victim.Node {
			n.close()
		}
	}
	eventually(t, 20*time.Second, "the replica started again", func() bool {
		s := g.State(ctxT(t))
		m := s.Members[0]
		return s.Respawns == 1 && m.Healthy && m.Node != victim.Node && m.Node != s.Members[1].Node
	})
	if st := c.rt.RuntimeStats(); st.Respawns != 1 || st.Groups != 1 {
		t.Fatalf("coordinator stats %+v; want one respawn, one group", st)
	}
	r, err := c.rt.Deliver(ctxT(t), victim.Daemon, []byte("after"))
	if err != nil || r.Seq != 1 {
		t.Fatalf("the restarted replica: %+v %v (it starts empty)", r, err)
	}
	for range 10 {
		if _, err := g.Deliver(ctxT(t), []byte("more")); err != nil {
			t.Fatal(err)
		}
	}
	ids := g.IDs()
	if err := g.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The same seed, the same identities.
	g2, err := c.rt.NewReplicaGroup(ctxT(t), "seqlog", daemon.ReplicaOptions{N: 2, Where: onWorkers, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if !slices.Equal(g2.IDs(), ids) {
		t.Fatalf("ids %v, then %v", ids, g2.IDs())
	}
}

// TestStandbyPromotionReplaysTheBuffer syncs two standbys, applies more
// events (buffered by the standbys), kills the active's node, and finds
// a standby promoted with every acknowledged event, serving under the
// same id; the other standby follows the new active.
func TestStandbyPromotionReplaysTheBuffer(t *testing.T) {
	ns := newMesh(t, 4, daemon.Config{}, workers)
	c := ns[0]
	g, err := c.rt.NewStandbyGroup(ctxT(t), "seqlog", daemon.StandbyOptions{Standbys: 2, Where: onWorkers})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	acked := map[string]uint64{}
	deliver := func(from *node, n int, tag string) {
		for i := range n {
			d := fmt.Sprintf("%s%d", tag, i)
			r, err := from.rt.Deliver(ctxT(t), g.ID(), []byte(d))
			if err != nil {
				t.Fatal(err)
			}
			acked[d] = r.Seq
		}
	}
	deliver(c, 20, "before-sync")
	if err := g.SyncStandbys(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	deliver(c, 30, "after-sync")
	st := g.State(ctxT(t))
	if len(st.Members) != 3 {
		t.Fatalf("state %+v", st)
	}
	for _, m := range st.Members {
		if !m.Healthy || m.Seq != 50 {
			t.Fatalf("member %+v, want healthy at 50", m)
		}
	}
	active := g.Active()
	var other *node
	for _, n := range ns[1:] {
		if n.id() == active {
			n.close()
		} else if other == nil {
			other = n
		}
	}
	eventually(t, 20*time.Second, "a standby promoted", func() bool { return g.Active() != active })
	r, err := other.rt.Deliver(ctxT(t), g.ID(), []byte("after-failover"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 51 || r.Node != g.Active() {
		t.Fatalf("receipt %+v, want seq 51 on %s", r, g.Active().Short())
	}
	acked["after-failover"] = 51
	snap, err := c.rt.Snapshot(ctxT(t), g.ID())
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, snap)
	if len(recs) != 51 {
		t.Fatalf("%d records after the failover, want 51", len(recs))
	}
	checkLog(t, recs, acked)
	eventually(t, 20*time.Second, "the other standby synced to the new active", func() bool {
		st := g.State(ctxT(t))
		return st.Failovers == 1 && len(st.Members) == 2 && st.Members[1].Healthy && st.Members[1].Seq == 51
	})
	if st := c.rt.RuntimeStats(); st.Failovers != 1 || st.Groups != 1 {
		t.Fatalf("coordinator stats %+v; want one failover, one group", st)
	}
	var promoted, standbys uint64
	for _, n := range ns[1:] {
		if n.id() != active {
			st := n.rt.RuntimeStats()
			promoted += st.Promoted
			standbys += uint64(st.Standbys)
		}
	}
	if promoted != 1 || standbys != 1 {
		t.Fatalf("the survivors promoted %d standbys and hold %d; want 1 and 1", promoted, standbys)
	}
}

// TestForkAtASequenceNumber forks a daemon at a sequence number it has
// not reached, while events keep coming: the children start from the
// parent's state at exactly that number, carry records the parent
// signed, and go on independently.
func TestForkAtASequenceNumber(t *testing.T) {
	ns := newMesh(t, 4, daemon.Config{}, workers)
	c := ns[0]
	loc, err := c.rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: ns[1].id()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := c.rt.Deliver(ctxT(t), loc.Daemon, fmt.Appendf(nil, "p%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan *daemon.ForkGroup, 1)
	go func() {
		g, err := c.rt.Fork(ctxT(t), loc.Daemon, daemon.ForkOptions{N: 3, Seq: 25, Where: onWorkers})
		if err != nil {
			t.Error(err)
		}
		done <- g
	}()
	for i := 10; i < 40; i++ {
		if i == 20 {
			// The fork must be waiting before the daemon reaches 25, or
			// it is (rightly) refused as past: a busy machine can start
			// its goroutine that late.
			eventually(t, 10*time.Second, "the fork to wait for 25", func() bool {
				return daemon.ForkTriggers(ns[1].rt, loc.Daemon) == 1
			})
		}
		if _, err := ns[2].rt.Deliver(ctxT(t), loc.Daemon, fmt.Appendf(nil, "p%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	g := <-done
	if g == nil {
		return
	}
	if g.Seq != 25 || len(g.Members) != 3 || g.Parent != loc.Daemon {
		t.Fatalf("fork group %+v", g)
	}
	parent, err := c.rt.Snapshot(ctxT(t), loc.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	prefix := records(t, parent)[:25]
	for i, m := range g.Members {
		info, err := ns[3].rt.Stats(ctxT(t), m.Daemon)
		if err != nil {
			t.Fatal(err)
		}
		rec := info.Fork
		if rec == nil || rec.Verify() != nil || rec.Parent != loc.Daemon || rec.Child != m.Daemon || rec.Seq != 25 || rec.Index != i || rec.Group != g.Group {
			t.Fatalf("child %d: record %+v", i, rec)
		}
		s, err := c.rt.Snapshot(ctxT(t), m.Daemon)
		if err != nil {
			t.Fatal(err)
		}
		recs := records(t, s)
		if !slices.Equal(recs, prefix) {
			t.Fatalf("child %d starts from %d records, not the parent's first 25", i, len(recs))
		}
		if parentState, _ := daemonState(prefix); !rec.Matches(parentState) {
			t.Fatalf("child %d: the record's state hash does not match the parent's state at 25", i)
		}
		r, err := c.rt.Deliver(ctxT(t), m.Daemon, fmt.Appendf(nil, "child%d", i))
		if err != nil || r.Seq != 26 {
			t.Fatalf("child %d: %+v %v", i, r, err)
		}
	}
	// Past the sequence number, a fork is refused.
	_, err = c.rt.Fork(ctxT(t), loc.Daemon, daemon.ForkOptions{N: 1, Seq: 3})
	code(t, err, daemon.CodeInvalid)
	// A child moves, and its record goes with it.
	m := g.Members[0]
	to := ns[1].id()
	if m.Node == to {
		to = ns[2].id()
	}
	if _, err := c.rt.Migrate(ctxT(t), m.Daemon, to); err != nil {
		t.Fatal(err)
	}
	info, err := c.rt.Stats(ctxT(t), m.Daemon)
	if err != nil || info.Node != to || info.Fork == nil || info.Fork.Verify() != nil {
		t.Fatalf("after moving: %+v %v", info, err)
	}
}

// daemonState is a seqlog's state holding recs.
func daemonState(recs []record) ([]byte, error) { return json.Marshal(recs) }
