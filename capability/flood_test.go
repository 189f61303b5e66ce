package capability

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// typicalSet is a busy worker's set, as telemetry with four GPUs, a few rpc
// services, a reflex address and a build string make it: 8 tags and 25
// metadata entries (18 of them numeric), 846 bytes on the wire once signed. With unique, every metadata key carries
// the origin's number, so no two origins share a key (the worst case for an
// index with a column per key).
func typicalSet(i int, unique bool) Set {
	p := ""
	if unique {
		p = fmt.Sprintf("n%d.", i)
	}
	md := map[string]string{
		p + "cpu_load": "0.42", p + "mem_used_pct": "61.5", p + "gpu_count": "4",
		p + "gpu_mem_gb": "80", p + "gpu_mem_free_gb": "52.25", p + "gpu_util_pct": "17",
		p + "reflex": fmt.Sprintf("203.0.%d.%d:41641", i>>8&0xff, i&0xff),
		p + "os":     "linux 6.8.0-45-generic x86_64",
		p + "build":  "netnode 0.9.3 go1.26 linux/amd64 2026-12-01Z",
	}
	for g := 0; g < 4; g++ {
		k := fmt.Sprintf("%sgpu.%d.", p, g)
		md[k+"name"] = "NVIDIA A100-SXM4-80GB"
		md[k+"mem_total_mb"] = "81920"
		md[k+"mem_used_mb"] = fmt.Sprint(20000 + g*1111)
		md[k+"util_pct"] = fmt.Sprint(17 + g*9)
	}
	return Set{
		Tags: []string{"cpu", "cuda", "gpu", "region:eu-west", "rpc:embed", "rpc:summarize",
			"skill:summarize", fmt.Sprintf("subnet:%04x", i&0xffff)},
		Metadata: md,
	}
}

// worstSet is the most expensive set to index: 64 tags and 64 numeric
// metadata entries, 3,960 bytes, none of whose keys any other origin uses.
func worstSet(i int) Set {
	s := Set{Metadata: make(map[string]string, MaxMetadataEntries)}
	for j := 0; j < MaxTags; j++ {
		s.Tags = append(s.Tags, fmt.Sprintf("t%06d-%02d-xxxxxxxxxxxxxxxxxxxx", i, j))
		s.Metadata[fmt.Sprintf("k%06d-%02d-xxxxxxxxxxxx", i, j)] = fmt.Sprintf("%d.5", j)
	}
	return s
}

