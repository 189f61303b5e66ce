package mesh

import (
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// nopCapTransport is a capability transport with no peers.
type nopCapTransport struct{}

func (nopCapTransport) Peers() []identity.NodeID           { return nil }
func (nopCapTransport) Send(identity.NodeID, []byte) error { return nil }

// The attack: a neighbour makes up identities that match a watch and
// withdraws each at once, while the watch's consumer takes one change at
// a time. Every made-up node costs the watch a queue entry when it
// appears, and none is worth reporting once it is gone; the queue must
// stay bounded by the nodes that can matter, not grow with the churn.
func TestWatchQueueBoundedUnderChurn(t *testing.T) {
	self, _ := identity.Generate()
	caps, err := capability.New(self, nopCapTransport{}, capability.Config{OriginBurst: 1 << 20, OriginRate: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	neighbour := identity.NodeID{1}
	gpu := capability.HasTag("gpu")
	w := nodeWatch{
		caps:   caps,
		filter: gpu,
		sub:    caps.Subscribe(0),
		told:   make(map[identity.NodeID]capability.Node),
		queued: make(map[identity.NodeID]struct{}),
	}
	defer w.sub.Close()

	version := uint64(time.Now().UnixNano())
	send := func(id *identity.Identity, set capability.Set, withdrawn bool) {
		version++
		a := capability.Announcement{Version: version, TTL: capability.DefaultTTL, Hops: 1, Remaining: capability.DefaultTTL, Set: set, Withdrawn: withdrawn}
		if err := a.Sign(id); err != nil {
			t.Fatal(err)
		}
		msg, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := caps.HandleMessage(neighbour, msg); err != nil {
			t.Fatal(err)
		}
	}
	// Nodes that stay, so that the consumer has changes to take ahead of
	// the churn: it takes one of them per round.
	const stayers = 100
	for range stayers {
		id, _ := identity.Generate()
		send(id, capability.Set{Tags: []string{"gpu"}}, false)
	}
	w.takeReady()

	const rounds, perRound = 20, 50 // 1,000 made-up nodes, 50 per change taken
	maxQueue := 0
	for range rounds {
		for range perRound {
			id, _ := identity.Generate()
			send(id, capability.Set{Tags: []string{"gpu"}}, false)
			send(id, capability.Set{}, true)
		}
		w.takeReady()
		maxQueue = max(maxQueue, len(w.queue))
		for len(w.queue) > 0 {
			if _, _, ok := w.next(); ok {
				break // the consumer takes one change, then is busy again
			}
		}
	}
	// The queue may hold twice the nodes told of and in the index, plus
	// what one event adds.
	if limit := 2*(len(w.told)+caps.Index().Len()) + 1; maxQueue > limit {
		t.Fatalf("the watch queued %d nodes, want at most %d: the churn grows it", maxQueue, limit)
	}
	if len(w.told) != rounds {
		t.Fatalf("told %d nodes, want %d: one per round", len(w.told), rounds)
	}
}
