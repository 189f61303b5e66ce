package daemon_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon"
	"github.com/netmesh/netmesh/identity"
)

func TestRegisterRefusesDuplicatesAndBadNames(t *testing.T) {
	n := newNode(t, daemon.Config{})
	newDaemon := func(daemon.ID, *identity.Identity) (daemon.Daemon, error) { return &seqlog{}, nil }
	if err := n.rt.Register(daemon.Kind{Name: "seqlog", New: newDaemon}); !errors.Is(err, daemon.ErrKindExists) {
		t.Fatalf("second seqlog: %v, want ErrKindExists", err)
	}
	for _, name := range []string{"", "Upper", "has:colon", string(make([]byte, daemon.MaxKindName+1))} {
		if err := n.rt.Register(daemon.Kind{Name: name, New: newDaemon}); !errors.Is(err, daemon.ErrInvalidKind) {
			t.Fatalf("kind %q: %v, want ErrInvalidKind", name, err)
		}
	}
	if err := n.rt.Register(daemon.Kind{Name: "nofactory"}); !errors.Is(err, daemon.ErrInvalidKind) {
		t.Fatalf("kind without a factory: %v", err)
	}
	if got := n.rt.Kinds(); !slices.Equal(got, []string{"failing", "gated", "gpu-job", "seqlog"}) {
		t.Fatalf("kinds %v", got)
	}
}

func TestSpawnUnknownKindIsFactoryNotFound(t *testing.T) {
	ns := newMesh(t, 2, daemon.Config{}, nil)
	a, b := ns[0], ns[1]
	// b has no factory for it, though a asks b by name.
	if err := a.rt.Register(daemon.Kind{Name: "only-here", New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) { return &seqlog{}, nil }}); err != nil {
		t.Fatal(err)
	}
	_, err := a.rt.Spawn(ctxT(t), "only-here", daemon.SpawnOptions{Node: b.id()})
	e := code(t, err, daemon.CodeFactoryNotFound)
	if e.Node != b.id() {
		t.Fatalf("error names node %s, want %s", e.Node.Short(), b.id().Short())
	}
	_, err = a.rt.Spawn(ctxT(t), "nowhere", daemon.SpawnOptions{})
	code(t, err, daemon.CodePlacementFailed)
	// Requirements: b has no gpu.
	_, err = a.rt.Spawn(ctxT(t), "gpu-job", daemon.SpawnOptions{Node: b.id()})
	code(t, err, daemon.CodeRequirementsNotMet)
}

