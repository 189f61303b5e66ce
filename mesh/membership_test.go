package mesh_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/membership"
	"github.com/netmesh/netmesh/mesh"
)

func newAuthority(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func certFor(t testing.TB, ca *identity.Identity, key ed25519.PublicKey, nb time.Time, d time.Duration, groups ...string) *identity.Certificate {
	t.Helper()
	c, err := identity.IssueCertificate(ca, identity.CertificateTemplate{
		NodeKey: key, Name: "member", Groups: groups, NotBefore: nb, NotAfter: nb.Add(d),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// memberOf makes a node a member of ca's closed mesh with a certificate
// valid for d from now.
func memberOf(t testing.TB, ca *identity.Identity, d time.Duration, groups ...string) func(*mesh.Config) {
	return func(c *mesh.Config) {
		if c.Identity == nil {
			c.Identity, _ = identity.Generate()
		}
		c.Membership.Authorities = append(c.Membership.Authorities, ca.PublicKey())
		c.Membership.Certificate = certFor(t, ca, c.Identity.PublicKey(), time.Now(), d, groups...)
	}
}

// issuerOf makes a node hold ca's key.
func issuerOf(ca *identity.Identity) func(*mesh.Config) {
	return func(c *mesh.Config) { c.Membership.Authority = ca }
}

func up(a, b *mesh.Mesh) bool {
	p := a.Peer(b.ID())
	return p != nil && p.IsUp()
}

// TestNonMemberRefusedThroughRelay: a node without a certificate that
// reaches a member through a relay (one that lets anyone in) is refused
// by the member, and told why.
func TestNonMemberRefusedThroughRelay(t *testing.T) {
	ca := newAuthority(t)
	m := newNode(t, memberOf(t, ca, time.Hour))
	relay := newNode(t, func(c *mesh.Config) {
		c.Identity, _ = identity.Generate()
		c.Membership.Certificate = certFor(t, ca, c.Identity.PublicKey(), time.Now(), time.Hour) // a member, open itself
	})
	n := newNode(t)
	connect(t, m, relay, mesh.Pin{Key: relay.Identity().PublicKey()})
	connect(t, n, relay, mesh.Pin{Key: relay.Identity().PublicKey()})
	n.AddRoute(m.ID(), relay.ID())
	for _, key := range []ed25519.PublicKey{m.Identity().PublicKey(), nil} { // IK, then XX
		_, err := n.ConnectNode(ctxT(t), m.ID(), key)
		var me *mesh.MembershipError
		if !errors.As(err, &me) || !me.Remote || me.Reason != membership.ReasonNoCertificate {
			t.Fatalf("through the relay: %v, want a refusal for lack of a certificate", err)
		}
	}
	if m.Peer(n.ID()) != nil {
		t.Fatal("the member kept a peer for the non-member")
	}
}

// TestPairing: a new node pairs with the node that handed out a code,
// receives its certificate, and with it joins the closed mesh.
func TestPairing(t *testing.T) {
	ca := newAuthority(t)
	iss := newNode(t, issuerOf(ca))
	code, err := iss.NewPairingCode(membership.Grant{Name: "laptop", Groups: []string{"dev"}, ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	nid, _ := identity.Generate()
	n := newNode(t, func(c *mesh.Config) { c.Identity = nid })
	cert, err := n.Pair(ctxT(t), iss.Addr(), iss.ID(), code)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Name != "laptop" || !cert.InGroup("dev") || !slicesEqual(cert.NodeKey, nid.PublicKey()) || !slicesEqual(cert.Authority, ca.PublicKey()) {
		t.Fatalf("paired certificate %v", cert)
	}
	if n.Certificate() != cert {
		t.Fatal("the pairing node does not present its new certificate")
	}
	eventually(t, 5*time.Second, "the issuer to see the new member's certificate", func() bool {
		p := iss.Peer(n.ID())
		return p != nil && p.IsUp() && p.Certificate().InGroup("dev")
	})
	// With its certificate, the node joins another member of the mesh.
	other := newNode(t, memberOf(t, ca, time.Hour))
	joined := newNode(t, func(c *mesh.Config) {
		c.Identity = nid
		c.Membership.Authorities = []ed25519.PublicKey{cert.Authority}
		c.Membership.Certificate = cert
	})
	connect(t, joined, other, mesh.Pin{})
}

func slicesEqual(a, b []byte) bool { return string(a) == string(b) }

// TestPairingRefusals: wrong, reused and expired codes are refused, each
// with its reason, and the issuer counts each.
func TestPairingRefusals(t *testing.T) {
	ca := newAuthority(t)
	iss := newNode(t, issuerOf(ca))
	pair := func(code membership.Code) error {
		n := newNode(t)
		_, err := n.Pair(ctxT(t), iss.Addr(), iss.ID(), code)
		return err
	}
	refused := func(err error, want membership.Reason) {
		t.Helper()
		var me *mesh.MembershipError
		if !errors.As(err, &me) || !me.Remote || me.Reason != want {
			t.Fatalf("%v, want a refusal: %s", err, want)
		}
	}
	var wrong membership.Code
	wrong[0] = 1
	refused(pair(wrong), membership.ReasonPairingCode)

	code, _ := iss.NewPairingCode(membership.Grant{Name: "once"})
	if err := pair(code); err != nil {
		t.Fatal(err)
	}
	refused(pair(code), membership.ReasonPairingReused)

	short, _ := iss.NewPairingCode(membership.Grant{Name: "short", CodeLifetime: time.Second})
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Until(deadline))
	}
	refused(pair(short), membership.ReasonPairingExpired)

	for _, r := range []string{"pairing_code", "pairing_reused", "pairing_expired"} {
		if iss.Stats().Drops[r] == 0 {
			t.Errorf("%s not counted: %v", r, iss.Stats().Drops)
		}
	}
	// A node that holds no authority key pairs no one.
	plain := newNode(t)
	n := newNode(t)
	_, err := n.Pair(ctxT(t), plain.Addr(), plain.ID(), code)
	refused(err, membership.ReasonNotIssuer)
}

// TestPairingBruteForce: guesses from one source are throttled after the
// burst, so even the right code is refused while the source's budget is
// spent.
func TestPairingBruteForce(t *testing.T) {
	const burst = 3
	ca := newAuthority(t)
	iss := newNode(t, issuerOf(ca), func(c *mesh.Config) {
		c.Membership.PairingBurst = burst
		c.Membership.PairingInterval = time.Hour
	})
	code, _ := iss.NewPairingCode(membership.Grant{Name: "target"})
	n := newNode(t)
	reasons := map[membership.Reason]int{}
	for i := range 12 {
		var guess membership.Code
		guess[0], guess[1] = byte(i), 0xAA
		_, err := n.Pair(ctxT(t), iss.Addr(), iss.ID(), guess)
		var me *mesh.MembershipError
		if !errors.As(err, &me) {
			t.Fatalf("guess %d: %v", i, err)
		}
		reasons[me.Reason]++
	}
	if reasons[membership.ReasonPairingCode] != burst || reasons[membership.ReasonPairingRateLimited] != 12-burst {
		t.Fatalf("refusals %v", reasons)
	}
	_, err := n.Pair(ctxT(t), iss.Addr(), iss.ID(), code)
	if !errors.Is(err, membership.ErrPairingRateLimited) {
		t.Fatalf("the right code from a throttled source: %v", err)
	}
	if got := iss.Stats().Drops["pairing_rate_limited"]; got != 12-burst+1 {
		t.Fatalf("rate limited %d times", got)
	}
}

// TestRenewalUnderTraffic: a member's certificate is renewed online by
// the issuer while it streams to another member; the other member learns
// the new certificate, the old one expires, and the session never drops.
func TestRenewalUnderTraffic(t *testing.T) {
	ca := newAuthority(t)
	iss := newNode(t, issuerOf(ca))
	var saved atomic.Pointer[identity.Certificate]
	a := newNode(t, memberOf(t, ca, 9*time.Second), func(c *mesh.Config) {
		c.Membership.OnCertificate = func(c *identity.Certificate) { saved.Store(c) }
	})
	b := newNode(t, memberOf(t, ca, time.Hour))
	first := a.Certificate()
	connect(t, a, iss, mesh.Pin{Key: iss.Identity().PublicKey()})
	pb := connect(t, a, b, mesh.Pin{Key: b.Identity().PublicKey()})
	eventually(t, 5*time.Second, "b up", func() bool { return up(b, a) })

	ctx, cancel := context.WithCancel(context.Background())
	downs := make(chan mesh.PeerEvent, 16)
	go func() {
		for ev := range b.WatchPeers(ctx) {
			if ev.Peer == a.ID() && !ev.Up {
				downs <- ev
			}
		}
	}()
	s, err := a.OpenStream(ctxT(t), pb, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var sendErr error
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := s.SendBlocking(ctx, make([]byte, 512)); err != nil && ctx.Err() == nil {
				sendErr = err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	wg.Go(func() {
		for {
			if _, _, err := b.AcceptStream(ctx); err != nil {
				return
			}
		}
	})
	eventually(t, 30*time.Second, "the renewed certificate at b, and the first one expired", func() bool {
		c := b.Peer(a.ID()).Certificate()
		return c != nil && c.NotAfter.After(first.NotAfter) && time.Now().After(first.NotAfter.Add(time.Second))
	})
	cancel()
	wg.Wait()
	if sendErr != nil {
		t.Fatalf("the stream broke during the renewal: %v", sendErr)
	}
	select {
	case ev := <-downs:
		t.Fatalf("the session dropped: %+v", ev)
	default:
	}
	if !up(b, a) || saved.Load() == nil || a.MembershipStats().Renewals == 0 {
		t.Fatalf("up %v, saved %v, stats %+v", up(b, a), saved.Load(), a.MembershipStats())
	}
}

// TestSetCertificateReachesPeers: a certificate replaced at run time (a
// new file) reaches the peers at once, without a new handshake.
func TestSetCertificateReachesPeers(t *testing.T) {
	ca := newAuthority(t)
	a := newNode(t, memberOf(t, ca, time.Hour, "old"))
	b := newNode(t, memberOf(t, ca, time.Hour))
	connect(t, a, b, mesh.Pin{Key: b.Identity().PublicKey()})
	eventually(t, 5*time.Second, "b up", func() bool { return up(b, a) })
	hs := b.Peer(a.ID()).Stats().Handshakes
	next := certFor(t, ca, a.Identity().PublicKey(), time.Now(), 2*time.Hour, "new")
	if err := a.SetCertificate(next); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b to see the new groups", func() bool { return b.InGroup(a.ID(), "new") })
	if b.Peer(a.ID()).Stats().Handshakes != hs {
		t.Fatal("a handshake was needed")
	}
	// Not a certificate for this node, or from an authority not trusted.
	other := newAuthority(t)
	for _, c := range []*identity.Certificate{
		certFor(t, ca, b.Identity().PublicKey(), time.Now(), time.Hour),
		certFor(t, other, a.Identity().PublicKey(), time.Now(), time.Hour),
		certFor(t, ca, a.Identity().PublicKey(), time.Now().Add(-2*time.Hour), time.Hour),
	} {
		if err := a.SetCertificate(c); err == nil {
			t.Errorf("SetCertificate(%v) accepted", c)
		}
	}
}

// TestRevocation: an authority revokes a member; the revocation reaches
// a member that is not a neighbour of the issuer, which drops its session
// with the revoked node, refuses it from then on, and still refuses it
// after a restart with the revocations it kept.
func TestRevocation(t *testing.T) {
	ca := newAuthority(t)
	iss := newNode(t, issuerOf(ca))
	var mu sync.Mutex
	var kept []*identity.Revocation
	aid, _ := identity.Generate()
	keep := func(c *mesh.Config) {
		c.Membership.OnRevocation = func(r *identity.Revocation) { mu.Lock(); kept = append(kept, r); mu.Unlock() }
	}
	a := newNode(t, func(c *mesh.Config) { c.Identity = aid }, memberOf(t, ca, time.Hour), keep)
	badID, _ := identity.Generate()
	cert := certFor(t, ca, badID.PublicKey(), time.Now(), time.Hour)
	badCert := func(c *mesh.Config) {
		c.Identity = badID
		c.Membership.Authorities = []ed25519.PublicKey{ca.PublicKey()}
		c.Membership.Certificate = cert
	}
	bad := newNode(t, badCert)
	connect(t, iss, bad, mesh.Pin{Key: bad.Identity().PublicKey()})
	connect(t, bad, a, mesh.Pin{Key: a.Identity().PublicKey()})
	mid := newNode(t, memberOf(t, ca, time.Hour))
	connect(t, iss, mid, mesh.Pin{Key: mid.Identity().PublicKey()})
	connect(t, mid, a, mesh.Pin{Key: a.Identity().PublicKey()})
	eventually(t, 5*time.Second, "a up with bad", func() bool { return up(a, bad) })

	r, err := iss.Revoke(bad.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a and the issuer to drop the revoked node", func() bool { return !up(a, bad) && !up(iss, bad) })
	// The revoked node, restarted (it is not told), is refused.
	bad.Close()
	bad = newNode(t, badCert)
	_, err = bad.Connect(ctxT(t), a.Addr(), mesh.Pin{Key: a.Identity().PublicKey()})
	if !errors.Is(err, membership.ErrRevoked) {
		t.Fatalf("revoked node reconnects: %v", err)
	}
	mu.Lock()
	saved := append([]*identity.Revocation(nil), kept...)
	mu.Unlock()
	if len(saved) != 1 || !slicesEqual(saved[0].NodeKey, r.NodeKey) {
		t.Fatalf("kept %v", saved)
	}
	if got := a.MembershipStats().Revocations; got != 1 {
		t.Fatalf("a holds %d revocations", got)
	}
	// A restarted a (new address, same key) still refuses it.
	a.Close()
	a2 := newNode(t, func(c *mesh.Config) { c.Identity = aid }, memberOf(t, ca, time.Hour), func(c *mesh.Config) {
		c.Membership.Revocations = saved
	})
	_, err = bad.Connect(ctxT(t), a2.Addr(), mesh.Pin{Key: aid.PublicKey()})
	if !errors.Is(err, membership.ErrRevoked) {
		t.Fatalf("revoked node after a's restart: %v", err)
	}
	// A revocation from an authority a does not trust changes nothing.
	other := newAuthority(t)
	forged, _ := identity.IssueRevocation(other, mid.Identity().PublicKey(), time.Now())
	if err := a2.AddRevocation(forged); !errors.Is(err, membership.ErrUntrustedRevocation) {
		t.Fatalf("untrusted revocation: %v", err)
	}
}

// TestChannelGroups: a channel that requires a group admits members whose
// certificate names it and refuses the others.
func TestChannelGroups(t *testing.T) {
	ca := newAuthority(t)
	pub := newNode(t, memberOf(t, ca, time.Hour, "publishers"))
	ops := newNode(t, memberOf(t, ca, time.Hour, "ops"))
	dev := newNode(t, memberOf(t, ca, time.Hour, "dev"))
	connect(t, ops, pub, mesh.Pin{Key: pub.Identity().PublicKey()})
	connect(t, dev, pub, mesh.Pin{Key: pub.Identity().PublicKey()})
	if err := pub.RegisterChannel("alerts", channel.Config{SubscribeGroups: []string{"ops"}, PublishGroups: []string{"publishers"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "pub up with both", func() bool { return up(pub, ops) && up(pub, dev) })
	s, err := ops.SubscribeChannel(ctxT(t), pub.ID(), "alerts", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	_, err = dev.SubscribeChannel(ctxT(t), pub.ID(), "alerts", nil)
	var re *channel.RejectError
	if !errors.As(err, &re) || re.Reason != channel.ReasonGroups {
		t.Fatalf("a member outside the group: %v", err)
	}
	if r, err := pub.Publish(ctxT(t), "alerts", []byte("disk full")); err != nil || r.Delivered != 1 {
		t.Fatalf("publish: %+v %v", r, err)
	}
	if m, err := s.Recv(ctxT(t)); err != nil || string(m.Payload) != "disk full" {
		t.Fatalf("recv %q %v", m.Payload, err)
	}
}
