package membership

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/wirevec"
)

var epoch = time.Unix(1_800_000_000, 0)

func seeded(t testing.TB, b byte) *identity.Identity {
	t.Helper()
	id, err := identity.FromSeed(bytes.Repeat([]byte{b}, identity.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func cert(t testing.TB, ca, node *identity.Identity, nb time.Time, validFor time.Duration) *identity.Certificate {
	t.Helper()
	c, err := identity.IssueCertificate(ca, identity.CertificateTemplate{
		NodeKey: node.PublicKey(), Name: "n1", Groups: []string{"ops"}, NotBefore: nb, NotAfter: nb.Add(validFor),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func raw(t testing.TB, c *identity.Certificate) []byte {
	t.Helper()
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func verifier(t testing.TB, authorities ...*identity.Identity) *Verifier {
	t.Helper()
	var keys []ed25519.PublicKey
	for _, a := range authorities {
		keys = append(keys, a.PublicKey())
	}
	v, err := NewVerifier(keys)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVerifierReasons refuses each kind of bad certificate with its own
// reason.
func TestVerifierReasons(t *testing.T) {
	ca, other, node := seeded(t, 1), seeded(t, 2), seeded(t, 3)
	v := verifier(t, ca)
	good := cert(t, ca, node, epoch, time.Hour)
	forged := raw(t, good)
	forged[len(forged)-1] ^= 1
	rev, _ := identity.IssueRevocation(ca, node.PublicKey(), epoch)
	revoked := verifier(t, ca)
	if ok, err := revoked.AddRevocation(rev, epoch); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for _, tc := range []struct {
		name string
		v    *Verifier
		raw  []byte
		key  ed25519.PublicKey
		now  time.Time
		want Reason
	}{
		{"good", v, raw(t, good), node.PublicKey(), epoch, ReasonNone},
		{"missing", v, nil, node.PublicKey(), epoch, ReasonNoCertificate},
		{"garbage", v, []byte("not a certificate"), node.PublicKey(), epoch, ReasonInvalid},
		{"forged", v, forged, node.PublicKey(), epoch, ReasonInvalid},
		{"wrong authority", v, raw(t, cert(t, other, node, epoch, time.Hour)), node.PublicKey(), epoch, ReasonUntrusted},
		{"key mismatch", v, raw(t, good), other.PublicKey(), epoch, ReasonKeyMismatch},
		{"expired", v, raw(t, good), node.PublicKey(), epoch.Add(time.Hour), ReasonExpired},
		{"not yet valid", v, raw(t, good), node.PublicKey(), epoch.Add(-identity.CertClockSkew - time.Second), ReasonNotYetValid},
		{"revoked", revoked, raw(t, good), node.PublicKey(), epoch, ReasonRevoked},
		{"issued after the revocation", revoked, raw(t, cert(t, ca, node, epoch.Add(time.Second), time.Hour)), node.PublicKey(), epoch.Add(time.Second), ReasonNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := tc.v.Check(tc.raw, tc.key, tc.now); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if tc.want != ReasonNone && !errors.Is(tc.want.Err(), tc.want.Err()) {
				t.Fatal("reason without an error")
			}
		})
	}
}

// TestVerifierChecksSignatureOnce: a peer that presents the same
// certificate again (every rekey) costs no second signature check.
func TestVerifierChecksSignatureOnce(t *testing.T) {
	ca, node := seeded(t, 1), seeded(t, 3)
	v := verifier(t, ca)
	b := raw(t, cert(t, ca, node, epoch, time.Hour))
	for range 5 {
		if _, r := v.Check(b, node.PublicKey(), epoch); r != ReasonNone {
			t.Fatal(r)
		}
	}
	if st := v.Stats(); st.Signatures != 1 || st.CacheHits != 4 {
		t.Fatalf("%+v", st)
	}
	// The cheap checks still run on a cached certificate.
	if _, r := v.Check(b, node.PublicKey(), epoch.Add(time.Hour)); r != ReasonExpired {
		t.Fatal(r)
	}
}

func TestOpenVerifier(t *testing.T) {
	v := verifier(t)
	if v.Closed() {
		t.Fatal("no authorities is closed")
	}
	if _, err := NewVerifier(make([]ed25519.PublicKey, MaxAuthorities+1)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatal(err)
	}
	if _, err := NewVerifier([]ed25519.PublicKey{{1, 2}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatal(err)
	}
}

func TestRevocationStore(t *testing.T) {
	ca, other, n1, n2 := seeded(t, 1), seeded(t, 2), seeded(t, 3), seeded(t, 4)
	v := verifier(t, ca)
	r1, _ := identity.IssueRevocation(ca, n1.PublicKey(), epoch)
	if ok, err := v.AddRevocation(r1, epoch); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := v.AddRevocation(r1, epoch); ok || err != nil {
		t.Fatalf("duplicate: %v %v", ok, err)
	}
	older, _ := identity.IssueRevocation(ca, n1.PublicKey(), epoch.Add(-time.Hour))
	if ok, _ := v.AddRevocation(older, epoch); ok {
		t.Fatal("older revocation replaced a newer one")
	}
	newer, _ := identity.IssueRevocation(ca, n1.PublicKey(), epoch.Add(time.Hour))
	if ok, _ := v.AddRevocation(newer, epoch); !ok {
		t.Fatal("newer revocation refused")
	}
	untrusted, _ := identity.IssueRevocation(other, n2.PublicKey(), epoch)
	if _, err := v.AddRevocation(untrusted, epoch); !errors.Is(err, ErrUntrustedRevocation) {
		t.Fatal(err)
	}
	forged := *r1
	forged.NodeKey = n2.PublicKey()
	if _, err := v.AddRevocation(&forged, epoch); !errors.Is(err, identity.ErrRevocationSignature) {
		t.Fatal(err)
	}
	if ok, _ := v.AddRevocation(r1, r1.Expires()); ok {
		t.Fatal("expired revocation kept")
	}
	if got := v.Revocations(); len(got) != 1 || got[0] != newer {
		t.Fatalf("%v", got)
	}
	if n := v.Prune(newer.Expires()); n != 1 || len(v.Revocations()) != 0 {
		t.Fatalf("pruned %d", n)
	}
}

// TestRevocationStoreBound: a full store forgets the revocation that
// expires first.
func TestRevocationStoreBound(t *testing.T) {
	ca := seeded(t, 1)
	v := verifier(t, ca)
	v.maxRevs = 3
	var keys []*identity.Revocation
	for i := range 4 {
		id, _ := identity.Generate()
		r, _ := identity.IssueRevocation(ca, id.PublicKey(), epoch.Add(time.Duration(i)*time.Hour))
		keys = append(keys, r)
		if ok, err := v.AddRevocation(r, epoch); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if got := v.Revocations(); !reflect.DeepEqual(got, keys[1:]) {
		t.Fatalf("kept %v", got)
	}
}

func issuer(t testing.TB) *Issuer {
	return NewIssuer(seeded(t, 1), IssuerOptions{PairingBurst: 100, PairingInterval: time.Second})
}

func TestPairingCode(t *testing.T) {
	c := newCode()
	s := c.String()
	if len(s) != 39 {
		t.Fatalf("%q", s)
	}
	for _, in := range []string{s, strings.ReplaceAll(s, "-", ""), " " + s + " ", strings.ToUpper(s)} {
		got, err := ParseCode(in)
		if err != nil || got != c {
			t.Fatalf("%q: %v", in, err)
		}
	}
	for _, bad := range []string{"", "abcd", s + "a", s[:len(s)-1] + "1"} {
		if _, err := ParseCode(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestRedeem pairs a node with a code, then tries the ways a code can fail.
func TestRedeem(t *testing.T) {
	is := issuer(t)
	node, other := seeded(t, 3), seeded(t, 4)
	code, err := is.NewPairingCode(Grant{Name: "laptop", Groups: []string{"dev"}, ValidFor: time.Hour}, epoch)
	if err != nil {
		t.Fatal(err)
	}
	binding := []byte("handshake hash one")
	// A proof for another handshake is worthless here.
	if _, _, r := is.Redeem(code.Proof([]byte("another handshake")), binding, node.PublicKey(), "a", epoch); r != ReasonPairingCode {
		t.Fatalf("replayed proof: %v", r)
	}
	c, confirm, r := is.Redeem(code.Proof(binding), binding, node.PublicKey(), "a", epoch)
	if r != ReasonNone {
		t.Fatal(r)
	}
	if !bytes.Equal(c.NodeKey, node.PublicKey()) || c.Name != "laptop" || !c.InGroup("dev") || c.NotAfter.Sub(c.NotBefore) != time.Hour {
		t.Fatalf("%v", c)
	}
	if err := c.Verify(epoch, node.PublicKey(), []ed25519.PublicKey{is.Key()}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(confirm, code.Confirmation(binding)) || bytes.Equal(confirm, code.Proof(binding)) {
		t.Fatal("confirmation")
	}
	// Single use.
	if _, _, r := is.Redeem(code.Proof([]byte("h2")), []byte("h2"), other.PublicKey(), "a", epoch); r != ReasonPairingReused {
		t.Fatalf("reused code: %v", r)
	}
	// Short-lived.
	short, _ := is.NewPairingCode(Grant{Name: "x", CodeLifetime: time.Minute}, epoch)
	if _, _, r := is.Redeem(short.Proof(binding), binding, other.PublicKey(), "a", epoch.Add(time.Minute)); r != ReasonPairingExpired {
		t.Fatalf("expired code: %v", r)
	}
	if _, _, r := is.Redeem(newCode().Proof(binding), binding, other.PublicKey(), "a", epoch); r != ReasonPairingCode {
		t.Fatalf("wrong code: %v", r)
	}
	if _, _, r := is.Redeem([]byte("short"), binding, other.PublicKey(), "a", epoch); r != ReasonPairingCode {
		t.Fatalf("short proof: %v", r)
	}
}

// TestPairingBruteForce: guessing codes from one source is throttled
// after the burst; even the right code is refused until the source's
// budget refills, and another source is not affected.
func TestPairingBruteForce(t *testing.T) {
	is := NewIssuer(seeded(t, 1), IssuerOptions{})
	node := seeded(t, 3)
	code, _ := is.NewPairingCode(Grant{Name: "n"}, epoch)
	binding := []byte("h")
	refused := map[Reason]int{}
	for i := range 50 {
		_, _, r := is.Redeem(newCode().Proof(binding), binding, node.PublicKey(), "attacker", epoch.Add(time.Duration(i)*time.Millisecond))
		refused[r]++
	}
	if refused[ReasonPairingCode] != DefaultPairingBurst || refused[ReasonPairingRateLimited] != 50-DefaultPairingBurst {
		t.Fatalf("%v", refused)
	}
	if _, _, r := is.Redeem(code.Proof(binding), binding, node.PublicKey(), "attacker", epoch.Add(time.Second)); r != ReasonPairingRateLimited {
		t.Fatalf("throttled source with the right code: %v", r)
	}
	if _, _, r := is.Redeem(code.Proof(binding), binding, node.PublicKey(), "attacker", epoch.Add(time.Second+DefaultPairingInterval)); r != ReasonNone {
		t.Fatalf("after the interval: %v", r)
	}
	code2, _ := is.NewPairingCode(Grant{Name: "n"}, epoch)
	if _, _, r := is.Redeem(code2.Proof(binding), binding, node.PublicKey(), "someone else", epoch.Add(time.Second)); r != ReasonNone {
		t.Fatalf("another source: %v", r)
	}
}

func TestPairingLimits(t *testing.T) {
	is := issuer(t)
	for i := range MaxPairingCodes {
		if _, err := is.NewPairingCode(Grant{Name: fmt.Sprintf("n%d", i)}, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := is.NewPairingCode(Grant{Name: "one-more"}, epoch); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("code past the limit: %v", err)
	}
	// Expired codes make room.
	if _, err := is.NewPairingCode(Grant{Name: "later"}, epoch.Add(DefaultCodeLifetime)); err != nil {
		t.Fatal(err)
	}
	for _, g := range []Grant{{Name: "Bad"}, {Name: "n", ValidFor: identity.MaxCertValidity + time.Second}, {Name: "n", CodeLifetime: MaxCodeLifetime + 1}} {
		if _, err := is.NewPairingCode(g, epoch); err == nil {
			t.Errorf("%+v accepted", g)
		}
	}
	// The limiter forgets idle sources and fails closed when full of
	// recent ones.
	l := &sourceLimiter{}
	l.init(1, time.Second)
	for i := range maxPairingSources {
		l.allow(fmt.Sprint(i), epoch)
	}
	if l.allow("new", epoch) {
		t.Fatal("a new source while the table is full")
	}
	if !l.allow("new", epoch.Add(time.Second)) {
		t.Fatal("idle sources were not forgotten")
	}
}

func TestRenew(t *testing.T) {
	is := issuer(t)
	node := seeded(t, 3)
	c := cert(t, seeded(t, 1), node, epoch, 30*time.Hour)
	if _, err := is.Renew(c, epoch.Add(19*time.Hour)); !errors.Is(err, ErrNotDue) {
		t.Fatalf("early renewal: %v", err)
	}
	at := RenewAt(c)
	if !at.Equal(epoch.Add(20 * time.Hour)) {
		t.Fatal(at)
	}
	n, err := is.Renew(c, at)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != c.Name || !reflect.DeepEqual(n.Groups, c.Groups) || n.NotAfter.Sub(n.NotBefore) != 30*time.Hour || !n.NotAfter.After(c.NotAfter) {
		t.Fatalf("renewed %v from %v", n, c)
	}
	if _, err := is.Renew(cert(t, seeded(t, 2), node, epoch, 30*time.Hour), at); !errors.Is(err, ErrNotDue) {
		t.Fatalf("another authority's certificate: %v", err)
	}
}

func TestMessages(t *testing.T) {
	ca, node := seeded(t, 1), seeded(t, 3)
	c := cert(t, ca, node, epoch, time.Hour)
	r, _ := identity.IssueRevocation(ca, node.PublicKey(), epoch)
	for _, m := range []*Message{
		{Type: MsgRevocations, Revocations: []*identity.Revocation{r, r}},
		{Type: MsgCertificate, Certificate: c},
		{Type: MsgRenew},
		{Type: MsgIssued, Certificate: c},
		{Type: MsgIssued, Certificate: c, Confirmation: bytes.Repeat([]byte{7}, ProofSize)},
	} {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeMessage(b)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("%v\n%+v\n%+v", err, got, m)
		}
	}
	many := make([]*identity.Revocation, 2*maxRevocationsPerMessage+1)
	for i := range many {
		many[i] = r
	}
	msgs, err := RevocationMessages(many)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	for _, b := range [][]byte{nil, {9}, {byte(MsgRenew), 0}, {byte(MsgRevocations)}, {byte(MsgIssued), 0}} {
		if _, err := DecodeMessage(b); err == nil {
			t.Errorf("%x decoded", b)
		}
	}
}

// FuzzDecodeMessage feeds DecodeMessage arbitrary bytes.
//
// Threat: membership messages come from peers (any member, and in an
// open mesh anyone with a session) and are decoded before any signature
// in them is checked. Decoding must never panic, and what decodes must
// encode back to the same bytes (one meaning per encoding).
func FuzzDecodeMessage(f *testing.F) {
	ca, node := seeded(f, 1), seeded(f, 3)
	c := cert(f, ca, node, epoch, time.Hour)
	r, _ := identity.IssueRevocation(ca, node.PublicKey(), epoch)
	for _, m := range []*Message{
		{Type: MsgRevocations, Revocations: []*identity.Revocation{r}},
		{Type: MsgCertificate, Certificate: c},
		{Type: MsgRenew},
		{Type: MsgIssued, Certificate: c, Confirmation: make([]byte, ProofSize)},
	} {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		enc, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, enc)
		}
	})
}

// TestPairingVectorsInDocs checks the pairing vectors in docs/WIRE.md:
// the code's printed form, and the proof and the confirmation for it over
// the document's handshake hash.
func TestPairingVectorsInDocs(t *testing.T) {
	doc := wirevec.Load(t, "../docs/WIRE.md")
	var c Code
	if b := doc.Bytes("pairing.code_bytes"); copy(c[:], b) != CodeSize || len(b) != CodeSize {
		t.Fatalf("pairing.code_bytes has %d bytes, want %d", len(b), CodeSize)
	}
	if got, want := c.String(), doc.Text("pairing.code"); got != want {
		t.Errorf("the code prints as %q, docs/WIRE.md says %q", got, want)
	}
	binding := doc.Bytes("pairing.handshake_hash")
	doc.Check("pairing.proof", c.Proof(binding))
	doc.Check("pairing.confirmation", c.Confirmation(binding))
}