func TestSpawnPlacedByRequirementsAndLoad(t *testing.T) {
	// Node 0 places; 1 has no gpu; 2 and 3 have one, 3 is busier.
	ns := newMesh(t, 4, daemon.Config{MaxDaemons: 8}, func(i int) []string {
		if i >= 2 {
			return []string{"gpu"}
		}
		return nil
	})
	for range 3 {
		if _, err := ns[3].rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: ns[3].id()}); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for node 0 to see node 3's load.
	sees(t, ns[0], ns[3], capability.AtLeast(daemon.LoadPrefix+".running", 3))
	loc, err := ns[0].rt.Spawn(ctxT(t), "gpu-job", daemon.SpawnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if loc.Node != ns[2].id() {
		t.Fatalf("placed on %s, want the idle gpu node %s", loc.Node.Short(), ns[2].id().Short())
	}
	info, err := ns[1].rt.Stats(ctxT(t), loc.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	if info.Node != ns[2].id() || info.Kind != "gpu-job" || info.Owner != ns[0].id() {
		t.Fatalf("info %+v", info)
	}
	// Where narrows further: nothing matches.
	_, err = ns[0].rt.Spawn(ctxT(t), "gpu-job", daemon.SpawnOptions{Where: capability.HasTag("tpu")})
	code(t, err, daemon.CodePlacementFailed)
}

// TestDeliverManySendersOneOrder sends events from three nodes (one of
// them the host), four goroutines each, each goroutine waiting for its
// receipt before the next: the daemon applies them in one order with no
// gap, each once, and each goroutine's in its order.
func TestDeliverManySendersOneOrder(t *testing.T) {
	ns := newMesh(t, 3, daemon.Config{}, nil)
	loc, err := ns[0].rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: ns[1].id()})
	if err != nil {
		t.Fatal(err)
	}
	const perSender = 100
	var mu sync.Mutex
	acked := map[string]uint64{}
	var wg sync.WaitGroup
	for _, n := range ns {
		for g := range 4 {
			wg.Go(func() {
				var last uint64
				for i := range perSender {
					d := fmt.Sprintf("%s/%d/%d", n.id().Short(), g, i)
					r, err := n.rt.Deliver(ctxT(t), loc.Daemon, []byte(d))
					if err != nil {
						t.Errorf("deliver %s: %v", d, err)
						return
					}
					if r.Seq <= last {
						t.Errorf("%s: sequence %d after %d", d, r.Seq, last)
					}
					if got := binary.BigEndian.Uint64(r.Outputs[0]); got != r.Seq || r.Node != ns[1].id() {
						t.Errorf("%s: receipt %+v", d, r)
					}
					last = r.Seq
					mu.Lock()
					acked[d] = r.Seq
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	s, err := ns[0].rt.Snapshot(ctxT(t), loc.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, s)
	if len(recs) != 3*4*perSender || recs[0].Seq != 1 {
		t.Fatalf("%d records from %d, want %d from 1", len(recs), recs[0].Seq, 3*4*perSender)
	}
	checkLog(t, recs, acked)
	for _, r := range recs {
		if r.From.IsZero() {
			t.Fatalf("record %+v has no sender", r)
		}
	}
}

// TestBackpressureAtTheInbox fills a daemon's inbox (one event) while
// its Handle is held: a third sender's event is refused at once, and the
// daemon applies the others once it goes on.
func TestBackpressureAtTheInbox(t *testing.T) {
	ns := newMesh(t, 4, daemon.Config{}, nil)
	host := ns[3]
	// The host's inbox holds one event.
	host.close()
	host = newNode(t, daemon.Config{InboxSize: 1})
	for _, n := range ns[:3] {
		connect(t, n, host)
		sees(t, n, host, capability.HasTag(daemon.KindTagPrefix+"gated"))
	}
	loc, err := ns[0].rt.Spawn(ctxT(t), "gated", daemon.SpawnOptions{Node: host.id()})
	if err != nil {
		t.Fatal(err)
	}
	open := holdGate(t)
	done := make(chan error, 2)
	go func() { _, err := ns[0].rt.Deliver(ctxT(t), loc.Daemon, []byte("held")); done <- err }()
	<-entered // the first event is in Handle
	go func() { _, err := ns[1].rt.Deliver(ctxT(t), loc.Daemon, []byte("waits")); done <- err }()
	eventually(t, 10*time.Second, "the second event in the inbox", func() bool {
		info, err := host.rt.Stats(ctxT(t), loc.Daemon)
		return err == nil && info.Queued == 1
	})
	_, err = ns[2].rt.Deliver(ctxT(t), loc.Daemon, []byte("refused"))
	code(t, err, daemon.CodeBackpressure)
	open()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	s, err := ns[0].rt.Snapshot(ctxT(t), loc.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, s)
	if len(recs) != 2 || recs[0].Data != "held" || recs[1].Data != "waits" {
		t.Fatalf("records %+v", recs)
	}
}

// TestBackpressureAtTheSender holds a daemon's Handle: one event is in
// flight, InboxSize more wait at the sender, and the rest are refused
// there at once.
func TestBackpressureAtTheSender(t *testing.T) {
	ns := newMesh(t, 2, daemon.Config{InboxSize: 4}, nil)
	loc, err := ns[0].rt.Spawn(ctxT(t), "gated", daemon.SpawnOptions{Node: ns[1].id()})
	if err != nil {
		t.Fatal(err)
	}
	open := holdGate(t)
	done := make(chan error, 5)
	go func() { _, err := ns[0].rt.Deliver(ctxT(t), loc.Daemon, []byte("e0")); done <- err }()
	<-entered
	for i := 1; i <= 4; i++ {
		go func() { _, err := ns[0].rt.Deliver(ctxT(t), loc.Daemon, fmt.Appendf(nil, "e%d", i)); done <- err }()
	}
	eventually(t, 10*time.Second, "four events waiting", func() bool { return daemon.Waiting(ns[0].rt, loc.Daemon) == 4 })
	_, err = ns[0].rt.Deliver(ctxT(t), loc.Daemon, []byte("over"))
	code(t, err, daemon.CodeBackpressure)
	open()
	for range 5 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	s, err := ns[0].rt.Snapshot(ctxT(t), loc.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(records(t, s)); got != 5 {
		t.Fatalf("%d events applied, want 5", got)
	}
}

// TestSnapshotStopRestart stops a daemon, gets its final snapshot, and
// starts it again from it, on another node: same id, the sequence
// continuing. A snapshot sealed for one node is refused by another.
func TestSnapshotStopRestart(t *testing.T) {
	ns := newMesh(t, 3, daemon.Config{}, nil)
	a := ns[0]
	loc, err := a.rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: ns[1].id()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := a.rt.Deliver(ctxT(t), loc.Daemon, fmt.Appendf(nil, "e%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := a.rt.Snapshot(ctxT(t), loc.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Seq != 10 || snap.Daemon != loc.Daemon || snap.SealedFor != a.id() || len(records(t, snap)) != 10 {
		t.Fatalf("snapshot %+v", snap)
	}
	final, err := a.rt.Stop(ctxT(t), loc.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	if final.Seq != 10 {
		t.Fatalf("final snapshot at %d", final.Seq)
	}
	_, err = a.rt.Deliver(ctxT(t), loc.Daemon, []byte("after stop"))
	code(t, err, daemon.CodeNotFound)
	// Node 2 cannot use a snapshot sealed for node 0.
	_, err = ns[2].rt.SpawnFromSnapshot(ctxT(t), final, daemon.SpawnOptions{Node: ns[2].id()})
	code(t, err, daemon.CodeKeyRefused)
	forged := final
	forged.SealedFor = ns[2].id()
	_, err = ns[2].rt.SpawnFromSnapshot(ctxT(t), forged, daemon.SpawnOptions{Node: ns[2].id()})
	code(t, err, daemon.CodeKeyRefused)

	loc2, err := a.rt.SpawnFromSnapshot(ctxT(t), final, daemon.SpawnOptions{Node: ns[2].id()})
	if err != nil {
		t.Fatal(err)
	}
	if loc2.Daemon != loc.Daemon || loc2.Node != ns[2].id() {
		t.Fatalf("restarted as %+v", loc2)
	}
	r, err := ns[1].rt.Deliver(ctxT(t), loc.Daemon, []byte("after restart"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 11 || r.Node != ns[2].id() {
		t.Fatalf("receipt %+v, want seq 11 on node 2", r)
	}
	// It runs: starting it twice is refused.
	_, err = a.rt.SpawnFromSnapshot(ctxT(t), final, daemon.SpawnOptions{Node: ns[1].id()})
	code(t, err, daemon.CodeBusy)
	// A stateless restart round trip on the host itself.
	local, err := a.rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: a.id()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.rt.Deliver(ctxT(t), local.Daemon, []byte("x")); err != nil {
		t.Fatal(err)
	}
	fin, err := a.rt.Stop(ctxT(t), local.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.rt.SpawnFromSnapshot(ctxT(t), fin, daemon.SpawnOptions{Node: a.id()}); err != nil {
		t.Fatal(err)
	}
	if r, err := a.rt.Deliver(ctxT(t), local.Daemon, []byte("y")); err != nil || r.Seq != 2 {
		t.Fatalf("after a local restart: %+v %v", r, err)
	}
}

func TestOnlyTheOwnerManagesADaemon(t *testing.T) {
	ns := newMesh(t, 3, daemon.Config{}, nil)
	owner, host, other := ns[0], ns[1], ns[2]
	loc, err := owner.rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: host.id()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.rt.Snapshot(ctxT(t), loc.Daemon)
	code(t, err, daemon.CodeNotOwner)
	_, err = other.rt.Stop(ctxT(t), loc.Daemon)
	code(t, err, daemon.CodeNotOwner)
	_, err = other.rt.Migrate(ctxT(t), loc.Daemon, other.id())
	code(t, err, daemon.CodeNotOwner)
	_, err = other.rt.Fork(ctxT(t), loc.Daemon, daemon.ForkOptions{N: 1})
	code(t, err, daemon.CodeNotOwner)
	// Anyone may deliver.
	if _, err := other.rt.Deliver(ctxT(t), loc.Daemon, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	// The host may manage what it hosts.
	if _, err := host.rt.Snapshot(ctxT(t), loc.Daemon); err != nil {
		t.Fatal(err)
	}
}

func TestHandlerErrorsAndLimits(t *testing.T) {
	ns := newMesh(t, 2, daemon.Config{MaxEventSize: 100}, nil)
	loc, err := ns[0].rt.Spawn(ctxT(t), "seqlog", daemon.SpawnOptions{Node: ns[1].id()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ns[0].rt.Deliver(ctxT(t), loc.Daemon, make([]byte, 101))
	code(t, err, daemon.CodeLimitExceeded)
	if _, err := ns[0].rt.Deliver(ctxT(t), loc.Daemon, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	var unknown daemon.ID
	unknown[0] = 1
	_, err = ns[0].rt.Deliver(ctxT(t), unknown, []byte("x"))
	code(t, err, daemon.CodeNotFound)
}
