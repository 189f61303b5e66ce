package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/testenv"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// subnetNode starts a node whose channel engine pins subnet s.
func subnetNode(t *testing.T, s string) *mesh.Mesh {
	id, err := channel.ParseSubnetID(s)
	if err != nil {
		t.Fatal(err)
	}
	return newNode(t, fastCaps, func(c *mesh.Config) { c.Channels.Subnet = id })
}

// knows waits until m's capability index holds an announcement of other.
func knows(t *testing.T, m, other *mesh.Mesh) {
	t.Helper()
	eventually(t, 5*time.Second, "capability gossip", func() bool {
		_, ok := m.Capabilities().Index().Lookup(other.ID())
		return ok
	})
}

func TestChannelPublishSubscribe(t *testing.T) {
	pub, sub := newNode(t), newNode(t)
	connect(t, sub, pub, mesh.Pin{})
	if err := pub.RegisterChannel("news", channel.Config{}); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	s, err := sub.SubscribeChannel(ctx, pub.ID(), "news", nil)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 20000) // larger than a datagram: rides the stream
	for i, payload := range [][]byte{[]byte("one"), []byte("two"), big} {
		rep, err := pub.Publish(ctx, "news", payload)
		if err != nil || rep.Delivered != 1 {
			t.Fatalf("publish %d: %+v, %v", i, rep, err)
		}
	}
	for i, want := range []int{3, 3, len(big)} {
		msg, err := s.Recv(ctx)
		if err != nil || len(msg.Payload) != want || msg.Publisher != pub.ID() {
			t.Fatalf("message %d: %d bytes from %s, %v", i, len(msg.Payload), msg.Publisher.Short(), err)
		}
	}
	s.Unsubscribe()
	s.Unsubscribe() // idempotent
	eventually(t, 3*time.Second, "the publisher to drop the subscriber", func() bool {
		rep, _ := pub.Publish(ctx, "news", []byte("anyone?"))
		return rep.Attempted == 0
	})
}

func TestChannelRejections(t *testing.T) {
	pub := newNode(t, fastCaps) // the default limiter: 16 failures a minute
	other, _ := identity.Generate()
	sub := newNode(t, fastCaps)
	connect(t, sub, pub, mesh.Pin{})
	trusted, _ := capability.ParseFilter("trusted")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(pub.RegisterChannel("caps", channel.Config{SubscribeCaps: trusted}))
	must(pub.RegisterChannel("secret", channel.Config{RequireToken: true}))
	must(pub.RegisterChannel("tiny", channel.Config{MaxSubscribers: 1}))

	ctx := ctxT(t)
	valid := func(ch string, d time.Duration) *identity.PermissionToken {
		tok, err := identity.IssueToken(pub.Identity(), identity.TokenGrant{
			Subject: sub.Identity().PublicKey(), Perms: identity.PermSubscribe, Channel: ch,
			NotBefore: time.Now().Add(-time.Minute), Expiry: time.Now().Add(d)})
		must(err)
		return tok
	}
	forged, _ := identity.IssueToken(other, identity.TokenGrant{Subject: sub.Identity().PublicKey(), Perms: identity.PermSubscribe, Channel: "secret", Expiry: time.Now().Add(time.Hour)})
	expired := valid("secret", -30*time.Second)

	first, err := newNode(t).SubscribeChannel(ctx, pub.ID(), "tiny", nil)
	if err == nil {
		t.Fatal("subscribed without a session")
	}
	_ = first
	third := newNode(t)
	connect(t, third, pub, mesh.Pin{})
	if _, err := third.SubscribeChannel(ctx, pub.ID(), "tiny", nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, ch string
		tok      *identity.PermissionToken
		want     error
	}{
		{"unknown channel", "nope", nil, channel.ErrUnknownChannel},
		{"missing capability", "caps", nil, channel.ErrUnauthorized},
		{"no token", "secret", nil, channel.ErrTokenRequired},
		{"untrusted issuer", "secret", forged, identity.ErrTokenUntrustedIssuer},
		{"expired token", "secret", expired, identity.ErrTokenExpired},
		{"too many subscribers", "tiny", nil, channel.ErrTooManySubscribers},
	} {
		_, err := sub.SubscribeChannel(ctx, pub.ID(), c.ch, c.tok)
		var rej *channel.RejectError
		if !errors.As(err, &rej) || !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want a RejectError matching %v", c.name, err, c.want)
		}
	}
	// With a good token and the right capability it works.
	must(sub.AnnounceCapabilities(capability.Set{Tags: []string{"trusted"}}))
	eventually(t, 5*time.Second, "pub to see sub's new capability", func() bool {
		n, ok := pub.Capabilities().Index().Lookup(sub.ID())
		return ok && n.Set.HasTag("trusted")
	})
	if _, err := sub.SubscribeChannel(ctx, pub.ID(), "caps", nil); err != nil {
		t.Fatalf("caps after announcing: %v", err)
	}
	// Repeated auth failures are throttled before any signature check.
	var limited bool
	for range 20 {
		if _, err := sub.SubscribeChannel(ctx, pub.ID(), "secret", forged); errors.Is(err, channel.ErrRateLimited) {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("a storm of bad tokens was never rate limited")
	}
}

