package channel

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/netmesh/netmesh/identity"
)

// groupBook is an Options.InGroup over a table of each node's groups.
type groupBook struct {
	mu     sync.Mutex
	groups map[identity.NodeID][]string
}

func (b *groupBook) set(id identity.NodeID, groups ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.groups == nil {
		b.groups = make(map[identity.NodeID][]string)
	}
	b.groups[id] = groups
}

func (b *groupBook) inGroup(id identity.NodeID, groups ...string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range groups {
		if slices.Contains(b.groups[id], g) {
			return true
		}
	}
	return false
}

// TestSubscribeGroups: a channel that requires groups admits subscribers
// whose certificate names one, refuses the others with ReasonGroups,
// evicts a subscriber that lost its group at the next sweep, and lets
// its publisher publish only while it is in a PublishGroups group.
func TestSubscribeGroups(t *testing.T) {
	net := newFakeNet(t)
	var book groupBook
	pub := net.add(Options{InGroup: book.inGroup})
	ops := net.add(Options{})
	dev := net.add(Options{})
	book.set(ops.ID(), "ops")
	book.set(dev.ID(), "dev")
	mustRegister(t, pub, "alerts", Config{SubscribeGroups: []string{"ops", "oncall"}, PublishGroups: []string{"publishers"}})

	s := mustSubscribe(t, ops, pub, "alerts", nil)
	_, err := dev.e.Subscribe(ctxT(t), pub.ID(), "alerts", nil)
	var re *RejectError
	if !errors.As(err, &re) || re.Reason != ReasonGroups || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("a subscriber outside the groups: %v", err)
	}
	if pub.e.Stats().RejectedGroups != 1 {
		t.Fatalf("stats %+v", pub.e.Stats())
	}

	if _, err := pub.e.Publish(ctxT(t), "alerts", []byte("x")); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("publish outside PublishGroups: %v", err)
	}
	book.set(pub.ID(), "publishers")
	if r, err := pub.e.Publish(ctxT(t), "alerts", []byte("x")); err != nil || r.Delivered != 1 {
		t.Fatalf("publish: %+v %v", r, err)
	}

	// ops loses its group (a renewed certificate without it): the sweep
	// ends its subscription.
	book.set(ops.ID())
	net.clock.Advance(DefaultSweepInterval)
	pub.e.Tick()
	if subs := pub.e.Subscribers("alerts"); len(subs) != 0 {
		t.Fatalf("still subscribed: %v", subs)
	}
	for {
		_, err := s.Recv(ctxT(t))
		if errors.As(err, &re) && re.Evicted && re.Reason == ReasonGroups {
			break
		}
		if err != nil {
			t.Fatalf("the subscription ended with %v", err)
		}
	}

	// Without an InGroup, a channel that requires groups admits no one.
	bare := net.add(Options{})
	mustRegister(t, bare, "closed", Config{SubscribeGroups: []string{"ops"}})
	book.set(ops.ID(), "ops")
	if _, err := ops.e.Subscribe(ctxT(t), bare.ID(), "closed", nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("no InGroup: %v", err)
	}
	if err := bare.e.Register("bad", Config{SubscribeGroups: []string{"Not A Group"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("invalid group: %v", err)
	}
}
