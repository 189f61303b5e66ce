package capability

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// rejectNet is one receiving engine with one linked peer that records what
// it is sent.
func rejectNet(t *testing.T, cfg Config) (*simNet, *Engine, identity.NodeID) {
	t.Helper()
	s := newSimNet(t, 2, cfg)
	s.link(0, 1)
	return s, s.order[0].e, s.order[1].id.NodeID()
}

func TestRejections(t *testing.T) {
	victim := testID(t, 100)
	attacker := testID(t, 101)
	set := Set{Tags: []string{"gpu"}}
	genuine := signedWire(t, victim, 10, set)

	forged := func() []byte {
		// Right origin and key, signature by the attacker.
		b := bytes.Clone(genuine)
		copy(b[len(b)-signatureLen:], attacker.Sign(signedMessage(b)))
		return b
	}()
	tampered := func() []byte {
		b := bytes.Clone(genuine)
		b[headerLen+2] = 'h' // "gpu" -> "hpu"
		return b
	}()
	rebound := func() []byte {
		// The attacker claims the victim's NodeID with its own key and a
		// valid signature of its own.
		a := Announcement{Version: 11, TTL: DefaultTTL, Set: set, Hops: 1, Remaining: DefaultTTL}
		if err := a.Sign(attacker); err != nil {
			t.Fatal(err)
		}
		a.Origin = victim.NodeID()
		a.Signature = nil
		b, _ := a.MarshalBinary()
		copy(b[len(b)-signatureLen:], attacker.Sign(signedMessage(b)))
		return b
	}()
	hops := func(h byte) []byte { b := bytes.Clone(genuine); b[offHops] = h; return b }
	unsigned := func() []byte {
		b := signedWire(t, victim, 12, set)
		clear(b[len(b)-signatureLen:])
		return b
	}()

	tests := []struct {
		name    string
		prior   [][]byte // accepted first
		msg     []byte
		want    error
		counter func(Stats) uint64
	}{
		{"forged signature", nil, forged, ErrBadSignature, func(s Stats) uint64 { return s.RejectedBadSignature }},
		{"tampered, unknown version", nil, tampered, ErrBadSignature, func(s Stats) uint64 { return s.RejectedBadSignature }},
		{"tampered copy of held version", [][]byte{genuine}, tampered, ErrTampered, func(s Stats) uint64 { return s.RejectedTampered }},
		{"rebinding", [][]byte{genuine}, rebound, ErrRebinding, func(s Stats) uint64 { return s.RejectedRebinding }},
		{"old version", [][]byte{signedWire(t, victim, 11, set)}, genuine, ErrOldVersion, func(s Stats) uint64 { return s.RejectedOldVersion }},
		{"hop limit", nil, hops(MaxHops + 1), ErrHopLimit, func(s Stats) uint64 { return s.RejectedHopLimit }},
		{"zero hops", nil, hops(0), ErrMalformed, func(s Stats) uint64 { return s.RejectedMalformed }},
		{"oversized", nil, make([]byte, MaxAnnouncementSize+1), ErrOversized, func(s Stats) uint64 { return s.RejectedOversized }},
		{"malformed", nil, genuine[:40], ErrMalformed, func(s Stats) uint64 { return s.RejectedMalformed }},
		{"unsigned", nil, unsigned, ErrUnsigned, func(s Stats) uint64 { return s.RejectedUnsigned }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e, peer := rejectNet(t, Config{})
			for _, p := range tt.prior {
				if err := e.HandleMessage(peer, p); err != nil {
					t.Fatalf("prior message: %v", err)
				}
			}
			before := e.Index().FindNodes(Filter{})
			if err := e.HandleMessage(peer, tt.msg); !errors.Is(err, tt.want) {
				t.Fatalf("HandleMessage = %v, want %v", err, tt.want)
			}
			if got := tt.counter(e.Stats()); got != 1 {
				t.Errorf("counter = %d, want 1 (stats %+v)", got, e.Stats())
			}
			after := e.Index().FindNodes(Filter{})
			if len(after) != len(before) || len(after) > 0 && after[0].Version != before[0].Version {
				t.Errorf("index changed by a rejected message: %v -> %v", before, after)
			}
		})
	}

	t.Run("pinned key", func(t *testing.T) {
		_, e, peer := rejectNet(t, Config{})
		if err := e.HandleMessage(peer, genuine); err != nil {
			t.Fatal(err)
		}
		// NodeIDs are key hashes, so a second key for one id cannot be
		// found; simulate a pin from an earlier, different key.
		e.records[victim.NodeID()].key = attacker.PublicKey()
		if err := e.HandleMessage(peer, signedWire(t, victim, 11, set)); !errors.Is(err, ErrRebinding) {
			t.Fatalf("HandleMessage = %v, want ErrRebinding", err)
		}
	})
	t.Run("allow unsigned", func(t *testing.T) {
		_, e, peer := rejectNet(t, Config{AllowUnsigned: true})
		if err := e.HandleMessage(peer, unsigned); err != nil {
			t.Fatalf("HandleMessage = %v", err)
		}
	})
	t.Run("max hops accepted, not forwarded", func(t *testing.T) {
		s, e, peer := rejectNet(t, Config{})
		s.link(0, 1)
		if err := e.HandleMessage(peer, hops(MaxHops)); err != nil {
			t.Fatal(err)
		}
		if n, ok := e.Index().Lookup(victim.NodeID()); !ok || n.Hops != MaxHops {
			t.Fatalf("Lookup = %+v %v", n, ok)
		}
		if st := e.Stats(); st.Forwarded != 0 {
			t.Errorf("Forwarded = %d, want 0", st.Forwarded)
		}
	})
	t.Run("index full", func(t *testing.T) {
		_, e, peer := rejectNet(t, Config{MaxNodes: 1})
		if err := e.HandleMessage(peer, genuine); err != nil {
			t.Fatal(err)
		}
		if err := e.HandleMessage(peer, signedWire(t, attacker, 1, set)); !errors.Is(err, ErrIndexFull) {
			t.Fatalf("HandleMessage = %v, want ErrIndexFull", err)
		}
	})
}

