package channel

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// hookNode is a fakeNode whose Send and PeerInfo run optional hooks
// first. Its engine replaces the fakeNode's, so messages to the node reach
// the hooked engine.
type hookNode struct {
	*fakeNode
	onSend func(to identity.NodeID, msg []byte)
	onPeer func(id identity.NodeID)
}

func newHookNode(t *testing.T, n *fakeNet, on func(*hookNode)) *hookNode {
	t.Helper()
	h := &hookNode{fakeNode: n.add(Options{})}
	on(h)
	e, err := New(h.id, h, Options{Now: n.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	return h
}

func (h *hookNode) Send(to identity.NodeID, msg []byte) error {
	if h.onSend != nil {
		h.onSend(to, msg)
	}
	return h.fakeNode.Send(to, msg)
}

func (h *hookNode) PeerInfo(id identity.NodeID) (capability.Node, ed25519.PublicKey, bool) {
	if h.onPeer != nil {
		h.onPeer(id)
	}
	return h.fakeNode.PeerInfo(id)
}

// TestSubscriberCapsQueue guards the subscriber's own bound on its queue:
// a publisher that announces a huge PendingLimit gets at most
// Options.MaxPending messages and Options.MaxPendingBytes payload bytes
// queued.
func TestSubscriberCapsQueue(t *testing.T) {
	net := newFakeNet(t)
	pub := net.add(Options{})
	byCount := net.add(Options{MaxPending: 4})
	byBytes := net.add(Options{MaxPendingBytes: 2 * MaxPayloadSize})
	mustRegister(t, pub, "c", Config{PendingLimit: MaxPendingLimit})
	sc := mustSubscribe(t, byCount, pub, "c", nil)
	sb := mustSubscribe(t, byBytes, pub, "c", nil)
	big := bytes.Repeat([]byte{1}, MaxPayloadSize)
	for range 10 {
		if _, err := pub.e.Publish(ctxT(t), "c", big); err != nil {
			t.Fatal(err)
		}
	}
	if st := sc.Stats(); st.Received != 4 || st.Dropped != 6 {
		t.Fatalf("MaxPending 4: stats %+v", st)
	}
	if st := sb.Stats(); st.Received != 2 || st.Dropped != 8 {
		t.Fatalf("MaxPendingBytes of two payloads: stats %+v", st)
	}
	// Reading frees the bytes: the next message fits again.
	recvN(t, sb, 1)
	if _, err := pub.e.Publish(ctxT(t), "c", big); err != nil {
		t.Fatal(err)
	}
	if st := sb.Stats(); st.Received != 3 {
		t.Fatalf("after a read: stats %+v", st)
	}
	for _, o := range []Options{{MaxPending: MaxPendingLimit + 1}, {MaxPending: -1}, {MaxPendingBytes: MaxPayloadSize - 1}} {
		if _, err := New(testIdentity(t), pub, o); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("New(%+v): %v", o, err)
		}
	}
}

// TestRegisterRaceKeepsToken guards handleSubscribe's retry after a
// concurrent Register: a channel switched to RequireToken while a request
// with a valid token is admitted must admit it under the new config, not
// reject the token as missing.
func TestRegisterRaceKeepsToken(t *testing.T) {
	net := newFakeNet(t)
	sub := net.add(Options{})
	var once sync.Once
	var pub *hookNode
	pub = newHookNode(t, net, func(h *hookNode) {
		h.onPeer = func(id identity.NodeID) {
			if id == sub.ID() {
				once.Do(func() { mustRegister(t, pub.fakeNode, "c", Config{RequireToken: true}) })
			}
		}
	})
	mustRegister(t, pub.fakeNode, "c", Config{})
	now := net.clock.Now()
	tok := issue(t, pub.id, sub, "c", now.Add(-time.Minute), now.Add(time.Hour))
	s, err := sub.e.Subscribe(ctxT(t), pub.ID(), "c", tok)
	if err != nil {
		t.Fatalf("subscribe with a valid token: %v", err)
	}
	if _, err := pub.e.Publish(ctxT(t), "c", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m := recvN(t, s, 1)[0]; string(m.Payload) != "x" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestEndBeforeAckAnswersSubscribe guards Subscribe against an end that
// overtakes the ack: it returns the publisher's reason at once instead of
// waiting out its ctx.
func TestEndBeforeAckAnswersSubscribe(t *testing.T) {
	net := newFakeNet(t)
	pub := net.add(Options{})
	var sub *hookNode
	sub = newHookNode(t, net, func(h *hookNode) {
		h.onSend = func(to identity.NodeID, msg []byte) {
			if msgType(msg[0]) == msgSubscribe { // as if the publisher admitted and ended it at once
				end := &message{typ: msgEnd, name: []byte("c"), reason: ReasonUnknownChannel}
				_ = sub.e.HandleMessage(to, end.appendTo(nil))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// The publisher's own reject comes after the end and is ignored.
	_, err := sub.e.Subscribe(ctx, pub.ID(), "c", nil)
	var re *RejectError
	if !errors.As(err, &re) || !re.Evicted || !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("Subscribe: %v, want the publisher's end", err)
	}
	// The request is forgotten: subscribing again is allowed.
	_, err = sub.e.Subscribe(ctxT(t), pub.ID(), "c", nil)
	if errors.Is(err, ErrAlreadySubscribed) {
		t.Fatal(err)
	}
}

// TestRecvPassesWakeUpOn guards concurrent Recv on one subscription: two
// messages queued back to back signal once, and the reader that takes the
// first must pass the wake-up on, or a second reader already waiting
// sleeps with a message queued.
func TestRecvPassesWakeUpOn(t *testing.T) {
	net := newFakeNet(t)
	pub, sub := net.add(Options{}), net.add(Options{})
	mustRegister(t, pub, "c", Config{})
	s := mustSubscribe(t, sub, pub, "c", nil)
	if _, err := pub.e.PublishMany(ctxT(t), "c", [][]byte{[]byte("a"), []byte("b")}); err != nil {
		t.Fatal(err)
	}
	<-s.notify // the one wake-up, taken by the first reader
	recvN(t, s, 1)
	select {
	case <-s.notify: // a waiting reader would wake and take "b"
	default:
		t.Fatal("a message is queued but no waiting Recv is woken")
	}
}

// TestPublishManyEvictsOnCancel guards PublishMany's eviction of the
// subscribers that failed the fast path when ctx ends between payloads.
func TestPublishManyEvictsOnCancel(t *testing.T) {
	net := newFakeNet(t)
	expiring, live := net.add(Options{}), net.add(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := newHookNode(t, net, func(h *hookNode) {
		h.onSend = func(to identity.NodeID, msg []byte) {
			if msgType(msg[0]) == msgPublish {
				cancel()
			}
		}
	})
	mustRegister(t, pub.fakeNode, "c", Config{RequireToken: true})
	now := net.clock.Now()
	se := mustSubscribe(t, expiring, pub.fakeNode, "c", issue(t, pub.id, expiring, "c", now.Add(-time.Minute), now.Add(time.Minute)))
	mustSubscribe(t, live, pub.fakeNode, "c", issue(t, pub.id, live, "c", now.Add(-time.Minute), now.Add(time.Hour)))
	net.clock.Advance(2 * time.Minute)
	r, err := pub.e.PublishMany(ctx, "c", [][]byte{[]byte("a"), []byte("b")})
	if !errors.Is(err, context.Canceled) || len(r) != 1 {
		t.Fatalf("PublishMany: %d reports, %v", len(r), err)
	}
	select {
	case <-se.Done():
	default:
		t.Fatal("the expired subscriber was not told it was evicted")
	}
	if st := pub.e.Stats(); st.Evicted != 1 {
		t.Fatalf("evicted %d", st.Evicted)
	}
}

// TestResubscribeAfterPublisherRestart: a publisher that restarts forgets
// its subscribers; the subscriber learns of it when the session goes down
// (PeerDown), subscribes again when it is back (PeerUp), and goes on
// receiving, with the loss and the return reported in order among the
// messages. Attempts that fail are retried with backoff on Tick.
func TestResubscribeAfterPublisherRestart(t *testing.T) {
	n := newFakeNet(t)
	pub := n.add(Options{})
	sub := n.add(Options{})
	if err := pub.e.Register("news", Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := sub.e.Subscribe(context.Background(), pub.ID(), "news", nil)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(p *fakeNode, msg string) {
		t.Helper()
		if _, err := p.e.Publish(context.Background(), "news", []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	publish(pub, "one")

	// The publisher restarts: a new engine with the same identity and no
	// subscribers, unreachable for a while.
	restarted, err := New(pub.id, pub, Options{Now: n.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Register("news", Config{}); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	pub.e = restarted
	n.mu.Unlock()
	pub.setDown(true)
	sub.e.PeerDown(pub.ID())
	n.clock.Advance(ResubscribeMin)
	sub.e.Tick() // fails: the publisher is unreachable
	pub.setDown(false)
	n.clock.Advance(ResubscribeMin / 2)
	sub.e.Tick() // not due yet
	if got := len(restarted.Subscribers("news")); got != 0 {
		t.Fatalf("resubscribed before the backoff ran out: %d subscribers", got)
	}
	sub.e.PeerUp(pub.ID()) // the session is back: at once
	if got := len(restarted.Subscribers("news")); got != 1 {
		t.Fatalf("the restarted publisher has %d subscribers, want 1", got)
	}
	publish(pub, "two")

	ctx := context.Background()
	for _, want := range []any{"one", ErrPublisherLost, ErrResubscribed, "two"} {
		m, err := s.Recv(ctx)
		switch w := want.(type) {
		case string:
			if err != nil || string(m.Payload) != w {
				t.Fatalf("got %q, %v; want %q", m.Payload, err, w)
			}
		case error:
			if err != w {
				t.Fatalf("got %q, %v; want %v", m.Payload, err, w)
			}
		}
	}
	if m := s.Stats(); m.Lost != 0 {
		t.Fatalf("counted %d lost: the restarted publisher's sequence starts over", m.Lost)
	}
}

// TestResubscribeRefusedEnds: a publisher that refuses the subscription
// when it comes back ends it.
func TestResubscribeRefusedEnds(t *testing.T) {
	n := newFakeNet(t)
	pub := n.add(Options{})
	sub := n.add(Options{})
	if err := pub.e.Register("news", Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := sub.e.Subscribe(context.Background(), pub.ID(), "news", nil)
	if err != nil {
		t.Fatal(err)
	}
	pub.e.Unregister("news")
	sub.e.PeerDown(pub.ID())
	sub.e.PeerUp(pub.ID())
	var got []error
	for _, err := range s.Messages(context.Background()) {
		got = append(got, err)
	}
	var rej *RejectError
	if len(got) == 0 || !errors.As(got[len(got)-1], &rej) || !rej.Evicted {
		t.Fatalf("events %v, want the subscription to end with an eviction", got)
	}
}

// TestNoticesStayBounded: a publisher whose session flaps leaves at most
// two notices in a row in a queue nobody reads.
func TestNoticesStayBounded(t *testing.T) {
	n := newFakeNet(t)
	pub := n.add(Options{})
	sub := n.add(Options{})
	if err := pub.e.Register("news", Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := sub.e.Subscribe(context.Background(), pub.ID(), "news", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		sub.e.PeerDown(pub.ID())
		sub.e.PeerUp(pub.ID())
	}
	sub.e.PeerDown(pub.ID())
	s.mu.Lock()
	queued := s.n
	s.mu.Unlock()
	if queued > 2 {
		t.Fatalf("%d notices queued after 1000 flaps", queued)
	}
	if _, err := s.Recv(context.Background()); err != ErrPublisherLost {
		t.Fatalf("first notice %v, want publisher lost", err)
	}
}
