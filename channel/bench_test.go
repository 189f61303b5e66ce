package channel

import (
	"context"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// authFixture is a subscriber admitted with a token and a revocation set
// holding other tokens, as the publish fast path sees them.
func authFixture(tb testing.TB) (*subscriber, *revocations, int64) {
	iss := testIdentity(tb)
	now := time.Unix(1_700_000_000, 0)
	tok, err := identity.IssueToken(iss, identity.TokenGrant{Subject: iss.PublicKey(), Perms: identity.PermSubscribe, Channel: "c", NotBefore: now, Expiry: now.Add(time.Hour)})
	if err != nil {
		tb.Fatal(err)
	}
	revoked := make(map[[identity.TokenIDSize]byte]time.Time)
	for i := range 100 {
		revoked[[16]byte{byte(i), 1, byte(i), 2}] = now.Add(time.Hour)
	}
	return newSubscriber(identity.NodeID{1}, tok), (*revocations)(nil).with(revoked, now), now.UnixNano()
}

func TestAuthorizedAllocs(t *testing.T) {
	s, rv, now := authFixture(t)
	if n := testing.AllocsPerRun(1000, func() {
		if !s.authorized(now, rv) {
			t.Fatal("not authorized")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

// BenchmarkAuthorize is the per-subscriber check on every publish
// (target: under 50 ns, 0 allocations).
func BenchmarkAuthorize(b *testing.B) {
	s, rv, now := authFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		if !s.authorized(now, rv) {
			b.Fatal("not authorized")
		}
	}
}

// BenchmarkFanOut publishes 64-byte messages to 100 subscribers over the
// synchronous in-memory transport, each subscriber draining its queue:
// it measures the engine (encode, auth, 100 Sends, decode and queue on
// the subscriber side), not a network.
func BenchmarkFanOut(b *testing.B) {
	net := newFakeNet(b)
	pub := net.add(Options{})
	mustRegister(b, pub, "bench", Config{PendingLimit: MaxPendingLimit})
	const nSubs = 100
	subs := make([]*Subscription, nSubs)
	for i := range subs {
		subs[i] = mustSubscribe(b, net.add(Options{}), pub, "bench", nil)
	}
	payload := make([]byte, 64)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r, err := pub.e.Publish(ctx, "bench", payload); err != nil || r.Delivered != nSubs {
			b.Fatal(r, err)
		}
		for _, s := range subs {
			if _, err := s.Recv(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*nSubs)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
	for _, s := range subs {
		s.Unsubscribe()
	}
}
