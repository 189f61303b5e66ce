package capability

import (
	"testing"

	"github.com/netmesh/netmesh/identity"
)

// Departure tells a node that withdrew from one whose announcement ran
// out, and says nothing of live or unknown nodes, nor of this node before
// it announced.
func TestDeparture(t *testing.T) {
	s := newSimNet(t, 3, Config{})
	s.link(0, 1)
	s.link(0, 2)
	watcher := s.order[0].e
	self := s.order[0].id.NodeID()
	leaver, fader := s.order[1], s.order[2]
	check := func(what string, id identity.NodeID, wantKind EventKind, wantOK bool) {
		t.Helper()
		if kind, ok := watcher.Departure(id); kind != wantKind || ok != wantOK {
			t.Errorf("%s: Departure = %v, %v; want %v, %v", what, kind, ok, wantKind, wantOK)
		}
	}
	stranger, _ := identity.Generate()
	check("a node never heard of", stranger.NodeID(), 0, false)
	check("this node before announcing", self, 0, false)

	for _, n := range s.order {
		if err := n.e.Announce(Set{Tags: []string{"gpu"}}); err != nil {
			t.Fatal(err)
		}
	}
	s.settle()
	check("a live node", leaver.id.NodeID(), 0, false)
	check("this node, live", self, 0, false)

	leaver.e.Withdraw()
	s.settle()
	check("a node that withdrew", leaver.id.NodeID(), NodeLeft, true)

	s.clock.Advance(DefaultTTL)
	watcher.Tick()
	check("a node whose announcement ran out", fader.id.NodeID(), NodeOffline, true)
	check("the node that withdrew, later", leaver.id.NodeID(), NodeLeft, true)

	watcher.Withdraw()
	check("this node after withdrawing", self, NodeLeft, true)
}