// fakeOrigins signs, one at a time, announcements of set(i) from n
// identities that exist only to fill indexes: what a peer creating keys in
// a loop sends.
func fakeOrigins(tb testing.TB, n int, set func(i int) Set, yield func(i int, msg []byte)) {
	tb.Helper()
	for i := 0; i < n; i++ {
		yield(i, signedWire(tb, testID(tb, 1_000_000+i), 1, set(i)))
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// The attack of issue 24: one authenticated peer announces 20,000 origins
// it made up, one every 10 ms. The victim must stay under 100 MiB of heap
// and index no more of them than the peer's budget allows (its rate, then
// its count), and hand no more than that on to the honest node behind it.
// Once with typical announcements, once with the costliest ones to index.
func TestOriginFloodFromOnePeer(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("signs 40,000 announcements: too slow with -short or -race (TestOriginRate and the tests after it cover the budget under -race)")
	}
	const fakes, every = 20_000, 10 * time.Millisecond
	for _, tt := range []struct {
		name string
		set  func(int) Set
	}{
		{"typical", func(i int) Set { return typicalSet(i, false) }},
		{"worst", worstSet},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// 0: the victim; 1: an honest node behind it, whose
			// announcement outlives the flood.
			s := newSimNet(t, 2, Config{TTL: time.Hour})
			s.link(0, 1)
			victim, honest := s.order[0].e, s.order[1].e
			flooder := testID(t, 999).NodeID() // an authenticated peer of the victim
			if err := honest.Announce(Set{Tags: []string{"honest"}}); err != nil {
				t.Fatal(err)
			}
			s.settle()
			isFake := func(n *Node) bool { return !n.Set.HasTag("honest") && !n.Self }
			fakesIn := func(e *Engine) (n int) {
				for _, nd := range e.Index().FindNodes(Filter{}) {
					if isFake(nd) {
						n++
					}
				}
				return n
			}

			base := heapInUse()
			maxIndexed := 0
			fakeOrigins(t, fakes, tt.set, func(i int, msg []byte) {
				victim.HandleMessage(flooder, msg)
				s.clock.Advance(every)
				if i%1000 == 999 {
					victim.Tick() // fakes nobody refreshes expire
					maxIndexed = max(maxIndexed, fakesIn(victim))
				}
			})
			// What the victim forwarded waits in the simulated network:
			// not the victim's memory.
			victimHeap := int64(heapInUse()) - int64(base) - s.queuedBytes()
			st := victim.Stats()
			t.Logf("victim: at most %d fakes indexed at once, heap +%.1f MiB, %d refused for rate, %d for count, %d evicted",
				maxIndexed, float64(victimHeap)/(1<<20), st.RejectedOriginRate, st.RejectedPeerOrigins, st.Evicted)

			s.settle() // now the honest node gets what the victim forwarded
			if maxIndexed > DefaultMaxOriginsPerPeer {
				t.Errorf("victim indexed %d fakes from one peer, want at most %d", maxIndexed, DefaultMaxOriginsPerPeer)
			}
			// The rate: the burst, then DefaultOriginRate a second.
			if got, want := st.Accepted, uint64(DefaultOriginBurst+DefaultOriginRate*fakes*every/time.Second+1); got > want {
				t.Errorf("victim accepted %d fakes in %v, want at most %d", got, fakes*every, want)
			}
			if st.RejectedOriginRate == 0 || st.RejectedPeerOrigins == 0 || st.Evicted == 0 {
				t.Errorf("the flood did not meet both limits: %+v", st)
			}
			if n := fakesIn(honest); n > DefaultMaxOriginsPerPeer || uint64(n) > st.Accepted {
				t.Errorf("honest node two hops from the flooder indexed %d fakes, want at most what the victim accepted, %d", n, st.Accepted)
			}
			if victimHeap > 100<<20 {
				t.Errorf("victim heap grew by %d MiB, want under 100 MiB", victimHeap>>20)
			}
			if _, ok := victim.Index().Lookup(s.order[1].id.NodeID()); !ok {
				t.Error("the victim lost the honest node")
			}
		})
	}
}

// The index's memory grows linearly with the origins it holds: at most
// 4 KiB per typical announcement, 5 KiB when no two origins share a
// metadata key, and 24 KiB for the costliest set to index (the index once
// kept a column per key sized to the whole index: 1,000 announcements
// with unique keys took 339 MiB).
func TestIndexMemoryPerAnnouncement(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("signs 13,000 announcements: too slow with -short or -race")
	}
	for _, tt := range []struct {
		name   string
		set    func(int) Set
		limit  float64
		counts []int
	}{
		{"typical", func(i int) Set { return typicalSet(i, false) }, 4 << 10, []int{1000, 4000}},
		{"unique keys", func(i int) Set { return typicalSet(i, true) }, 5 << 10, []int{1000, 4000}},
		{"worst", worstSet, 24 << 10, []int{1000, 2000}},
	} {
		var perOrigin []float64
		for _, n := range tt.counts {
			bytes := indexBytesPerOrigin(t, n, tt.set)
			t.Logf("%s, %d origins: %.0f bytes per announcement", tt.name, n, bytes)
			if bytes > tt.limit {
				t.Fatalf("%s, %d origins: %.0f bytes per announcement, want at most %.0f", tt.name, n, bytes, tt.limit)
			}
			perOrigin = append(perOrigin, bytes)
		}
		if perOrigin[1] > perOrigin[0]*1.2 {
			t.Errorf("%s: %.0f bytes per origin at %d origins, %.0f at %d: not linear", tt.name, perOrigin[1], tt.counts[1], perOrigin[0], tt.counts[0])
		}
	}
}