func TestChannelTokenExpiryStopsDelivery(t *testing.T) {
	sweep := func(c *mesh.Config) { c.Channels.SweepInterval = 200 * time.Millisecond }
	pub, sub := newNode(t, sweep), newNode(t, sweep)
	connect(t, sub, pub, mesh.Pin{})
	if err := pub.RegisterChannel("feed", channel.Config{RequireToken: true}); err != nil {
		t.Fatal(err)
	}
	// Tokens carry whole seconds: this one lasts 1-2 s from now.
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second)
	tok, err := identity.IssueToken(pub.Identity(), identity.TokenGrant{
		Subject: sub.Identity().PublicKey(), Perms: identity.PermSubscribe, Channel: "feed",
		NotBefore: time.Now().Add(-time.Minute), Expiry: exp})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	s, err := sub.SubscribeChannel(ctx, pub.ID(), "feed", tok)
	if err != nil {
		t.Fatal(err)
	}
	if rep, _ := pub.Publish(ctx, "feed", []byte("before")); rep.Delivered != 1 {
		t.Fatalf("before expiry: %+v", rep)
	}
	// Past expiry and one sweep (the mesh ticks its engines every second).
	time.Sleep(time.Until(exp) + channel.TickInterval + 300*time.Millisecond)
	if n := len(pub.Channels().Subscribers("feed")); n != 0 {
		t.Fatalf("%d subscribers left after the token expired and a sweep ran", n)
	}
	if rep, _ := pub.Publish(ctx, "feed", []byte("after")); rep.Delivered != 0 {
		t.Fatalf("delivered after expiry: %+v", rep)
	}
	msg, err := s.Recv(ctx)
	if err != nil || string(msg.Payload) != "before" {
		t.Fatalf("first message: %q, %v", msg.Payload, err)
	}
	if _, err := s.Recv(ctx); !errors.Is(err, identity.ErrTokenExpired) {
		t.Fatalf("after expiry Recv = %v, want the eviction (token expired)", err)
	}
}

