package channel

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/testenv"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustRegister(t testing.TB, n *fakeNode, name string, cfg Config) {
	t.Helper()
	if err := n.e.Register(name, cfg); err != nil {
		t.Fatal(err)
	}
}

func mustSubscribe(t testing.TB, sub, pub *fakeNode, name string, tok *identity.PermissionToken) *Subscription {
	t.Helper()
	s, err := sub.e.Subscribe(ctxT(t), pub.ID(), name, tok)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func issue(t testing.TB, issuer *identity.Identity, subject *fakeNode, ch string, nb, exp time.Time) *identity.PermissionToken {
	t.Helper()
	tok, err := identity.IssueToken(issuer, identity.TokenGrant{
		Subject: subject.id.PublicKey(), Perms: identity.PermSubscribe, Channel: ch, NotBefore: nb, Expiry: exp,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func recvN(t testing.TB, s *Subscription, n int) []Message {
	t.Helper()
	var out []Message
	for range n {
		m, err := s.Recv(ctxT(t))
		if err != nil {
			t.Fatalf("Recv after %d: %v", len(out), err)
		}
		out = append(out, m)
	}
	return out
}

func TestSubscribePublishUnsubscribe(t *testing.T) {
	net := newFakeNet(t)
	pub, sub := net.add(Options{}), net.add(Options{})
	mustRegister(t, pub, "news", Config{PendingLimit: 4})
	s := mustSubscribe(t, sub, pub, "news", nil)
	if s.Publisher() != pub.ID() || s.Channel() != "news" {
		t.Fatal("subscription identity")
	}
	if _, err := sub.e.Subscribe(ctxT(t), pub.ID(), "news", nil); !errors.Is(err, ErrAlreadySubscribed) {
		t.Fatalf("second subscribe: %v", err)
	}
	r, err := pub.e.Publish(ctxT(t), "news", []byte("hello"))
	if err != nil || r.Attempted != 1 || r.Delivered != 1 || len(r.Failures) != 0 || r.Seq != 1 {
		t.Fatalf("report %+v, %v", r, err)
	}
	m := recvN(t, s, 1)[0]
	if string(m.Payload) != "hello" || m.Seq != 1 || m.Publisher != pub.ID() || m.Channel != "news" {
		t.Fatalf("got %+v", m)
	}
	reports, err := pub.e.PublishMany(ctxT(t), "news", [][]byte{[]byte("a"), []byte("b")})
	if err != nil || len(reports) != 2 || reports[1].Seq != 3 || reports[1].Delivered != 1 {
		t.Fatalf("PublishMany %+v, %v", reports, err)
	}
	recvN(t, s, 2)
	s.Unsubscribe()
	s.Unsubscribe()
	if _, err := s.Recv(ctxT(t)); !errors.Is(err, ErrUnsubscribed) {
		t.Fatalf("Recv after Unsubscribe: %v", err)
	}
	if got := pub.e.Subscribers("news"); len(got) != 0 {
		t.Fatalf("publisher still has %v", got)
	}
	if r, _ := pub.e.Publish(ctxT(t), "news", []byte("x")); r.Attempted != 0 {
		t.Fatalf("published to a leaver: %+v", r)
	}
	// Subscribing again works.
	s2 := mustSubscribe(t, sub, pub, "news", nil)
	s2.Unsubscribe()
	st := pub.e.Stats()
	if st.Acks != 2 || st.Unsubscribes != 2 || st.Published != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPublishErrors(t *testing.T) {
	net := newFakeNet(t)
	pub, sub := net.add(Options{}, "sensor"), net.add(Options{})
	if _, err := pub.e.Publish(ctxT(t), "nope", nil); !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("unknown: %v", err)
	}
	mustRegister(t, pub, "gpu-only", Config{PublishCaps: capability.HasTag("gpu")})
	s := mustSubscribe(t, sub, pub, "gpu-only", nil)
	if r, err := pub.e.Publish(ctxT(t), "gpu-only", []byte("x")); !errors.Is(err, ErrUnauthorized) || r.Attempted != 0 {
		t.Fatalf("publisher without caps: %+v %v", r, err)
	}
	pub.setTags("sensor", "gpu")
	if r, err := pub.e.Publish(ctxT(t), "gpu-only", []byte("x")); err != nil || r.Delivered != 1 {
		t.Fatalf("publisher with caps: %+v %v", r, err)
	}
	if m := recvN(t, s, 1)[0]; m.Seq != 1 {
		t.Fatalf("the refused publish used a sequence number: %+v", m)
	}
	if _, err := pub.e.Publish(ctxT(t), "gpu-only", make([]byte, MaxPayloadSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pub.e.Publish(ctx, "gpu-only", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	// A subscriber whose session is gone is a failure with its reason.
	sub.setDown(true)
	r, err := pub.e.Publish(ctxT(t), "gpu-only", []byte("x"))
	if err != nil || r.Delivered != 0 || len(r.Failures) != 1 || !errors.Is(r.Failures[0].Err, errUnreachable) || r.Failures[0].Peer != sub.ID() {
		t.Fatalf("unreachable: %+v %v", r, err)
	}
	if err := pub.e.Register("Bad Name", Config{}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
	if err := pub.e.Register("x", Config{MaxSubscribers: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad config: %v", err)
	}
}

// TestRejections runs every rejection reason end to end and checks that
// the caller can tell them apart with errors.As and errors.Is.
func TestRejections(t *testing.T) {
	net := newFakeNet(t)
	authority := testIdentity(t)
	pub := net.add(Options{Subnet: SubnetID{3, 1, 0, 0}, Policy: SubnetPolicy{Rules: []SubnetRule{{Tag: "region:us", Subnet: SubnetID{4}}}}})
	sub := net.add(Options{}, "worker")
	other := net.add(Options{}, "worker")
	mustRegister(t, pub, "caps", Config{SubscribeCaps: capability.HasTag("gpu")})
	mustRegister(t, pub, "local", Config{Visibility: SubnetLocal})
	mustRegister(t, pub, "tok", Config{RequireToken: true, TokenIssuers: []ed25519.PublicKey{authority.PublicKey()}})
	mustRegister(t, pub, "full", Config{MaxSubscribers: 1})
	mustSubscribe(t, other, pub, "full", nil)

	now := net.clock.Now()
	hour := now.Add(time.Hour)
	stranger := testIdentity(t)
	otherTok := issue(t, pub.id, other, "tok", now, hour)
	forged := *issue(t, pub.id, sub, "tok", now, hour)
	forged.Signature = append([]byte(nil), forged.Signature...)
	forged.Signature[0] ^= 1

	cases := []struct {
		name    string
		channel string
		tok     *identity.PermissionToken
		reason  Reason
		problem TokenProblem
		is      []error
	}{
		{"unknown channel", "nope", nil, ReasonUnknownChannel, TokenOK, []error{ErrUnknownChannel}},
		{"capabilities", "caps", nil, ReasonCapabilities, TokenOK, []error{ErrUnauthorized}},
		{"subnet", "local", nil, ReasonSubnet, TokenOK, []error{ErrUnauthorized}},
		{"too many", "full", nil, ReasonTooManySubscribers, TokenOK, []error{ErrTooManySubscribers}},
		{"token missing", "tok", nil, ReasonToken, TokenMissing, []error{ErrUnauthorized, ErrTokenRequired}},
		{"token expired", "tok", issue(t, pub.id, sub, "tok", now.Add(-2*time.Hour), now.Add(-time.Hour)), ReasonToken, TokenExpired, []error{identity.ErrTokenExpired}},
		{"token early", "tok", issue(t, pub.id, sub, "tok", hour, hour.Add(time.Hour)), ReasonToken, TokenNotYetValid, []error{identity.ErrTokenNotYetValid}},
		{"token other subject", "tok", otherTok, ReasonToken, TokenWrongSubject, []error{identity.ErrTokenWrongSubject}},
		{"token other channel", "tok", issue(t, pub.id, sub, "tok2", now, hour), ReasonToken, TokenNotPermitted, []error{identity.ErrTokenNotPermitted}},
		{"token untrusted", "tok", issue(t, stranger, sub, "tok", now, hour), ReasonToken, TokenUntrustedIssuer, []error{identity.ErrTokenUntrustedIssuer}},
		{"token forged", "tok", &forged, ReasonToken, TokenBadSignature, []error{identity.ErrTokenSignature}},
	}
	for _, c := range cases {
		_, err := sub.e.Subscribe(ctxT(t), pub.ID(), c.channel, c.tok)
		var re *RejectError
		if !errors.As(err, &re) || re.Reason != c.reason || re.Token != c.problem || re.Evicted || re.Publisher != pub.ID() || re.Channel != c.channel {
			t.Errorf("%s: got %v (%+v)", c.name, err, re)
			continue
		}
		for _, want := range c.is {
			if !errors.Is(err, want) {
				t.Errorf("%s: %v is not %v", c.name, err, want)
			}
		}
	}
	// The authority's token and the publisher's own both work.
	s1 := mustSubscribe(t, sub, pub, "tok", issue(t, authority, sub, "tok", now, hour))
	s1.Unsubscribe()
	mustSubscribe(t, sub, pub, "tok", issue(t, pub.id, sub, "tok", now, hour)).Unsubscribe()

	// A malformed token on the wire (the Subscribe API cannot send one).
	m := message{typ: msgSubscribe, reqID: 99, name: []byte("tok"), token: make([]byte, identity.MinTokenSize)}
	var got message
	rec := &capture{Transport: pub}
	pub.e.tr = rec
	if err := pub.e.HandleMessage(sub.ID(), m.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	pub.e.tr = pub
	if got, _ = decode(rec.last); got.typ != msgReject || got.reason != ReasonToken || got.problem != TokenMalformed {
		t.Fatalf("malformed token answered %+v", got)
	}
	st := pub.e.Stats()
	if st.RejectedUnknown != 1 || st.RejectedCaps != 1 || st.RejectedSubnet != 1 || st.RejectedFull != 1 || st.RejectedToken != 8 {
		t.Fatalf("stats %+v", st)
	}
}

// capture is a Transport that records the last message sent.
type capture struct {
	Transport
	last []byte
}

func (c *capture) Send(_ identity.NodeID, msg []byte) error {
	c.last = msg
	return nil
}

func TestRateLimited(t *testing.T) {
	net := newFakeNet(t)
	cache := identity.NewTokenCache(0)
	pub := net.add(Options{TokenCache: cache})
	sub := net.add(Options{})
	mustRegister(t, pub, "tok", Config{RequireToken: true})
	now := net.clock.Now()
	bad := func() *identity.PermissionToken {
		// A fresh forged token each time: each costs the publisher a
		// signature verification until the limiter steps in.
		tk := issue(t, pub.id, sub, "tok", now, now.Add(time.Hour))
		tk.Signature[5] ^= 1
		return tk
	}
	for i := range DefaultAuthFailureLimit {
		_, err := sub.e.Subscribe(ctxT(t), pub.ID(), "tok", bad())
		if !errors.Is(err, identity.ErrTokenSignature) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	_, misses := cache.Stats()
	for range 100 {
		if _, err := sub.e.Subscribe(ctxT(t), pub.ID(), "tok", bad()); !errors.Is(err, ErrRateLimited) {
			t.Fatalf("storm: %v", err)
		}
	}
	if _, m := cache.Stats(); m != misses {
		t.Fatalf("throttled requests verified %d signatures", m-misses)
	}
	// Even a good token is refused while throttled; other peers are not.
	good := issue(t, pub.id, sub, "tok", now, now.Add(time.Hour))
	if _, err := sub.e.Subscribe(ctxT(t), pub.ID(), "tok", good); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("good token while throttled: %v", err)
	}
	third := net.add(Options{})
	mustSubscribe(t, third, pub, "tok", issue(t, pub.id, third, "tok", now, now.Add(time.Hour)))
	net.clock.Advance(DefaultAuthThrottle)
	mustSubscribe(t, sub, pub, "tok", good)
	if st := pub.e.Stats(); st.RejectedRateLimited != 101 {
		t.Fatalf("stats %+v", st)
	}
	// Tick forgets idle limiter entries.
	net.clock.Advance(DefaultAuthFailureWindow + DefaultSweepInterval)
	pub.e.Tick()
	if n := len(pub.e.lim.peers); n != 0 {
		t.Fatalf("limiter holds %d peers", n)
	}
}

func TestLimiterFullFailsClosed(t *testing.T) {
	l := newLimiter(Options{AuthFailureLimit: 2, AuthFailureWindow: time.Minute, AuthThrottle: time.Minute})
	l.max = 1
	now := time.Unix(0, 0)
	a, b := identity.NodeID{1}, identity.NodeID{2}
	l.fail(a, now)
	if l.throttled(a, now) || !l.throttled(b, now) {
		t.Fatal("a tracked and not over the limit; b untracked in a full table")
	}
	l.fail(b, now) // not tracked
	l.fail(a, now)
	if !l.throttled(a, now) || !l.throttled(a, now.Add(59*time.Second)) || l.throttled(a, now.Add(time.Minute)) {
		t.Fatal("throttle period")
	}
	off := newLimiter(Options{AuthFailureLimit: -1})
	off.fail(a, now)
	if off.throttled(a, now) {
		t.Fatal("disabled limiter throttles")
	}
}

// TestTokenExpiry: a subscriber whose token expires stops receiving at the
// next publish, and an idle channel evicts it within one sweep.
func TestTokenExpiry(t *testing.T) {
	net := newFakeNet(t)
	pub, sub, keep := net.add(Options{}), net.add(Options{}), net.add(Options{})
	mustRegister(t, pub, "t", Config{RequireToken: true})
	now := net.clock.Now()
	s := mustSubscribe(t, sub, pub, "t", issue(t, pub.id, sub, "t", now, now.Add(10*time.Second)))
	k := mustSubscribe(t, keep, pub, "t", issue(t, pub.id, keep, "t", now, now.Add(time.Hour)))
	if r, _ := pub.e.Publish(ctxT(t), "t", []byte("1")); r.Delivered != 2 {
		t.Fatalf("%+v", r)
	}
	net.clock.Advance(10 * time.Second)
	r, err := pub.e.Publish(ctxT(t), "t", []byte("2"))
	if err != nil || r.Attempted != 2 || r.Delivered != 1 || len(r.Failures) != 1 {
		t.Fatalf("%+v %v", r, err)
	}
	var re *RejectError
	if f := r.Failures[0]; f.Peer != sub.ID() || !errors.As(f.Err, &re) || !re.Evicted || re.Token != TokenExpired {
		t.Fatalf("failure %+v", f)
	}
	recvN(t, s, 1)
	if _, err := s.Recv(ctxT(t)); !errors.As(err, &re) || !re.Evicted || !errors.Is(err, identity.ErrTokenExpired) {
		t.Fatalf("subscriber sees %v", err)
	}
	if r, _ := pub.e.Publish(ctxT(t), "t", []byte("3")); r.Attempted != 1 {
		t.Fatalf("evicted subscriber still attempted: %+v", r)
	}
	recvN(t, k, 3)

	// Sweep: no publish at all.
	now = net.clock.Now()
	s2 := mustSubscribe(t, sub, pub, "t", issue(t, pub.id, sub, "t", now, now.Add(5*time.Second)))
	net.clock.Advance(DefaultSweepInterval)
	pub.e.Tick()
	if _, err := s2.Recv(ctxT(t)); !errors.Is(err, identity.ErrTokenExpired) {
		t.Fatalf("after sweep: %v", err)
	}
	if got := pub.e.Subscribers("t"); len(got) != 1 || got[0] != keep.ID() {
		t.Fatalf("subscribers %v", got)
	}
	if pub.e.Stats().Sweeps != 1 {
		t.Fatal("sweep not counted")
	}
}

func TestRevoke(t *testing.T) {
	net := newFakeNet(t)
	pub, sub := net.add(Options{}), net.add(Options{})
	mustRegister(t, pub, "t", Config{RequireToken: true})
	now := net.clock.Now()
	tok := issue(t, pub.id, sub, "t", now, now.Add(time.Hour))
	s := mustSubscribe(t, sub, pub, "t", tok)
	// Revoking other tokens (many, to fill the bloom filter a little)
	// leaves the subscriber alone.
	for i := range 200 {
		if err := pub.e.Revoke([16]byte{byte(i), byte(i >> 8), 7}, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := pub.e.Publish(ctxT(t), "t", nil); r.Delivered != 1 {
		t.Fatalf("%+v", r)
	}
	if err := pub.e.Revoke(tok.ID, tok.Expiry); err != nil {
		t.Fatal(err)
	}
	if r, _ := pub.e.Publish(ctxT(t), "t", nil); r.Delivered != 0 || len(r.Failures) != 1 || !errors.Is(r.Failures[0].Err, ErrTokenRevoked) {
		t.Fatalf("%+v", r)
	}
	recvN(t, s, 1)
	if _, err := s.Recv(ctxT(t)); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("subscriber sees %v", err)
	}
	if _, err := sub.e.Subscribe(ctxT(t), pub.ID(), "t", tok); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("revoked token admitted: %v", err)
	}
	// Revocations are forgotten when the tokens expire.
	net.clock.Advance(time.Hour + DefaultSweepInterval)
	pub.e.Tick()
	if n := len(pub.e.revoked.Load().ids); n != 0 {
		t.Fatalf("%d revocations kept", n)
	}
}

// TestConfigChanges: replacing a channel's config and changing a
// subscriber's announcement both evict at once or at the next sweep.
func TestConfigChanges(t *testing.T) {
	net := newFakeNet(t)
	pub, sub := net.add(Options{}), net.add(Options{}, "gpu")
	mustRegister(t, pub, "c", Config{SubscribeCaps: capability.HasTag("gpu")})
	s := mustSubscribe(t, sub, pub, "c", nil)
	sub.setTags("cpu")
	net.clock.Advance(DefaultSweepInterval - time.Second)
	pub.e.Tick() // not due yet
	if len(pub.e.Subscribers("c")) != 1 {
		t.Fatal("evicted before the sweep")
	}
	net.clock.Advance(time.Second)
	pub.e.Tick()
	if _, err := s.Recv(ctxT(t)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("after caps change: %v", err)
	}
}

func TestRegisterReplaceAndUnregister(t *testing.T) {
	net := newFakeNet(t)
	pub, a, b := net.add(Options{}), net.add(Options{}), net.add(Options{})
	mustRegister(t, pub, "c", Config{})
	sa := mustSubscribe(t, a, pub, "c", nil)
	now := net.clock.Now()
	// b re-subscribes after the config change with a token.
	mustRegister(t, pub, "c", Config{RequireToken: true})
	if _, err := sa.Recv(ctxT(t)); !errors.Is(err, ErrTokenRequired) {
		t.Fatalf("tokenless subscriber after RequireToken: %v", err)
	}
	sb := mustSubscribe(t, b, pub, "c", issue(t, pub.id, b, "c", now, now.Add(time.Hour)))
	if r, _ := pub.e.Publish(ctxT(t), "c", []byte("x")); r.Delivered != 1 {
		t.Fatalf("%+v", r)
	}
	pub.e.Unregister("c")
	pub.e.Unregister("c")
	recvN(t, sb, 1)
	if _, err := sb.Recv(ctxT(t)); !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("after Unregister: %v", err)
	}
	if pub.e.Subscribers("c") != nil {
		t.Fatal("subscribers of an unregistered channel")
	}
}

func TestPublishTokenForAuthority(t *testing.T) {
	net := newFakeNet(t)
	authority := testIdentity(t)
	pub := net.add(Options{})
	now := net.clock.Now()
	grant := func(ch string, exp time.Time) *identity.PermissionToken {
		tk, err := identity.IssueToken(authority, identity.TokenGrant{Subject: pub.id.PublicKey(), Perms: identity.PermPublish, Channel: ch, NotBefore: now, Expiry: exp})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	issuers := []ed25519.PublicKey{authority.PublicKey()}
	if err := pub.e.Register("c", Config{PublishToken: grant("other", now.Add(time.Hour)), TokenIssuers: issuers}); !errors.Is(err, identity.ErrTokenNotPermitted) {
		t.Fatalf("token for another channel: %v", err)
	}
	if err := pub.e.Register("c", Config{PublishToken: grant("c", now.Add(time.Minute)), TokenIssuers: issuers}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.e.Publish(ctxT(t), "c", nil); err != nil {
		t.Fatal(err)
	}
	net.clock.Advance(time.Minute)
	if _, err := pub.e.Publish(ctxT(t), "c", nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("expired publish token: %v", err)
	}
}

func TestSubscribeTimeoutAndLateAck(t *testing.T) {
	net := newFakeNet(t)
	pub, sub := net.add(Options{}), net.add(Options{})
	mustRegister(t, pub, "c", Config{})
	pub.setDown(true)
	if _, err := sub.e.Subscribe(ctxT(t), pub.ID(), "c", nil); !errors.Is(err, errUnreachable) {
		t.Fatalf("unreachable: %v", err)
	}
	pub.setDown(false)
	// The publisher admits, but the ack is lost.
	sub.setDown(true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := sub.e.Subscribe(ctx, pub.ID(), "c", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lost ack: %v", err)
	}
	sub.setDown(false)
	if len(sub.e.waiters) != 0 || len(sub.e.subs) != 0 {
		t.Fatal("state left after a failed subscribe")
	}
	// Subscribe told the publisher to drop the admission it never heard
	// of.
	if got := pub.e.Subscribers("c"); len(got) != 0 {
		t.Fatalf("publisher kept %v", got)
	}
	// A subscriber that forgot a subscription without telling (its
	// unsubscribe was lost) answers the next publish with an unsubscribe.
	s := mustSubscribe(t, sub, pub, "c", nil)
	sub.e.mu.Lock()
	sub.e.forgetLocked(s)
	sub.e.mu.Unlock()
	if r, _ := pub.e.Publish(ctxT(t), "c", nil); r.Delivered != 1 {
		t.Fatalf("%+v", r)
	}
	if len(pub.e.Subscribers("c")) != 0 || sub.e.Stats().Stray != 1 {
		t.Fatalf("stray publish not answered: %v %+v", pub.e.Subscribers("c"), sub.e.Stats())
	}
	// Answers from the wrong peer or for unknown requests are ignored.
	other := net.add(Options{})
	if err := sub.e.HandleMessage(other.ID(), (&message{typ: msgAck, reqID: 1, pending: 1}).appendTo(nil)); err != nil {
		t.Fatal(err)
	}
}

// TestSlowConsumer: a subscriber that does not read keeps at most its
// pending limit, counts the rest, and is told where it lost messages.
func TestSlowConsumer(t *testing.T) {
	net := newFakeNet(t)
	pub, sub := net.add(Options{}), net.add(Options{})
	const limit = 8
	mustRegister(t, pub, "c", Config{PendingLimit: limit})
	s := mustSubscribe(t, sub, pub, "c", nil)
	for i := range 100 {
		if _, err := pub.e.Publish(ctxT(t), "c", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if s.n != limit || len(s.buf) > limit {
		t.Fatalf("queue holds %d in %d slots", s.n, len(s.buf))
	}
	msgs := recvN(t, s, limit)
	if msgs[0].Seq != 1 || msgs[limit-1].Seq != limit {
		t.Fatalf("kept %d..%d", msgs[0].Seq, msgs[limit-1].Seq)
	}
	if _, err := s.Recv(ctxT(t)); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("after drops: %v", err)
	}
	// Not terminal: the next message arrives, and drops in the middle of
	// the queue are reported in place.
	pub.e.Publish(ctxT(t), "c", []byte("a"))
	if m := recvN(t, s, 1)[0]; m.Seq != 101 {
		t.Fatalf("seq %d", m.Seq)
	}
	for range limit + 3 {
		pub.e.Publish(ctxT(t), "c", nil)
	}
	s.Unsubscribe()
	recvN(t, s, limit)
	if _, err := s.Recv(ctxT(t)); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("tail drops: %v", err)
	}
	if _, err := s.Recv(ctxT(t)); !errors.Is(err, ErrUnsubscribed) {
		t.Fatalf("end: %v", err)
	}
	st := s.Stats()
	if st.Received != limit+1+limit || st.Dropped != 100-limit+3 || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
	if sub.e.Stats().Dropped != st.Dropped {
		t.Fatal("engine drop counter")
	}
}

func TestRecvContextAndIterator(t *testing.T) {
	net := newFakeNet(t)
	pub, sub := net.add(Options{}), net.add(Options{})
	mustRegister(t, pub, "c", Config{PendingLimit: 2})
	s := mustSubscribe(t, sub, pub, "c", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv on empty: %v", err)
	}
	pub.e.PublishMany(ctxT(t), "c", [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	var got []string
	var errs []error
	for m, err := range s.Messages(ctxT(t)) {
		if err != nil {
			errs = append(errs, err)
			break
		}
		got = append(got, string(m.Payload))
	}
	// Lost in transit: the subscriber sees a gap in Seq.
	pub.e.channels["c"].seq.Add(2)
	pub.e.Publish(ctxT(t), "c", []byte("d"))
	for m, err := range s.Messages(ctxT(t)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(m.Payload))
		s.Unsubscribe() // the loop ends without an error
	}
	if fmt.Sprint(got) != "[a b d]" || len(errs) != 1 || !errors.Is(errs[0], ErrSlowConsumer) {
		t.Fatalf("got %v, errors %v", got, errs)
	}
	if s.Stats().Lost != 2 {
		t.Fatalf("lost %d", s.Stats().Lost)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed")
	}
	// An eviction ends the iteration with its error.
	s2 := mustSubscribe(t, sub, pub, "c", nil)
	pub.e.Unregister("c")
	var last error
	for _, err := range s2.Messages(ctxT(t)) {
		last = err
	}
	if !errors.Is(last, ErrUnknownChannel) {
		t.Fatalf("iteration ended with %v", last)
	}
}

// TestVisibilityMatrix checks every visibility against a subscriber in the
// same subnet, a sibling, the parent, a child, an unrelated subnet and no
// subnet, with subnets derived from announced tags by the shared policy.
func TestVisibilityMatrix(t *testing.T) {
	policy := SubnetPolicy{Rules: []SubnetRule{
		{Tag: "rack:7", Subnet: SubnetID{3, 1, 7}},
		{Tag: "rack:8", Subnet: SubnetID{3, 1, 8}},
		{Tag: "zone:1", Subnet: SubnetID{3, 1}},
		{Tag: "region:eu", Subnet: SubnetID{3}},
		{Tag: "region:us", Subnet: SubnetID{4}},
	}}
	net := newFakeNet(t)
	pub := net.add(Options{Policy: policy}, "zone:1", "region:eu") // 3.1.0.0
	subs := map[string]*fakeNode{
		"same":      net.add(Options{Policy: policy}, "zone:1"),
		"parent":    net.add(Options{Policy: policy}, "region:eu"),
		"child":     net.add(Options{Policy: policy}, "rack:7", "zone:1"),
		"sibling":   net.add(Options{Policy: policy}, "zone:2"), // pinned below
		"unrelated": net.add(Options{Policy: policy}, "region:us"),
		"none":      net.add(Options{Policy: policy}),
	}
	subs["sibling"].setTags(SubnetTag(SubnetID{3, 2}))
	want := map[Visibility]map[string]bool{
		Global:        {"same": true, "parent": true, "child": true, "sibling": true, "unrelated": true, "none": true},
		SubnetLocal:   {"same": true},
		ParentVisible: {"same": true, "parent": true, "child": true},
	}
	for v, ok := range want {
		name := v.String()
		mustRegister(t, pub, name, Config{Visibility: v})
		for who, n := range subs {
			s, err := n.e.Subscribe(ctxT(t), pub.ID(), name, nil)
			switch {
			case ok[who] && err != nil:
				t.Errorf("%s/%s: %v", name, who, err)
			case !ok[who] && !errors.Is(err, ErrUnauthorized):
				t.Errorf("%s/%s: want subnet rejection, got %v", name, who, err)
			case err == nil:
				s.Unsubscribe()
			}
		}
	}
	// A pinned own subnet overrides the policy: pinned to 3.2.0.0 the
	// publisher's subnet-local channel admits the sibling only.
	pinned := net.add(Options{Policy: policy, Subnet: SubnetID{3, 2}}, "zone:1")
	mustRegister(t, pinned, "local", Config{Visibility: SubnetLocal})
	if _, err := subs["same"].e.Subscribe(ctxT(t), pinned.ID(), "local", nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("same-by-policy: %v", err)
	}
	mustSubscribe(t, subs["sibling"], pinned, "local", nil).Unsubscribe()
}

// TestFanOutInOrder: 100 subscribers, 10,000 messages, each subscriber
// gets all of them in order while consumers read concurrently. The async
// variant runs a smaller load through an inbox goroutine per node, as the
// mesh delivers.
func TestFanOutInOrder(t *testing.T) {
	for _, c := range []struct {
		name         string
		async        bool
		nSubs, nMsgs int
	}{{"sync", false, 100, 10_000}, {"async", true, 20, 1_000}} {
		t.Run(c.name, func(t *testing.T) {
			net := newFakeNet(t)
			net.async = c.async
			fanOut(t, net, c.nSubs, c.nMsgs)
		})
	}
}

func fanOut(t *testing.T, net *fakeNet, nSubs, nMsgs int) {
	// A million deliveries take seconds on a quiet machine and minutes on
	// a starved one, so the test fails when deliveries stop, not when a
	// total budget runs out.
	var delivered atomic.Int64
	ctx := testenv.StallContext(t, &delivered, 30*time.Second)
	pub := net.add(Options{})
	mustRegister(t, pub, "firehose", Config{PendingLimit: nMsgs})
	var wg sync.WaitGroup
	errs := make(chan error, nSubs)
	for range nSubs {
		s := mustSubscribe(t, net.add(Options{}), pub, "firehose", nil)
		wg.Go(func() {
			defer s.Unsubscribe()
			for i := range nMsgs {
				m, err := s.Recv(ctx)
				if err != nil {
					errs <- err
					return
				}
				if m.Seq != uint64(i+1) || string(m.Payload) != fmt.Sprint(i) {
					errs <- fmt.Errorf("message %d is seq %d payload %q", i, m.Seq, m.Payload)
					return
				}
				delivered.Add(1)
			}
		})
	}
	for i := range nMsgs {
		r, err := pub.e.Publish(ctx, "firehose", fmt.Append(nil, i))
		if err != nil || r.Delivered != nSubs {
			t.Fatalf("publish %d: %+v %v", i, r, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestHandleMessageMalformed(t *testing.T) {
	net := newFakeNet(t)
	n := net.add(Options{})
	for _, b := range [][]byte{nil, {1}, {9, 1}, {1, 2}} {
		if err := n.e.HandleMessage(identity.NodeID{1}, b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: %v", b, err)
		}
	}
	if n.e.Stats().Malformed != 4 {
		t.Fatal("malformed not counted")
	}
	if _, err := New(nil, n, Options{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatal("nil identity")
	}
	if _, err := New(n.id, n, Options{Subnet: SubnetID{0, 1}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatal("invalid subnet")
	}
	if _, err := New(n.id, n, Options{Policy: SubnetPolicy{Rules: []SubnetRule{{Tag: "x"}}}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatal("invalid policy")
	}
}