func TestAnnounceValidation(t *testing.T) {
	s := newSimNet(t, 1, Config{})
	if err := s.order[0].e.Announce(Set{Tags: []string{"Bad Tag"}}); !errors.Is(err, ErrInvalidSet) {
		t.Fatalf("Announce = %v, want ErrInvalidSet", err)
	}
	if s.order[0].e.Index().Len() != 0 {
		t.Fatal("invalid set indexed")
	}
}

func TestNewConfig(t *testing.T) {
	id := testID(t, 1)
	tr := simTransport{}
	for _, cfg := range []Config{
		{TTL: time.Second},
		{TTL: 1500 * time.Millisecond * 10},
		{TTL: 30 * time.Second, MinAnnounceInterval: 11 * time.Second},
		{MinAnnounceInterval: -1},
		{MaxNodes: -1},
		{MaxOriginsPerPeer: -1},
		{OriginBurst: -1},
		{OriginRate: -1},
		{OriginRate: math.NaN()},
	} {
		if _, err := New(id, tr, cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := New(nil, tr, Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New(nil identity) = %v", err)
	}
}

// TestDiamond: A-B, A-C, B-D, C-D. D hears A twice and indexes it once.
func TestDiamond(t *testing.T) {
	s := newSimNet(t, 4, Config{})
	s.link(0, 1)
	s.link(0, 2)
	s.link(1, 3)
	s.link(2, 3)
	if err := s.order[0].e.Announce(Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	s.settle()
	for i, n := range s.order[1:] {
		st := n.e.Stats()
		if st.Accepted != 1 {
			t.Errorf("node %d accepted %d, want 1", i+1, st.Accepted)
		}
		if got := len(n.e.Index().FindNodes(HasTag("gpu"))); got != 1 {
			t.Errorf("node %d finds %d gpu nodes, want 1", i+1, got)
		}
	}
	// A→B, A→C, B→D, C→D, then D forwards its first copy to the other of
	// B and C only (split horizon): 5 messages, 2 of them duplicates.
	if s.msgs != 5 {
		t.Errorf("%d messages, want 5", s.msgs)
	}
	if d := s.order[3].e.Stats().Duplicates + s.order[1].e.Stats().Duplicates + s.order[2].e.Stats().Duplicates; d != 2 {
		t.Errorf("%d duplicates, want 2", d)
	}
}

func TestConvergence50(t *testing.T) {
	s := newSimNet(t, 50, Config{})
	s.randomTopology(1)
	routes := make([]map[identity.NodeID]int, 50)
	for i, n := range s.order {
		routes[i] = map[identity.NodeID]int{}
		n.e.cfg.OnRoute = func(origin, via identity.NodeID, hops int, expires time.Time) {
			if old, ok := routes[i][origin]; !ok || hops < old {
				routes[i][origin] = hops
			}
		}
	}
	origin := s.order[7]
	if err := origin.e.Announce(Set{Tags: []string{"gpu"}, Metadata: map[string]string{"gpu_mem_gb": "24"}}); err != nil {
		t.Fatal(err)
	}
	rounds := s.settle()
	dist := s.distances(7)
	ecc := 0
	for i, n := range s.order {
		found := n.e.Index().FindNodes(AllOf(HasTag("gpu"), AtLeast("gpu_mem_gb", 24)))
		if len(found) != 1 || found[0].ID != origin.id.NodeID() {
			t.Fatalf("node %d found %v", i, found)
		}
		if i == 7 {
			continue
		}
		want := dist[n.id.NodeID()]
		ecc = max(ecc, want)
		if found[0].Hops != want || routes[i][origin.id.NodeID()] != want {
			t.Errorf("node %d: hops %d, route %d, want %d", i, found[0].Hops, routes[i][origin.id.NodeID()], want)
		}
		if st := n.e.Stats(); st.Accepted != 1 {
			t.Errorf("node %d accepted %d", i, st.Accepted)
		}
	}
	if rounds != ecc+1 {
		t.Errorf("converged in %d rounds, want eccentricity+1 = %d (last round: copies to the farthest nodes' neighbours)", rounds, ecc+1)
	}
	t.Logf("50 nodes: %d rounds, %d messages, %d bytes", rounds, s.msgs, s.bytes)
}

func TestLeaveGoesOffline(t *testing.T) {
	s := newSimNet(t, 50, Config{})
	s.randomTopology(2)
	const leaver, stayer = 3, 30
	for _, i := range []int{leaver, stayer} {
		if err := s.order[i].e.Announce(Set{Tags: []string{fmt.Sprintf("n%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	s.settle()
	watcher := s.order[40].e
	sub := watcher.Subscribe(0)
	defer sub.Close()
	s.isolate(leaver)

	leaverID := s.order[leaver].id.NodeID()
	sawDegraded := false
	for elapsed := time.Duration(0); elapsed < DefaultTTL; elapsed += 5 * time.Second {
		s.clock.Advance(5 * time.Second)
		s.tickAll(leaver)
		if n, ok := watcher.Index().Lookup(leaverID); ok && n.Status == StatusDegraded {
			sawDegraded = true
		}
	}
	if !sawDegraded {
		t.Error("leaver never seen Degraded")
	}
	for i, n := range s.order {
		if i == leaver {
			continue
		}
		if _, ok := n.e.Index().Lookup(leaverID); ok {
			t.Errorf("node %d still lists the leaver", i)
		}
		if st, ok := n.e.Index().Lookup(s.order[stayer].id.NodeID()); !ok || st.Status != StatusOnline {
			t.Errorf("node %d: stayer %v %v, want online", i, st.Status, ok)
		}
		if h := n.e.Health(); h.Offline != 1 || h.Known < 1 {
			t.Errorf("node %d: health %+v", i, h)
		}
	}
	var kinds []string
	for len(sub.C) > 0 {
		ev := <-sub.C
		if ev.Node.ID == leaverID {
			kinds = append(kinds, ev.Kind.String()+":"+ev.Node.Status.String())
		}
	}
	if got := fmt.Sprint(kinds); got != "[degraded:degraded offline:offline]" {
		t.Errorf("events about the leaver: %s", got)
	}
}

func TestRateLimitCoalesces(t *testing.T) {
	s := newSimNet(t, 2, Config{})
	s.link(0, 1)
	a, b := s.order[0].e, s.order[1].e
	if err := a.Announce(Set{Metadata: map[string]string{"v": "start"}}); err != nil {
		t.Fatal(err)
	}
	s.settle()
	s.clock.Advance(time.Second)
	for i := 0; i < 100; i++ {
		if err := a.Announce(Set{Metadata: map[string]string{"v": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
		if self, _ := a.Index().Lookup(s.order[0].id.NodeID()); self.Set.Metadata["v"] != fmt.Sprint(i) {
			t.Fatalf("local index shows %q after announcing %d", self.Set.Metadata["v"], i)
		}
		s.clock.Advance(10 * time.Millisecond)
		a.Tick()
		s.settle()
	}
	if got := a.Stats().Broadcasts; got != 1 {
		t.Fatalf("%d broadcasts during the burst, want 1 (the one before it)", got)
	}
	s.clock.Advance(DefaultMinAnnounceInterval - 2*time.Second)
	a.Tick()
	s.settle()
	if got := a.Stats().Broadcasts; got != 2 {
		t.Fatalf("%d broadcasts after the interval, want 2", got)
	}
	if n, _ := b.Index().Lookup(s.order[0].id.NodeID()); n.Set.Metadata["v"] != "99" {
		t.Errorf("peer sees v=%q, want 99", n.Set.Metadata["v"])
	}
	if got := b.Stats().Received; got != 2 {
		t.Errorf("peer received %d messages, want 2", got)
	}
	// Refresh before the TTL runs out.
	s.clock.Advance(DefaultTTL / 3)
	a.Tick()
	s.settle()
	if got := a.Stats().Broadcasts; got != 3 {
		t.Errorf("%d broadcasts after TTL/3, want 3 (refresh)", got)
	}
}

func TestLateJoiner(t *testing.T) {
	s := newSimNet(t, 4, Config{})
	s.link(0, 1)
	s.link(1, 2)
	for i := 0; i < 3; i++ {
		if err := s.order[i].e.Announce(Set{Tags: []string{fmt.Sprintf("n%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	s.settle()
	s.order[2].e.PeerDown(s.order[1].id.NodeID()) // must not hide what was learned via 1
	s.link(2, 3)
	s.order[2].e.PeerUp(s.order[3].id.NodeID())
	s.order[3].e.PeerUp(s.order[2].id.NodeID())
	s.settle()
	late := s.order[3].e.Index()
	for i := 0; i < 3; i++ {
		n, ok := late.Lookup(s.order[i].id.NodeID())
		if !ok || n.Hops != 3-i {
			t.Errorf("late joiner: node %d: %+v %v", i, n.Hops, ok)
		}
	}
}

func TestSubscriberNeverBlocks(t *testing.T) {
	s := newSimNet(t, 5, Config{})
	for i := 1; i < 5; i++ {
		s.link(0, i)
	}
	e := s.order[0].e
	sub := e.Subscribe(1)
	for i := 1; i < 5; i++ {
		if err := s.order[i].e.Announce(Set{}); err != nil {
			t.Fatal(err)
		}
	}
	s.settle()
	if sub.Dropped() != 3 || e.Stats().EventsDropped != 3 {
		t.Errorf("dropped %d (stats %d), want 3", sub.Dropped(), e.Stats().EventsDropped)
	}
	if ev := <-sub.C; ev.Kind != NodeRegistered {
		t.Errorf("first event %v", ev.Kind)
	}
	sub.Close()
	sub.Close()
	if _, ok := <-sub.C; ok {
		t.Error("channel open after Close")
	}
}

func TestDegradedAndEvents(t *testing.T) {
	s := newSimNet(t, 2, Config{MinAnnounceInterval: time.Second, TTL: 30 * time.Second})
	s.link(0, 1)
	a, b := s.order[0].e, s.order[1].e
	sub := b.Subscribe(0)
	defer sub.Close()
	a.SetDegraded(true) // before Announce: remembered
	if err := a.Announce(Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	s.settle()
	s.clock.Advance(time.Second)
	a.SetDegraded(false)
	s.settle()
	var got []string
	for len(sub.C) > 0 {
		ev := <-sub.C
		got = append(got, ev.Kind.String()+":"+ev.Node.Status.String())
	}
	want := "[registered:degraded recovered:online]"
	if fmt.Sprint(got) != want {
		t.Errorf("events %v, want %s", got, want)
	}
	if h := b.Health(); h != (Health{Known: 1, Online: 1}) {
		t.Errorf("Health = %+v", h)
	}
}

type fakeSampler struct{ t Telemetry }

func (f fakeSampler) Sample(context.Context) (Telemetry, error) { return f.t, nil }

func TestTelemetryPrefersLeastLoaded(t *testing.T) {
	s := newSimNet(t, 3, Config{})
	s.link(0, 1)
	s.link(0, 2)
	for i, util := range []float64{0, 90, 15} {
		n := s.order[i]
		n.e.cfg.Telemetry = fakeSampler{Telemetry{CPULoad: 0.5, GPUs: []GPU{{Name: "A100", MemTotalMB: 81920, UtilPct: util}}}}
		if i == 0 {
			n.e.cfg.Telemetry = fakeSampler{Telemetry{CPULoad: 0.1}}
		}
		n.e.Tick() // samples before the first Announce: kept for it
		if err := n.e.Announce(Set{Tags: []string{"worker"}}); err != nil {
			t.Fatal(err)
		}
	}
	s.settle()
	ix := s.order[0].e.Index()
	best, ok := ix.FindBestNode(AllOf(HasTag("worker"), AtLeast("gpu_mem_gb", 24)), Lowest("gpu_util_pct"))
	if !ok || best.ID != s.order[2].id.NodeID() {
		t.Fatalf("FindBestNode = %v %v, want node 2", best.ID.Short(), ok)
	}
	if n, _ := ix.Lookup(s.order[0].id.NodeID()); n.Set.Metadata["gpu_count"] != "0" || n.Set.Metadata["cpu_load"] != "0.1" {
		t.Errorf("self telemetry metadata %v", n.Set.Metadata)
	}
	// Telemetry changes are announced on a later Tick, rate limited.
	s.order[2].e.cfg.Telemetry = fakeSampler{Telemetry{GPUs: []GPU{{MemTotalMB: 81920, UtilPct: 99}}}}
	s.clock.Advance(DefaultTelemetryInterval)
	s.order[2].e.Tick()
	s.settle()
	if best, _ := ix.FindBestNode(HasTag("worker"), Lowest("gpu_util_pct")); best.ID != s.order[1].id.NodeID() {
		t.Errorf("after node 2 got busy, best is %v", best.ID.Short())
	}
}

// TestConcurrentUse drives one engine from several goroutines at once, as a
// mesh with several receive goroutines would (run with -race).
func TestConcurrentUse(t *testing.T) {
	s := newSimNet(t, 2, Config{})
	s.link(0, 1)
	e, peer := s.order[0].e, s.order[1].id.NodeID()
	var msgs [][]byte
	for i := 0; i < 20; i++ {
		msgs = append(msgs, signedWire(t, testID(t, 200+i%5), uint64(i+1), Set{Tags: []string{"gpu"}, Metadata: map[string]string{"n": fmt.Sprint(i)}}))
	}
	sub := e.Subscribe(4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range sub.C {
		}
	}()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, m := range msgs {
				e.HandleMessage(peer, m)
				e.Index().FindNodes(AtLeast("n", float64(i)))
				if g == 0 {
					e.Announce(Set{Tags: []string{"cpu"}})
					e.Tick()
					e.PeerUp(peer)
					e.Health()
				}
			}
		}()
	}
	wg.Wait()
	sub.Close()
	<-done
	if got := e.Index().Len(); got != 6 {
		t.Errorf("index has %d nodes, want 6", got)
	}
	if st := e.Stats(); st.Accepted+st.Duplicates+st.RejectedOldVersion != st.Received {
		t.Errorf("stats do not add up: %+v", st)
	}
}

// A peer that joins while this node's newest set waits for its
// rate-limited broadcast gets that newest set, not the last broadcast one.
func TestLateJoinerGetsPendingVersion(t *testing.T) {
	s := newSimNet(t, 2, Config{})
	a := s.order[0].e
	if err := a.Announce(Set{Tags: []string{"old"}}); err != nil {
		t.Fatal(err)
	}
	if err := a.Announce(Set{Tags: []string{"new"}}); err != nil { // within MinAnnounceInterval: pending
		t.Fatal(err)
	}
	s.link(0, 1)
	a.PeerUp(s.order[1].id.NodeID())
	s.settle()
	n, ok := s.order[1].e.Index().Lookup(s.order[0].id.NodeID())
	if !ok || !n.Set.HasTag("new") {
		t.Fatalf("late joiner sees %+v (%v), want the pending set", n.Set, ok)
	}
	broadcasts := a.Stats().Broadcasts
	if broadcasts != 1 {
		t.Fatalf("%d broadcasts, want only the first (the newest is still rate limited)", broadcasts)
	}
}

// nopTransport has no peers and swallows what is sent.
type nopTransport struct{}

func (nopTransport) Peers() []identity.NodeID           { return nil }
func (nopTransport) Send(identity.NodeID, []byte) error { return nil }

// Guards the tombstone list's bound: an origin that goes offline and comes
// back again and again must not grow it (it once gained an entry per
// cycle, trimmed only when the index was full), and eviction must still
// forget the origin that has been offline longest.
func TestTombstonesStayBounded(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e, err := New(testID(t, 1), nopTransport{}, Config{Now: clock, MaxNodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	var from identity.NodeID
	from[0] = 9
	announce := func(origin *identity.Identity, v uint64) {
		t.Helper()
		a := Announcement{Version: v, TTL: MinTTL, Set: Set{Tags: []string{"gpu"}}, Hops: 1, Remaining: MinTTL}
		if err := a.Sign(origin); err != nil {
			t.Fatal(err)
		}
		b, _ := a.MarshalBinary()
		if err := e.HandleMessage(from, b); err != nil {
			t.Fatal(err)
		}
	}
	expire := func() {
		mu.Lock()
		now = now.Add(MinTTL)
		mu.Unlock()
		e.Tick()
	}
	cycling, early := testID(t, 2), testID(t, 3)
	announce(early, 1)
	expire() // early goes offline first, for good
	const cycles = 2000
	for v := uint64(1); v <= cycles; v++ {
		announce(cycling, v)
		expire()
	}
	e.mu.Lock()
	n, r := len(e.sponsors[from].tombstones), len(e.records)
	e.mu.Unlock()
	if n > 2*r {
		t.Fatalf("%d tombstones for %d records after %d offline/online cycles", n, r, cycles)
	}
	// The index is full at 3 origins: a fourth evicts the one offline longest.
	announce(testID(t, 4), 1)
	announce(testID(t, 5), 1)
	e.mu.Lock()
	_, earlyKept := e.records[early.NodeID()]
	_, cyclingKept := e.records[cycling.NodeID()]
	e.mu.Unlock()
	if earlyKept || !cyclingKept {
		t.Fatalf("eviction: origin offline longest kept=%v, recently offline kept=%v", earlyKept, cyclingKept)
	}
}