func TestChannelVisibilityMatrix(t *testing.T) {
	pub := subnetNode(t, "3.1.0.0")
	subs := map[string]*mesh.Mesh{
		"same":      subnetNode(t, "3.1.0.0"),
		"parent":    subnetNode(t, "3.0.0.0"),
		"child":     subnetNode(t, "3.1.7.0"),
		"sibling":   subnetNode(t, "3.2.0.0"),
		"unrelated": subnetNode(t, "4.0.0.0"),
	}
	for name, v := range map[string]channel.Visibility{"global": channel.Global, "local": channel.SubnetLocal, "parent": channel.ParentVisible} {
		if err := pub.RegisterChannel(name, channel.Config{Visibility: v}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range subs {
		connect(t, s, pub, mesh.Pin{})
		knows(t, pub, s)
		knows(t, s, pub)
	}
	want := map[string]map[string]bool{ // channel -> subscriber -> allowed
		"global": {"same": true, "parent": true, "child": true, "sibling": true, "unrelated": true},
		"local":  {"same": true},
		"parent": {"same": true, "parent": true, "child": true},
	}
	ctx := ctxT(t)
	for ch, allowed := range want {
		for name, s := range subs {
			_, err := s.SubscribeChannel(ctx, pub.ID(), ch, nil)
			if got := err == nil; got != allowed[name] {
				t.Errorf("channel %s, subscriber %s: subscribed=%v (%v), want %v", ch, name, got, err, allowed[name])
			}
		}
	}
}

func TestChannelFanOutInOrder(t *testing.T) {
	const nodes = 100 // one subscription each
	msgs := 10000
	if mesh.RaceEnabled || testing.Short() {
		msgs = 300
	}
	// 101 nodes in one process: at the test's usual 50 ms retransmit each
	// node's timer loop would wake 80 times a second, which alone starves
	// a busy machine, and dead-peer timeouts under a second would then
	// take starved peers for dead. This test is about order, not
	// liveness: timers a tenth of the defaults.
	timers := func(c *mesh.Config) {
		// Peers going down is what fails this test under load; their
		// reasons are logged at Info, shown if it fails.
		c.Logger = testnode.Logger(t, slog.LevelInfo)
		c.HandshakeRetransmit = 100 * time.Millisecond
		c.HandshakeGiveUp = 10 * time.Second
		c.KeepaliveInterval = time.Second
		c.ProbeTimeout = 10 * time.Second
		c.RoamSilence = time.Second
	}
	pub := newNode(t, timers)
	if err := pub.RegisterChannel("ticks", channel.Config{PendingLimit: 65536}); err != nil {
		t.Fatal(err)
	}
	// 30,000 deliveries under -race take seconds on a quiet machine and
	// minutes on a starved one: the test fails when the work stops (no
	// subscription, publish or delivery for 30 s), not when a budget for
	// all of it runs out.
	var progress atomic.Int64
	ctx := testenv.StallContext(t, &progress, 30*time.Second)
	var subs []*channel.Subscription
	for range nodes {
		n := newNode(t, timers)
		connect(t, n, pub, mesh.Pin{})
		s, err := n.SubscribeChannel(ctx, pub.ID(), "ticks", nil)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
		progress.Add(1)
	}
	errc := make(chan error, len(subs))
	for _, s := range subs {
		go receiveInOrder(ctx, s, msgs, &progress, errc, func(i int, m channel.Message) error {
			if got := string(m.Payload); got != fmt.Sprint(i) {
				return fmt.Errorf("got %q", got)
			}
			return nil
		})
	}
	start := time.Now()
	for i := range msgs {
		rep, err := pub.Publish(ctx, "ticks", []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Delivered != len(subs) {
			t.Fatalf("publish %d: delivered %d of %d: %v", i, rep.Delivered, len(subs), rep.Failures[:min(3, len(rep.Failures))])
		}
		progress.Add(1)
	}
	for range subs {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	d := time.Since(start)
	t.Logf("%d subscribers x %d messages in order in %v (%.0f deliveries/s)", len(subs), msgs, d.Round(time.Millisecond), float64(len(subs)*msgs)/d.Seconds())
}

// receiveInOrder receives msgs messages on s, checking the i-th with
// check and counting each in progress, and sends errc the first failure,
// or nil.
func receiveInOrder(ctx context.Context, s *channel.Subscription, msgs int, progress *atomic.Int64, errc chan<- error, check func(i int, m channel.Message) error) {
	for i := range msgs {
		m, err := s.Recv(ctx)
		if err == nil {
			err = check(i, m)
		}
		if err != nil {
			errc <- fmt.Errorf("message %d: %w", i, err)
			return
		}
		progress.Add(1)
	}
	errc <- nil
}

// TestChannelFloodLosesNothing: a publisher publishing as fast as it can
// to subscribers that keep up only as fast as their nodes do waits for
// their stream windows (Config.PublishWait) instead of failing them, so
// every message reaches every subscriber, in order.
func TestChannelFloodLosesNothing(t *testing.T) {
	const subscribers = 3
	msgs := 20000
	if mesh.RaceEnabled || testing.Short() {
		msgs = 3000
	}
	pub := newNode(t)
	if err := pub.RegisterChannel("flood", channel.Config{PendingLimit: channel.MaxPendingLimit}); err != nil {
		t.Fatal(err)
	}
	var progress atomic.Int64
	ctx := testenv.StallContext(t, &progress, 30*time.Second)
	errc := make(chan error, subscribers)
	for range subscribers {
		n := newNode(t)
		connect(t, n, pub, mesh.Pin{})
		s, err := n.SubscribeChannel(ctx, pub.ID(), "flood", nil)
		if err != nil {
			t.Fatal(err)
		}
		go receiveInOrder(ctx, s, msgs, &progress, errc, func(i int, m channel.Message) error {
			if m.Seq != uint64(i+1) {
				return fmt.Errorf("sequence number %d", m.Seq)
			}
			return nil
		})
	}
	payload := make([]byte, 256)
	failed := 0
	for range msgs {
		rep, err := pub.Publish(ctx, "flood", payload)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Failures) > 0 && failed == 0 {
			t.Errorf("first failure: %v", rep.Failures[0].Err)
		}
		failed += len(rep.Failures)
		progress.Add(1)
	}
	if failed > 0 {
		t.Fatalf("%d of %d deliveries failed at the publisher", failed, subscribers*msgs)
	}
	for range subscribers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if st := pub.Channels().Stats(); st.PublishWaits == 0 {
		t.Logf("the publisher never waited for a window (%+v): the subscribers kept up", st)
	}
}

func TestChannelSlowConsumerBounded(t *testing.T) {
	pub, sub := newNode(t), newNode(t)
	connect(t, sub, pub, mesh.Pin{})
	if err := pub.RegisterChannel("firehose", channel.Config{PendingLimit: 16}); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	s, err := sub.SubscribeChannel(ctx, pub.ID(), "firehose", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		pub.Publish(ctx, "firehose", []byte(fmt.Sprint(i)))
	}
	eventually(t, 10*time.Second, "every publish to arrive or be dropped", func() bool {
		st := s.Stats()
		return st.Received+st.Dropped == 500
	})
	if st := s.Stats(); st.Received > 16 {
		t.Fatalf("queue took %d messages with a limit of 16 (stats %+v)", st.Received, st)
	}
	if _, err := s.Recv(ctx); err != nil && !errors.Is(err, channel.ErrSlowConsumer) {
		t.Fatalf("Recv after drops: %v", err)
	}
}

// TestSubscriptionSurvivesPublisherRestart: a publisher that restarts
// (same key and address) forgets its subscribers; the subscriber notices
// the silence, connects again, subscribes again and goes on receiving,
// and its subscription says when it lost and regained the publisher.
func TestSubscriptionSurvivesPublisherRestart(t *testing.T) {
	idP, _ := identity.Generate()
	pub := newNode(t, func(c *mesh.Config) { c.Identity = idP })
	sub := newNode(t, func(c *mesh.Config) {
		c.DeadPeerTimeout = 600 * time.Millisecond
		c.ProbeTimeout = time.Second
	})
	connect(t, sub, pub, mesh.Pin{})
	if err := pub.RegisterChannel("news", channel.Config{}); err != nil {
		t.Fatal(err)
	}
	s, err := sub.SubscribeChannel(ctxT(t), pub.ID(), "news", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := pub.Addr()
	pub.Close()
	pub2 := newNode(t, func(c *mesh.Config) { c.Identity = idP; c.ListenAddr = addr.String() })
	if err := pub2.RegisterChannel("news", channel.Config{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the subscriber to subscribe again", func() bool {
		return len(pub2.Channels().Subscribers("news")) == 1
	})
	if _, err := pub2.Publish(ctxT(t), "news", []byte("after")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for m, err := range s.Messages(ctxT(t)) {
		if err != nil {
			got = append(got, err.Error())
			continue
		}
		got = append(got, string(m.Payload))
		break
	}
	want := []string{channel.ErrPublisherLost.Error(), channel.ErrResubscribed.Error(), "after"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("subscription saw %q, want %q", got, want)
	}
}
