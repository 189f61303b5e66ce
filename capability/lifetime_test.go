package capability

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// announcedThenGone returns a network of 4 nodes where node 0, the
// origin, announced once to its one neighbour, node 1, and then went away
// for good (isolated: it never refreshes).
func announcedThenGone(t *testing.T) (*simNet, identity.NodeID) {
	t.Helper()
	s := newSimNet(t, 4, Config{})
	s.link(0, 1)
	if err := s.order[0].e.Announce(Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	s.settle()
	s.isolate(0)
	return s, s.order[0].id.NodeID()
}

// Regression: a node that got an announcement late (here through PeerUp,
// from a neighbour that had held it for most of its TTL) gave it a fresh
// TTL, so an origin that went away stayed Online there, and along a chain
// of late joiners, for several TTLs. A late receiver must expire it when
// the origin's first receivers do.
func TestLateReceiverKeepsOriginalExpiry(t *testing.T) {
	s, origin := announcedThenGone(t)
	held, ok := s.order[1].e.Index().Lookup(origin)
	if !ok {
		t.Fatal("neighbour did not learn the origin")
	}
	want := held.Expires // the origin's one broadcast + TTL

	// 80 s later node 2 joins node 1, then 5 s later node 3 joins node 2.
	s.clock.Advance(80 * time.Second)
	s.link(1, 2)
	s.order[1].e.PeerUp(s.order[2].id.NodeID())
	s.settle()
	s.clock.Advance(5 * time.Second)
	s.link(2, 3)
	s.order[2].e.PeerUp(s.order[3].id.NodeID())
	s.settle()
	for _, i := range []int{2, 3} {
		n, ok := s.order[i].e.Index().Lookup(origin)
		if !ok {
			t.Fatalf("node %d did not learn the origin", i)
		}
		if !n.Expires.Equal(want) {
			t.Errorf("node %d: expires %v after the first receiver, want the same time", i, n.Expires.Sub(want))
		}
		// 10 s and 5 s of 90 left: a refresh is overdue.
		if n.Status != StatusDegraded {
			t.Errorf("node %d: status %v, want degraded", i, n.Status)
		}
	}

	s.clock.Advance(5 * time.Second) // the original expiry
	s.tickAll(0)
	for i := 1; i < 4; i++ {
		if n, ok := s.order[i].e.Index().Lookup(origin); ok {
			t.Errorf("node %d still lists the origin (%v) at its original expiry", i, n.Status)
		}
	}
}

// A neighbour's copy is handed on with its lifetime rounded down to whole
// seconds, so the receiver never expires it later than the sender does;
// one with less than a second left is not handed on at all.
func TestPeerUpRoundsRemainingDown(t *testing.T) {
	s, origin := announcedThenGone(t)
	want, _ := s.order[1].e.Index().Lookup(origin)

	s.clock.Advance(30*time.Second + 500*time.Millisecond)
	s.link(1, 2)
	s.order[1].e.PeerUp(s.order[2].id.NodeID())
	s.settle()
	n, ok := s.order[2].e.Index().Lookup(origin)
	if !ok || !n.Expires.Equal(want.Expires.Add(-500*time.Millisecond)) {
		t.Fatalf("joiner: %v expires %v after the sender, want 500ms before", ok, n.Expires.Sub(want.Expires))
	}

	s.clock.Advance(59 * time.Second) // 0.5 s left at node 1
	s.link(1, 3)
	s.order[1].e.PeerUp(s.order[3].id.NodeID())
	s.settle()
	if _, ok := s.order[3].e.Index().Lookup(origin); ok {
		t.Error("a copy with less than a second left was handed on")
	}
}

// Forwarding at receipt loses nothing to rounding: every node on a chain
// expires the announcement when the origin's neighbour does.
func TestForwardKeepsExpiry(t *testing.T) {
	const n = 6
	s := newSimNet(t, n, Config{})
	for i := 0; i+1 < n; i++ {
		s.link(i, i+1)
	}
	var routeExpires []time.Time
	s.order[n-1].e.cfg.OnRoute = func(_, _ identity.NodeID, _ int, expires time.Time) {
		routeExpires = append(routeExpires, expires)
	}
	s.clock.Advance(123 * time.Millisecond) // a clock not on a whole second
	if err := s.order[0].e.Announce(Set{}); err != nil {
		t.Fatal(err)
	}
	s.settle()
	want := s.clock.Now().Add(DefaultTTL)
	for i := 1; i < n; i++ {
		node, ok := s.order[i].e.Index().Lookup(s.order[0].id.NodeID())
		if !ok || !node.Expires.Equal(want) || node.Status != StatusOnline {
			t.Errorf("node %d: %v expires %v after the origin's TTL, status %v", i, ok, node.Expires.Sub(want), node.Status)
		}
	}
	if len(routeExpires) != 1 || !routeExpires[0].Equal(want) {
		t.Errorf("OnRoute expiries %v, want [%v]", routeExpires, want)
	}
}

// remainingWire returns a signed announcement by id as a relay would send
// it with remaining lifetime r.
func remainingWire(tb testing.TB, id *identity.Identity, version uint64, r time.Duration) []byte {
	tb.Helper()
	b := signedWire(tb, id, version, Set{Tags: []string{"gpu"}})
	putRemaining(b, r)
	b[offHops] = 3
	return b
}

func TestReceiveUsesRemaining(t *testing.T) {
	origin := testID(t, 100)
	for _, tt := range []struct {
		remaining time.Duration
		status    Status
	}{
		{DefaultTTL, StatusOnline},
		{DefaultTTL/2 + time.Second, StatusOnline},
		{DefaultTTL / 2, StatusDegraded}, // a refresh is overdue
		{time.Second, StatusDegraded},
	} {
		s, e, peer := rejectNet(t, Config{})
		s.link(0, 1)
		if err := e.HandleMessage(peer, remainingWire(t, origin, 1, tt.remaining)); err != nil {
			t.Fatal(err)
		}
		n, ok := e.Index().Lookup(origin.NodeID())
		if !ok || !n.Expires.Equal(s.clock.Now().Add(tt.remaining)) || n.Status != tt.status {
			t.Errorf("remaining %v: found %v, expires in %v, %v; want %v", tt.remaining, ok, n.Expires.Sub(s.clock.Now()), n.Status, tt.status)
		}
	}
}

// An announcement sent with no lifetime left is neither indexed nor
// forwarded, and does not stop a live copy of the same version.
func TestExpiredRejected(t *testing.T) {
	origin := testID(t, 100)
	_, e, peer := rejectNet(t, Config{})
	expired := remainingWire(t, origin, 1, 0)
	if err := e.HandleMessage(peer, expired); !errors.Is(err, ErrExpired) {
		t.Fatalf("HandleMessage = %v, want ErrExpired", err)
	}
	st := e.Stats()
	if st.RejectedExpired != 1 || st.Accepted != 0 || st.Forwarded != 0 || e.Index().Len() != 0 {
		t.Fatalf("after an expired copy: stats %+v, index %d", st, e.Index().Len())
	}
	if err := e.HandleMessage(peer, remainingWire(t, origin, 1, 20*time.Second)); err != nil {
		t.Fatalf("live copy of the same version: %v", err)
	}
	if _, ok := e.Index().Lookup(origin.NodeID()); !ok {
		t.Fatal("live copy not indexed")
	}
}

// A copy of a version already held never extends its expiry: otherwise a
// relay could keep a dead node alive by resending it.
func TestDuplicateDoesNotExtend(t *testing.T) {
	origin := testID(t, 100)
	s, e, peer := rejectNet(t, Config{})
	if err := e.HandleMessage(peer, remainingWire(t, origin, 1, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	want := s.clock.Now().Add(10 * time.Second)
	s.clock.Advance(5 * time.Second)
	b := remainingWire(t, origin, 1, DefaultTTL)
	b[offHops] = 1 // a better route, too
	if err := e.HandleMessage(peer, b); err != nil {
		t.Fatal(err)
	}
	n, _ := e.Index().Lookup(origin.NodeID())
	e.mu.Lock()
	got := e.records[origin.NodeID()].expires
	e.mu.Unlock()
	if !got.Equal(want) || !n.Expires.Equal(want) || e.Stats().Duplicates != 1 {
		t.Fatalf("expires %v / %v after the first copy's expiry, want unchanged", got.Sub(want), n.Expires.Sub(want))
	}
}

// PeerUp hands each joiner the lifetime left at that moment, without
// modifying a message already given to Transport.Send.
func TestPeerUpDoesNotModifySentMessages(t *testing.T) {
	s, originID := announcedThenGone(t)
	holder := s.order[1].e
	sentTo := func(to int) []byte {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range s.queue {
			if p.to == s.order[to].id.NodeID() && bytes.Equal(p.msg[offOrigin:offKey], originID[:]) {
				return p.msg
			}
		}
		t.Fatalf("nothing about node 0 queued for node %d", to)
		return nil
	}
	s.clock.Advance(10 * time.Second)
	s.link(1, 2)
	holder.PeerUp(s.order[2].id.NodeID())
	first := bytes.Clone(sentTo(2))
	s.clock.Advance(20 * time.Second)
	s.link(1, 3)
	holder.PeerUp(s.order[3].id.NodeID())
	if got := sentTo(2); !bytes.Equal(got, first) {
		t.Fatal("a message already handed to Send was modified")
	}
	for to, want := range map[int]uint32{2: 80, 3: 60} {
		if got := binary.BigEndian.Uint32(sentTo(to)[offRemaining:]); got != want {
			t.Errorf("node %d was sent %d s remaining, want %d", to, got, want)
		}
	}
}

// Tick walks the records only when one is due to turn Degraded or go
// Offline: due is the earliest such time, an arrival that changes
// earlier pulls it in, and each status still changes on time.
func TestTickWalksWhenDue(t *testing.T) {
	e, clock, _ := budgetEngine(t, Config{})
	t0 := clock.Now()
	from := neighbour(1)
	receive := func(origin int, remaining time.Duration) identity.NodeID {
		t.Helper()
		id := testID(t, 600+origin)
		b := signedWire(t, id, 1, Set{Tags: []string{"gpu"}})
		putRemaining(b, remaining)
		if err := e.HandleMessage(from, b); err != nil {
			t.Fatal(err)
		}
		return id.NodeID()
	}
	status := func(id identity.NodeID) Status {
		t.Helper()
		n, ok := e.Index().Lookup(id)
		if !ok {
			return StatusOffline
		}
		return n.Status
	}
	due := func() time.Time {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.due
	}
	degraded, offline := DefaultTTL/degradedDivisor, DefaultTTL

	a := receive(1, DefaultTTL)
	e.Tick()
	if want := t0.Add(degraded); !due().Equal(want) {
		t.Fatalf("due %v after the first walk, want a's degradation at %v", due().Sub(t0), degraded)
	}
	clock.Advance(10 * time.Second)
	b := receive(2, DefaultTTL) // changes later than a: due stays
	// A copy that spent 20 s on the way turns Degraded 10 s before a.
	c := receive(3, DefaultTTL-20*time.Second)
	if want := t0.Add(degraded - 10*time.Second); !due().Equal(want) {
		t.Fatalf("due %v after c arrived, want %v", due().Sub(t0), want.Sub(t0))
	}
	clock.Advance(degraded - 20*time.Second - time.Millisecond) // just before c's
	e.Tick()
	if status(a) != StatusOnline || status(b) != StatusOnline || status(c) != StatusOnline {
		t.Fatal("a status changed before its time")
	}
	clock.Advance(time.Millisecond)
	e.Tick()
	if status(c) != StatusDegraded || status(a) != StatusOnline {
		t.Fatalf("at c's degradation: c %v, a %v", status(c), status(a))
	}
	if want := t0.Add(degraded); !due().Equal(want) {
		t.Fatalf("due %v after c degraded, want a's at %v", due().Sub(t0), degraded)
	}
	clock.Advance(offline) // everything is gone by now
	e.Tick()
	if status(a) != StatusOffline || status(b) != StatusOffline || status(c) != StatusOffline || e.Index().Len() != 0 {
		t.Fatalf("after the TTL: %v %v %v, %d indexed", status(a), status(b), status(c), e.Index().Len())
	}
	if !due().IsZero() {
		t.Fatalf("due %v with nothing live, want zero", due())
	}
}
