package mesh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/wirevec"
	"github.com/netmesh/netmesh/membership"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// These tests play non-members against a closed mesh: they install
// certificates a node's own checks would refuse (expired, another key's),
// which needs the package's internals.

func newCA(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// issue returns a certificate for key by ca, valid from nb for d.
func issue(t testing.TB, ca *identity.Identity, key ed25519.PublicKey, nb time.Time, d time.Duration, groups ...string) *identity.Certificate {
	t.Helper()
	c, err := identity.IssueCertificate(ca, identity.CertificateTemplate{
		NodeKey: key, Name: "node", Groups: groups, NotBefore: nb, NotAfter: nb.Add(d),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// member configures a node as a member of ca's closed mesh.
func member(t testing.TB, ca *identity.Identity, groups ...string) func(*Config) {
	return func(c *Config) {
		if c.Identity == nil {
			c.Identity, _ = identity.Generate()
		}
		c.Membership.Authorities = []ed25519.PublicKey{ca.PublicKey()}
		c.Membership.Certificate = issue(t, ca, c.Identity.PublicKey(), time.Now(), time.Hour, groups...)
	}
}

// presenting makes m present c, whatever its own checks would say.
func presenting(t testing.TB, m *Mesh, c *identity.Certificate) {
	t.Helper()
	if err := m.tr.adm.setOwn(c); err != nil {
		t.Fatal(err)
	}
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestClosedMeshRefusals: a member refuses each kind of bad certificate,
// IK and XX, counts it under its own drop reason, keeps no peer for the
// initiator, and the initiator's Connect fails with an error naming the
// reason.
func TestClosedMeshRefusals(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	m := startNode(t, member(t, ca))
	now := time.Now()
	stranger, _ := identity.Generate()
	for _, tc := range []struct {
		name string
		cert func(key ed25519.PublicKey) *identity.Certificate // nil: none
		want membership.Reason
		drop DropReason
	}{
		{"no certificate", nil, membership.ReasonNoCertificate, DropNoCertificate},
		{"expired", func(k ed25519.PublicKey) *identity.Certificate {
			return issue(t, ca, k, now.Add(-2*time.Hour), time.Hour)
		},
			membership.ReasonExpired, DropCertExpired},
		{"not yet valid", func(k ed25519.PublicKey) *identity.Certificate { return issue(t, ca, k, now.Add(time.Hour), time.Hour) },
			membership.ReasonNotYetValid, DropCertNotYetValid},
		{"wrong authority", func(k ed25519.PublicKey) *identity.Certificate { return issue(t, other, k, now, time.Hour) },
			membership.ReasonUntrusted, DropCertUntrusted},
		{"key mismatch", func(ed25519.PublicKey) *identity.Certificate {
			return issue(t, ca, stranger.PublicKey(), now, time.Hour)
		},
			membership.ReasonKeyMismatch, DropCertKeyMismatch},
		{"forged", func(k ed25519.PublicKey) *identity.Certificate {
			c := issue(t, ca, k, now, time.Hour)
			c.Groups = []string{"admin"} // not what the authority signed
			return c
		}, membership.ReasonInvalid, DropCertInvalid},
	} {
		for _, ik := range []bool{true, false} {
			name := tc.name + "/XX"
			if ik {
				name = tc.name + "/IK"
			}
			t.Run(name, func(t *testing.T) {
				n := startNode(t) // open: it presents what it is given
				if tc.cert != nil {
					presenting(t, n, tc.cert(n.id.PublicKey()))
				}
				pin := Pin{}
				if ik {
					pin.Key = m.id.PublicKey()
				}
				before := drops(m, tc.drop)
				_, err := n.Connect(ctxFor(t, 5*time.Second), m.Addr(), pin)
				var me *MembershipError
				if !errors.As(err, &me) || !me.Remote || me.Reason != tc.want || me.Peer != m.ID() {
					t.Fatalf("Connect: %v, want a refusal by %s: %s", err, m.ID().Short(), tc.want)
				}
				if !errors.Is(err, ErrNotMember) || !errors.Is(err, tc.want.Err()) {
					t.Fatalf("%v does not match its sentinels", err)
				}
				waitDrop(t, m, tc.drop, before)
				if m.Peer(n.ID()) != nil {
					t.Fatal("the member kept a peer for the refused node")
				}
			})
		}
	}
}

// TestClosedMeshInitiatorChecksResponder: a member does not accept a
// responder without a valid certificate either.
func TestClosedMeshInitiatorChecksResponder(t *testing.T) {
	ca := newCA(t)
	m := startNode(t, member(t, ca))
	for _, ik := range []bool{true, false} {
		n := startNode(t) // open, no certificate
		pin := Pin{}
		if ik {
			pin.Key = n.id.PublicKey()
		}
		before := drops(m, DropNoCertificate)
		_, err := m.Connect(ctxFor(t, 5*time.Second), n.Addr(), pin)
		var me *MembershipError
		if !errors.As(err, &me) || me.Remote || me.Reason != membership.ReasonNoCertificate {
			t.Fatalf("IK %v: %v, want the responder refused for lack of a certificate", ik, err)
		}
		waitDrop(t, m, DropNoCertificate, before)
		if p := m.Peer(n.ID()); p != nil && p.IsUp() {
			t.Fatal("session with a non-member")
		}
	}
}

// TestClosedMeshAdmitsMembers connects members both ways and checks that
// each sees the other's certificate, checked once.
func TestClosedMeshAdmitsMembers(t *testing.T) {
	ca := newCA(t)
	a := startNode(t, member(t, ca, "ops"))
	b := startNode(t, member(t, ca, "gpu"))
	p, err := a.Connect(ctxFor(t, 5*time.Second), b.Addr(), Pin{Key: b.id.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Certificate().InGroup("gpu") || !a.InGroup(b.ID(), "gpu") || a.InGroup(b.ID(), "ops") {
		t.Fatalf("a sees b's certificate as %v", p.Certificate())
	}
	eventually(t, func() bool { q := b.Peer(a.ID()); return q != nil && q.IsUp() && q.Certificate().InGroup("ops") })
	// An XX dial the other way, and a rekey: b's certificate is checked
	// once more at most (its signature is remembered).
	c := startNode(t, member(t, ca))
	if _, err := c.Connect(ctxFor(t, 5*time.Second), a.Addr(), Pin{}); err != nil {
		t.Fatal(err)
	}
	sigs := a.MembershipStats().Signatures
	<-a.RekeyNow(p)
	if p.IsUp() != true || a.MembershipStats().Signatures != sigs {
		t.Fatalf("rekey: up %v, signatures %d -> %d", p.IsUp(), sigs, a.MembershipStats().Signatures)
	}
}

// TestClosedRelayForwardsMembersOnly: a relay drops routed packets from,
// and to, a peer that is no longer a member.
func TestClosedRelayForwardsMembersOnly(t *testing.T) {
	ca := newCA(t)
	r := startNode(t, member(t, ca))
	a := startNode(t, member(t, ca))
	b := startNode(t, member(t, ca))
	if _, err := a.Connect(ctxFor(t, 5*time.Second), r.Addr(), Pin{Key: r.id.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Connect(ctxFor(t, 5*time.Second), r.Addr(), Pin{Key: r.id.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { p := r.Peer(a.ID()); return p != nil && p.IsUp() })
	// b's membership ends on the relay without its session ending (the
	// moment before the sweep notices).
	r.Peer(b.ID()).member.Store(nil)
	before := drops(r, DropNotMember)
	a.AddRoute(b.ID(), r.ID())
	_, err := a.ConnectNode(ctxFor(t, time.Second), b.ID(), b.id.PublicKey())
	if err == nil {
		t.Fatal("connected through a relay to a peer that is no longer a member")
	}
	waitDrop(t, r, DropNotMember, before)
}

// TestEngineMessagesFromNonMembers: a capability announcement from a peer
// that is no longer a member is dropped, not indexed.
func TestEngineMessagesFromNonMembers(t *testing.T) {
	ca := newCA(t)
	a := startNode(t, member(t, ca))
	b := startNode(t, member(t, ca))
	if _, err := b.Connect(ctxFor(t, 5*time.Second), a.Addr(), Pin{Key: a.id.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { p := a.Peer(b.ID()); return p != nil && p.IsUp() })
	a.Peer(b.ID()).member.Store(nil)
	before := drops(a, DropNotMember)
	if err := b.AnnounceCapabilities(capability.Set{Tags: []string{"intruder"}}); err != nil {
		t.Fatal(err)
	}
	waitDrop(t, a, DropNotMember, before)
	if len(a.FindNodes(capability.HasTag("intruder"))) != 0 {
		t.Fatal("a non-member's announcement was indexed")
	}
}

// TestSweepExpelsExpiredMember: a peer whose certificate expires during
// its session is expelled.
func TestSweepExpelsExpiredMember(t *testing.T) {
	ca := newCA(t)
	a := startNode(t, member(t, ca))
	b := startNode(t, member(t, ca))
	p, err := a.Connect(ctxFor(t, 5*time.Second), b.Addr(), Pin{Key: b.id.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	short := issue(t, ca, b.id.PublicKey(), time.Now().Add(-time.Hour), time.Hour+2*time.Second)
	p.member.Store(a.tr.memberCertOf(short))
	eventually(t, func() bool { return !p.IsUp() })
}

func eventually(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClosedNoReplyLargerThanRequest: a member with the largest
// certificate never answers an address it has not verified with more
// bytes than it received: a stranger's IK initiation gets a refusal, an
// unpadded XX initiation a response without the certificate, a padded
// one a response with it.
func TestClosedNoReplyLargerThanRequest(t *testing.T) {
	ca := newCA(t)
	var groups []string
	for i := range identity.MaxCertGroups {
		groups = append(groups, string(rune('a'+i))+"-long-group-name-of-32-bytes-xx")
	}
	b := startNode(t, member(t, ca, groups...))
	if n, _ := b.Certificate().MarshalBinary(); len(n) < identity.MaxCertificateSize-64 {
		t.Fatalf("certificate of %d bytes is not near the largest", len(n))
	}
	padded := func(sender uint32) []byte {
		id, _ := identity.Generate()
		hs, _ := noise.NewInitiator(noise.Config{Identity: id}, time.Now())
		hs.SetExtensions(make([]byte, maxCertExt))
		msg, _ := hs.WriteMessage(nil)
		pkt := wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeInitXX, Suite: wireSuite(hs.Suite()), Sender: sender, Noise: msg})
		setMAC1(pkt, &macKey{key: mac1Key(nil)})
		return pkt
	}
	for _, c := range []struct {
		name     string
		pkt      []byte
		withCert bool
	}{
		{"ik initiation without a certificate", ikInitiation(t, b.id.PublicKey(), 1), false},
		{"xx initiation", xxInitiation(t, 2), false},
		{"padded xx initiation", padded(3), true},
	} {
		got := replies(t, b.Addr(), c.pkt, 2*time.Second)
		if len(got) != 1 || got[0] > len(c.pkt) {
			t.Fatalf("%s of %d bytes got replies %v", c.name, len(c.pkt), got)
		}
		if withCert := got[0] > wire.HandshakeOverhead+noise.XXResponseSize; withCert != c.withCert {
			t.Errorf("%s: a reply of %d bytes, certificate in it %v, want %v", c.name, got[0], withCert, c.withCert)
		}
	}
}

// TestRefusedPairingLeavesNothing: a pairing the issuer refuses leaves no
// state on either side.
func TestRefusedPairingLeavesNothing(t *testing.T) {
	iss := startNode(t, func(c *Config) { c.Membership.Authority = newCA(t) })
	n := startNode(t)
	var wrong membership.Code
	_, err := n.Pair(ctxFor(t, 5*time.Second), iss.Addr(), iss.ID(), wrong)
	if !errors.Is(err, membership.ErrPairingCode) {
		t.Fatalf("wrong code: %v", err)
	}
	n.tr.hs.mu.Lock()
	left := len(n.tr.adm.pairs)
	n.tr.hs.mu.Unlock()
	if left != 0 || iss.Peer(n.ID()) != nil {
		t.Fatalf("%d pairings left on the new node; issuer peer %v", left, iss.Peer(n.ID()))
	}
}

// TestExtensionVectorsInDocs checks the handshake extension vectors in
// docs/WIRE.md: the block a closed node holding the document's
// certificate puts in an IK initiation (its certificate, then padding up
// to the room the response needs), and a refusal for an expired
// certificate. Each is what this node builds, and reads back to what it
// says.
func TestExtensionVectorsInDocs(t *testing.T) {
	doc := wirevec.Load(t, "../docs/WIRE.md")
	node, err := identity.FromSeed(doc.Bytes("membership.node_seed"))
	if err != nil {
		t.Fatal(err)
	}
	raw := doc.Bytes("membership.certificate")
	cert, err := identity.DecodeCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	m := startNode(t, func(c *Config) {
		c.Identity = node
		c.Membership.Authorities = []ed25519.PublicKey{cert.Authority}
	})
	presenting(t, m, cert) // valid only from 2027: the node's own check would refuse it now

	for _, v := range []struct {
		name  string
		built []byte
		want  peerExt
	}{
		{"extension.ik_initiation", m.tr.initiationExt(noise.PatternIK), peerExt{cert: raw}},
		{"extension.refusal", refusalExt(membership.ReasonExpired), peerExt{refusal: membership.ReasonExpired}},
	} {
		doc.Check(v.name, v.built)
		got, err := parsePeerExt(v.built)
		if err != nil || !bytes.Equal(got.cert, v.want.cert) || got.refusal != v.want.refusal || got.proof != nil {
			t.Errorf("%s reads as %+v, %v; want %+v", v.name, got, err, v.want)
		}
	}
}

// FuzzPeerExt feeds parsePeerExt arbitrary extension blocks.
//
// Threat: a peer chooses its handshake's extension block, and this node
// reads it before anything in it is checked. Reading must never panic;
// what it takes must be the block's own bytes (the last certificate and
// proof of the block) and a refusal only one of the reasons there are.
func FuzzPeerExt(f *testing.F) {
	f.Add(wire.AppendExtension(wire.AppendExtension(nil, wire.ExtCertificate, []byte("cert")), wire.ExtPadding, make([]byte, 9)))
	f.Add(refusalExt(membership.ReasonRevoked))
	f.Add([]byte{byte(wire.ExtRefusal), 1, 0, 0xff})
	f.Add(wire.AppendExtension(nil, wire.ExtPairingProof, make([]byte, membership.ProofSize)))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parsePeerExt(b)
		if err != nil {
			return
		}
		var want peerExt
		for rest := b; len(rest) > 0; {
			typ, v, r, err := wire.ParseExtension(rest)
			if err != nil {
				t.Fatalf("parsePeerExt took %x, which does not split: %v", b, err)
			}
			switch typ {
			case wire.ExtCertificate:
				want.cert = v
			case wire.ExtPairingProof:
				want.proof = v
			case wire.ExtRefusal:
				want.refusal = membership.Reason(v[0])
			}
			rest = r
		}
		if !bytes.Equal(e.cert, want.cert) || !bytes.Equal(e.proof, want.proof) || e.refusal != want.refusal {
			t.Fatalf("%x read as %+v, want %+v", b, e, want)
		}
		if e.refusal != membership.ReasonNone && !e.refusal.Valid() {
			t.Fatalf("%x: refusal %d is no reason", b, e.refusal)
		}
	})
}