// indexBytesPerOrigin returns the heap an engine keeps per origin after
// accepting announcements of set(i) from n origins (no budget in the way).
func indexBytesPerOrigin(t *testing.T, n int, set func(int) Set) float64 {
	var from identity.NodeID
	from[0] = 1
	e, err := New(testID(t, 0), nopTransport{}, Config{MaxOriginsPerPeer: n, OriginBurst: n})
	if err != nil {
		t.Fatal(err)
	}
	base := heapInUse()
	fakeOrigins(t, n, set, func(_ int, msg []byte) {
		if err := e.HandleMessage(from, msg); err != nil {
			t.Fatal(err)
		}
	})
	// The messages are garbage by now (the engine keeps no copy), so what
	// remains is the engine's.
	used := int64(heapInUse()) - int64(base)
	runtime.KeepAlive(e)
	return float64(used) / float64(n)
}

// budgetEngine is an engine with cfg on a fake clock and no peers, and a
// helper that hands it a fresh announcement of origin from neighbour from.
func budgetEngine(t testing.TB, cfg Config) (*Engine, *fakeClock, func(from identity.NodeID, origin, version int) error) {
	t.Helper()
	clock := newFakeClock()
	cfg.Now = clock.Now
	e, err := New(testID(t, 0), nopTransport{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, clock, func(from identity.NodeID, origin, version int) error {
		return e.HandleMessage(from, signedWire(t, testID(t, 500+origin), uint64(version), Set{Tags: []string{"gpu"}}))
	}
}

func neighbour(n byte) identity.NodeID { return identity.NodeID{0xfe, n} }

func TestPeerOriginLimit(t *testing.T) {
	e, clock, send := budgetEngine(t, Config{MaxOriginsPerPeer: 3})
	p, q := neighbour(1), neighbour(2)
	for o := range 3 {
		if err := send(p, o, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := send(p, 3, 1); !errors.Is(err, ErrPeerOriginLimit) {
		t.Fatalf("fourth origin from one neighbour: %v, want ErrPeerOriginLimit", err)
	}
	// Refused without a trace: the same origin from another neighbour
	// gets in.
	if err := send(q, 3, 1); err != nil {
		t.Fatalf("the refused origin from another neighbour: %v", err)
	}
	// Known origins from p still update; origin 0 does not, and goes
	// offline first.
	clock.Advance(DefaultTTL / 3)
	for o := 1; o < 3; o++ {
		if err := send(p, o, 2); err != nil {
			t.Fatalf("a new version of an origin p introduced: %v", err)
		}
	}
	clock.Advance(DefaultTTL - DefaultTTL/3)
	e.Tick()
	// A new origin from p at its limit displaces its offline one.
	if err := send(p, 4, 1); err != nil {
		t.Fatalf("new origin from p once one of its origins went offline: %v", err)
	}
	if err := send(p, 5, 1); !errors.Is(err, ErrPeerOriginLimit) {
		t.Fatalf("and the next: %v, want ErrPeerOriginLimit", err)
	}
	st := e.Stats()
	if st.RejectedPeerOrigins != 2 || st.Evicted != 1 {
		t.Errorf("RejectedPeerOrigins %d, Evicted %d; want 2 and 1", st.RejectedPeerOrigins, st.Evicted)
	}
	e.mu.Lock()
	_, first := e.records[testID(t, 500).NodeID()]
	_, second := e.records[testID(t, 501).NodeID()]
	e.mu.Unlock()
	if first || !second {
		t.Errorf("eviction forgot origin 0: %v, origin 1: %v; want the offline one (0) only", !first, !second)
	}
}

func TestOriginRate(t *testing.T) {
	e, clock, send := budgetEngine(t, Config{OriginBurst: 2, OriginRate: 0.5})
	p, q := neighbour(1), neighbour(2)
	for o := range 2 {
		if err := send(p, o, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := send(p, 2, 1); !errors.Is(err, ErrOriginRate) {
		t.Fatalf("third new origin at once: %v, want ErrOriginRate", err)
	}
	if err := send(q, 2, 1); err != nil {
		t.Fatalf("the same origin from another neighbour: %v", err)
	}
	if err := send(p, 0, 2); err != nil {
		t.Fatalf("updates cost no budget: %v", err)
	}
	clock.Advance(time.Second)
	if err := send(p, 3, 1); !errors.Is(err, ErrOriginRate) {
		t.Fatalf("after 1 s at 0.5/s: %v, want ErrOriginRate", err)
	}
	clock.Advance(time.Second)
	if err := send(p, 3, 1); err != nil {
		t.Fatalf("after 2 s at 0.5/s: %v", err)
	}
	if st := e.Stats(); st.RejectedOriginRate != 2 || st.RejectedBadSignature != 0 {
		t.Errorf("stats %+v", st)
	}
	// A neighbour's account is forgotten once it introduced no origin
	// still remembered and its bucket is full again.
	r := neighbour(3)
	forged := signedWire(t, testID(t, 600), 1, Set{})
	forged[len(forged)-1] ^= 1
	if err := e.HandleMessage(r, forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged announcement: %v", err)
	}
	accounts := func() int { e.mu.Lock(); defer e.mu.Unlock(); return len(e.sponsors) }
	if n := accounts(); n != 3 {
		t.Fatalf("%d neighbour accounts, want 3 (the forger paid a token)", n)
	}
	e.Tick()
	if n := accounts(); n != 3 {
		t.Fatalf("%d neighbour accounts right after, want 3 (the forger's bucket is not full)", n)
	}
	clock.Advance(2 * time.Second)
	e.Tick()
	if n := accounts(); n != 2 {
		t.Errorf("%d neighbour accounts once the forger's bucket refilled, want 2", n)
	}
}

// At MaxNodes a new origin may displace only an offline origin of its own
// neighbour or of a neighbour that introduced more origins than its own:
// a flooder cannot push out what honest neighbours with fewer introduced.
func TestFloodCannotEvictHonestOrigins(t *testing.T) {
	e, clock, send := budgetEngine(t, Config{MaxNodes: 5, MaxOriginsPerPeer: 4})
	honest, flooder, newcomer := neighbour(1), neighbour(2), neighbour(3)
	for o := range 2 {
		if err := send(honest, o, 1); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(DefaultTTL)
	e.Tick() // the honest origins go offline: pins and versions remembered
	for o := 10; o < 13; o++ {
		if err := send(flooder, o, 1); err != nil {
			t.Fatal(err)
		}
	}
	// Full (5), the flooder under its own limit: it may not displace the
	// honest neighbour's offline origins, since it introduced more.
	if err := send(flooder, 13, 1); !errors.Is(err, ErrIndexFull) {
		t.Fatalf("flooder's origin into a full index: %v, want ErrIndexFull", err)
	}
	if h := e.Health(); h.Offline != 2 {
		t.Fatalf("honest offline origins remembered: %d, want 2", h.Offline)
	}
	// A neighbour that introduced fewer than the flooder displaces... not
	// the flooder's live origins, so the honest neighbour's oldest offline
	// one (it introduced more than the newcomer).
	if err := send(newcomer, 20, 1); err != nil {
		t.Fatalf("newcomer's origin: %v", err)
	}
	if h, st := e.Health(), e.Stats(); h.Offline != 1 || st.Evicted != 1 || st.RejectedIndexFull != 1 {
		t.Errorf("health %+v, stats %+v", h, st)
	}
}
