package capability

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// drain returns the kinds and statuses of the events about id waiting on
// sub, as "kind:status".
func drain(sub *Subscription, id identity.NodeID) []string {
	var got []string
	for len(sub.C) > 0 {
		if ev := <-sub.C; ev.Node.ID == id {
			got = append(got, ev.Kind.String()+":"+ev.Node.Status.String())
		}
	}
	return got
}

// Every event a registry's user expects, in the order a node's life makes
// them: registered, heartbeat (asked for), updated, degraded, recovered,
// left, registered again, offline.
func TestEveryEventKind(t *testing.T) {
	s := newSimNet(t, 2, Config{HeartbeatEvents: true})
	s.link(0, 1)
	a, b := s.order[0].e, s.order[1].e
	id := s.order[0].id.NodeID()
	sub := b.Subscribe(0)
	defer sub.Close()
	step := func(what string, f func(), want ...string) {
		t.Helper()
		f()
		s.settle()
		if got := drain(sub, id); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: events %v, want %v", what, got, want)
		}
	}
	announce := func(tags ...string) func() {
		return func() {
			s.clock.Advance(DefaultMinAnnounceInterval) // past the rate limit
			if err := a.Announce(Set{Tags: tags}); err != nil {
				t.Fatal(err)
			}
		}
	}
	step("first announcement", announce("gpu"), "registered:online")
	step("refresh", func() { s.clock.Advance(DefaultTTL / refreshDivisor); a.Tick() }, "heartbeat:online")
	step("new set", announce("gpu", "cuda"), "updated:online")
	step("a refresh missed", func() { s.clock.Advance(DefaultTTL/2 + time.Second); b.Tick() }, "degraded:degraded")
	step("refresh after all", a.Tick, "heartbeat:online", "recovered:online")
	step("withdrawal", func() { a.Withdraw() }, "left:offline")
	step("back", announce("gpu"), "registered:online")
	step("silence", func() { s.clock.Advance(DefaultTTL / 2); b.Tick() }, "degraded:degraded")
	step("gone", func() { s.clock.Advance(DefaultTTL / 2); b.Tick() }, "offline:offline")
}

func TestHeartbeatEventsOffByDefault(t *testing.T) {
	s := newSimNet(t, 2, Config{})
	s.link(0, 1)
	sub := s.order[1].e.Subscribe(0)
	defer sub.Close()
	if err := s.order[0].e.Announce(Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	s.settle()
	for range 5 {
		s.clock.Advance(DefaultTTL / refreshDivisor)
		s.tickAll(-1)
	}
	if got := drain(sub, s.order[0].id.NodeID()); fmt.Sprint(got) != "[registered:online]" {
		t.Errorf("events over five refreshes: %v, want only the registration", got)
	}
	if st := s.order[1].e.Stats(); st.Accepted != 6 {
		t.Errorf("accepted %d versions, want 6 (the refreshes did arrive)", st.Accepted)
	}
}

// The index's liveness timings: by default Degraded at half the TTL (45 s)
// and gone at the TTL (90 s), both configurable, counted from when the
// origin sent its announcement.
func TestLivenessTimings(t *testing.T) {
	for _, tt := range []struct {
		name              string
		cfg               Config
		degraded, offline time.Duration
	}{
		{"defaults", Config{}, 45 * time.Second, 90 * time.Second},
		{"configured", Config{DegradedAfter: 10 * time.Second, OfflineAfter: 20 * time.Second}, 10 * time.Second, 20 * time.Second},
		{"offline beyond the TTL", Config{DegradedAfter: time.Minute, OfflineAfter: 2 * time.Hour}, time.Minute, 90 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSimNet(t, 2, tt.cfg)
			s.link(0, 1)
			origin, watcher := s.order[0], s.order[1].e
			if err := origin.e.Announce(Set{}); err != nil {
				t.Fatal(err)
			}
			s.settle()
			elapsed := time.Duration(0)
			status := func(at time.Duration) Status {
				t.Helper()
				s.clock.Advance(at - elapsed)
				elapsed = at
				watcher.Tick()
				n, ok := watcher.Index().Lookup(origin.id.NodeID())
				if !ok {
					return StatusOffline
				}
				return n.Status
			}
			for _, c := range []struct {
				at   time.Duration
				want Status
			}{
				{tt.degraded - time.Second, StatusOnline},
				{tt.degraded, StatusDegraded},
				{tt.offline - time.Second, StatusDegraded},
				{tt.offline, StatusOffline},
			} {
				if got := status(c.at); got != c.want {
					t.Errorf("%v after the announcement: %v, want %v", c.at, got, c.want)
				}
			}
		})
	}
	// A copy already older than OfflineAfter is expired here: not indexed,
	// not forwarded, no state.
	s := newSimNet(t, 3, Config{OfflineAfter: 20 * time.Second})
	s.link(0, 1)
	s.link(1, 2)
	late := remainingWire(t, testID(t, 100), 1, DefaultTTL-20*time.Second)
	if err := s.order[1].e.HandleMessage(s.order[0].id.NodeID(), late); !errors.Is(err, ErrExpired) {
		t.Fatalf("copy 20 s old with OfflineAfter 20 s: %v, want ErrExpired", err)
	}
	if s.settle(); s.order[2].e.Stats().Received != 0 {
		t.Error("an expired copy was forwarded")
	}
}

// A withdrawal gossips like an announcement: every node drops the origin
// at once with NodeLeft, each accepts it once however many paths bring it,
// and the origin's own index drops it too.
func TestWithdrawal(t *testing.T) {
	s := newSimNet(t, 5, Config{})
	// a diamond behind a line: 0-1, 1-2, 1-3, 2-4, 3-4
	for _, l := range [][2]int{{0, 1}, {1, 2}, {1, 3}, {2, 4}, {3, 4}} {
		s.link(l[0], l[1])
	}
	origin := s.order[0]
	if err := origin.e.Announce(Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	s.settle()
	subs := make([]*Subscription, len(s.order))
	for i, n := range s.order {
		subs[i] = n.e.Subscribe(0)
		defer subs[i].Close()
	}
	withdrawal := origin.e.Withdraw()
	if withdrawal == nil {
		t.Fatal("Withdraw returned no withdrawal")
	}
	s.settle()
	for i, n := range s.order {
		if _, ok := n.e.Index().Lookup(origin.id.NodeID()); ok {
			t.Errorf("node %d still lists the origin", i)
		}
		if got := drain(subs[i], origin.id.NodeID()); fmt.Sprint(got) != "[left:offline]" {
			t.Errorf("node %d: events %v, want [left:offline]", i, got)
		}
		if i == 0 {
			continue
		}
		if st, h := n.e.Stats(), n.e.Health(); st.Withdrawals != 1 || h.Left != 1 || h.Offline != 0 {
			t.Errorf("node %d: %d withdrawals accepted, health %+v", i, st.Withdrawals, h)
		}
	}
	if d := s.order[4].e.Stats().Duplicates; d != 2 {
		t.Errorf("node 4 saw %d duplicates (both announcement and withdrawal came twice), want 2", d)
	}
	// Withdrawing again, or before any announcement, sends nothing.
	sent := func() uint64 { return origin.e.Stats().MessagesSent + s.order[1].e.Stats().MessagesSent }
	before := sent()
	if again := origin.e.Withdraw(); !bytes.Equal(again, withdrawal) {
		t.Error("a second Withdraw returned another withdrawal")
	}
	if never := s.order[1].e.Withdraw(); never != nil {
		t.Error("Withdraw before any announcement returned a withdrawal")
	}
	if sent() != before {
		t.Error("a second Withdraw, or one before any announcement, sent something")
	}
}

// Withdrawals are checked as announcements are: signed by the origin,
// newer than what they withdraw, and a replay of an old one (or of the
// announcement withdrawn) changes nothing.
func TestWithdrawalChecks(t *testing.T) {
	origin, attacker := testID(t, 100), testID(t, 101)
	withdrawal := func(id *identity.Identity, v uint64) []byte { return withdrawalWire(t, id, v) }
	forged := withdrawal(origin, 5)
	copy(forged[len(forged)-signatureLen:], attacker.Sign(signedMessage(forged)))
	listed := func(e *Engine) bool { _, ok := e.Index().Lookup(origin.NodeID()); return ok }

	_, e, peer := rejectNet(t, Config{})
	if err := e.HandleMessage(peer, withdrawal(origin, 1)); err != nil || e.Stats().WithdrawalsUnknown != 1 || e.Stats().Forwarded != 0 {
		t.Fatalf("withdrawal of an origin never seen: %v, stats %+v; want ignored, not forwarded", err, e.Stats())
	}
	v2 := signedWire(t, origin, 2, Set{Tags: []string{"gpu"}})
	if err := e.HandleMessage(peer, v2); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"forged", forged, ErrBadSignature},
		{"older than the announcement", withdrawal(origin, 1), ErrOldVersion},
		{"same version as the announcement", withdrawal(origin, 2), ErrTampered},
	} {
		if err := e.HandleMessage(peer, tt.msg); !errors.Is(err, tt.want) || !listed(e) {
			t.Errorf("%s: %v (listed %v), want %v and the node still listed", tt.name, err, listed(e), tt.want)
		}
	}
	w3 := withdrawal(origin, 3)
	if err := e.HandleMessage(peer, w3); err != nil || listed(e) {
		t.Fatalf("genuine withdrawal: %v, listed %v", err, listed(e))
	}
	if err := e.HandleMessage(peer, v2); !errors.Is(err, ErrOldVersion) || listed(e) {
		t.Errorf("replay of the withdrawn announcement: %v, listed %v; want ErrOldVersion", err, listed(e))
	}
	// The node comes back; its old withdrawal replayed changes nothing.
	if err := e.HandleMessage(peer, signedWire(t, origin, 4, Set{Tags: []string{"gpu"}})); err != nil || !listed(e) {
		t.Fatalf("the node back: %v, listed %v", err, listed(e))
	}
	if err := e.HandleMessage(peer, w3); !errors.Is(err, ErrOldVersion) || !listed(e) {
		t.Errorf("replayed old withdrawal: %v, listed %v; want ErrOldVersion and still listed", err, listed(e))
	}
}
