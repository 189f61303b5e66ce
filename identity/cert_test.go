package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/internal/wirevec"
)

var certEpoch = time.Unix(1_800_000_000, 0)

func testCert(t testing.TB, authority, node *Identity, tmpl CertificateTemplate) *Certificate {
	t.Helper()
	tmpl.NodeKey = node.PublicKey()
	if tmpl.Name == "" {
		tmpl.Name = "worker-1"
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = certEpoch
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = certEpoch.Add(30 * 24 * time.Hour)
	}
	c, err := IssueCertificate(authority, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertificateRoundTrip(t *testing.T) {
	ca, node := seededID(t, 1), seededID(t, 2)
	c := testCert(t, ca, node, CertificateTemplate{Groups: []string{"ops", "gpu", "ops"}})
	if !reflect.DeepEqual(c.Groups, []string{"gpu", "ops"}) {
		t.Fatalf("groups %q, want sorted and distinct", c.Groups)
	}
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip:\n%+v\n%+v", got, c)
	}
	if err := got.Verify(certEpoch, node.PublicKey(), []ed25519.PublicKey{ca.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	if !got.InGroup("x", "ops") || got.InGroup("x") || got.InGroup() || (*Certificate)(nil).InGroup("ops") {
		t.Fatal("InGroup")
	}
}

// TestCertificateRefusals checks that each way a certificate can be wrong
// is reported as its own error.
func TestCertificateRefusals(t *testing.T) {
	ca, other, node := seededID(t, 1), seededID(t, 3), seededID(t, 2)
	trusted := []ed25519.PublicKey{ca.PublicKey()}
	good := testCert(t, ca, node, CertificateTemplate{})
	forged := *good
	forged.Name = "root"
	for _, tc := range []struct {
		name    string
		c       *Certificate
		now     time.Time
		key     ed25519.PublicKey
		trusted []ed25519.PublicKey
		want    error
	}{
		{"untrusted authority", testCert(t, other, node, CertificateTemplate{}), certEpoch, node.PublicKey(), trusted, ErrCertUntrusted},
		{"no authority trusted", good, certEpoch, node.PublicKey(), nil, ErrCertUntrusted},
		{"another key", good, certEpoch, other.PublicKey(), trusted, ErrCertKeyMismatch},
		{"not yet valid", good, certEpoch.Add(-CertClockSkew - time.Second), node.PublicKey(), trusted, ErrCertNotYetValid},
		{"expired", good, good.NotAfter, node.PublicKey(), trusted, ErrCertExpired},
		{"forged name", &forged, certEpoch, node.PublicKey(), trusted, ErrCertSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.c.Verify(tc.now, tc.key, tc.trusted); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if err := good.Verify(good.NotAfter.Add(-time.Second), node.PublicKey(), trusted); err != nil {
		t.Fatalf("last second: %v", err)
	}
	if err := good.Verify(certEpoch.Add(-CertClockSkew), node.PublicKey(), trusted); err != nil {
		t.Fatalf("a clock behind by CertClockSkew: %v", err)
	}
}

func TestIssueCertificateRules(t *testing.T) {
	ca, node := seededID(t, 1), seededID(t, 2)
	long := strings.Repeat("g", MaxCertGroupLen+1)
	for _, tmpl := range []CertificateTemplate{
		{Name: "Upper"},
		{Name: strings.Repeat("n", MaxCertNameLen+1)},
		{Groups: []string{long}},
		{Groups: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}},
		{Groups: []string{""}},
		{NotAfter: certEpoch},
		{NotAfter: certEpoch.Add(MaxCertValidity + time.Second)},
	} {
		tmpl.NodeKey = node.PublicKey()
		if tmpl.Name == "" {
			tmpl.Name = "n"
		}
		if tmpl.NotBefore.IsZero() {
			tmpl.NotBefore = certEpoch
		}
		if tmpl.NotAfter.IsZero() {
			tmpl.NotAfter = certEpoch.Add(time.Hour)
		}
		if _, err := IssueCertificate(ca, tmpl); !errors.Is(err, ErrCertMalformed) {
			t.Errorf("%+v: %v", tmpl, err)
		}
	}
	// The longest certificate is MaxCertificateSize bytes.
	var groups []string
	for i := range MaxCertGroups {
		groups = append(groups, strings.Repeat(string(rune('a'+i)), MaxCertGroupLen))
	}
	c := testCert(t, ca, node, CertificateTemplate{Name: strings.Repeat("n", MaxCertNameLen), Groups: groups, NotAfter: certEpoch.Add(MaxCertValidity)})
	b, err := c.MarshalBinary()
	if err != nil || len(b) != MaxCertificateSize {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	// A zero NotBefore starts the certificate now.
	c, err = IssueCertificate(ca, CertificateTemplate{NodeKey: node.PublicKey(), Name: "n", NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(c.NotBefore); d < 0 || d > time.Minute {
		t.Fatalf("NotBefore %v before now", d)
	}
}

func TestDecodeCertificateRejectsNonCanonical(t *testing.T) {
	ca, node := seededID(t, 1), seededID(t, 2)
	b, _ := testCert(t, ca, node, CertificateTemplate{Groups: []string{"a", "b"}}).MarshalBinary()
	swap := bytes.Clone(b)
	// The groups start after the name: swap "a" and "b".
	i := bytes.Index(swap, []byte{2, 1, 'a', 1, 'b'})
	swap[i+2], swap[i+4] = 'b', 'a'
	for name, in := range map[string][]byte{
		"unsorted groups": swap,
		"version 2":       append([]byte{2}, b[1:]...),
		"flags":           append([]byte{1, 1}, b[2:]...),
		"short":           b[:len(b)-1],
		"long":            append(bytes.Clone(b), 0),
	} {
		if _, err := DecodeCertificate(in); !errors.Is(err, ErrCertMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRevocation(t *testing.T) {
	ca, other, node := seededID(t, 1), seededID(t, 3), seededID(t, 2)
	c := testCert(t, ca, node, CertificateTemplate{})
	r, err := IssueRevocation(ca, node.PublicKey(), c.NotBefore)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.MarshalBinary()
	if err != nil || len(b) != RevocationSize {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	got, err := DecodeRevocation(b)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, got, r)
	}
	if err := got.VerifySignature(); err != nil {
		t.Fatal(err)
	}
	if !r.Covers(c) {
		t.Fatal("does not cover a certificate that starts at RevokedAt")
	}
	later := testCert(t, ca, node, CertificateTemplate{NotBefore: c.NotBefore.Add(time.Second)})
	if r.Covers(later) {
		t.Fatal("covers a certificate issued after it")
	}
	if r.Covers(testCert(t, other, node, CertificateTemplate{})) {
		t.Fatal("covers another authority's certificate")
	}
	if !r.Expires().Equal(r.RevokedAt.Add(MaxCertValidity)) {
		t.Fatal("Expires")
	}
	got.RevokedAt = got.RevokedAt.Add(time.Second)
	if err := got.VerifySignature(); !errors.Is(err, ErrRevocationSignature) {
		t.Fatalf("altered revocation: %v", err)
	}
}

func TestCertificateFiles(t *testing.T) {
	ca, node := seededID(t, 1), seededID(t, 2)
	dir := t.TempDir()
	c := testCert(t, ca, node, CertificateTemplate{Groups: []string{"ops"}})
	path := filepath.Join(dir, "node.cert")
	if err := SaveCertificate(path, c); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCertificate(path)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("%v\n%+v", err, got)
	}
	// Saving again replaces the file.
	c2 := testCert(t, ca, node, CertificateTemplate{Name: "renamed"})
	if err := SaveCertificate(path, c2); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadCertificate(path); got.Name != "renamed" {
		t.Fatalf("replaced file holds %q", got.Name)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if _, err := ParseCertificatePEM(append(mustPEM(t, c), "x"...)); !errors.Is(err, ErrCertMalformed) {
		t.Fatalf("trailing data: %v", err)
	}

	rpath := filepath.Join(dir, "revoked")
	if rs, err := LoadRevocations(rpath); err != nil || len(rs) != 0 {
		t.Fatalf("missing file: %v %v", rs, err)
	}
	r1, _ := IssueRevocation(ca, node.PublicKey(), certEpoch)
	r2, _ := IssueRevocation(ca, ca.PublicKey(), certEpoch)
	if err := SaveRevocations(rpath, []*Revocation{r1, r2}); err != nil {
		t.Fatal(err)
	}
	rs, err := LoadRevocations(rpath)
	if err != nil || !reflect.DeepEqual(rs, []*Revocation{r1, r2}) {
		t.Fatalf("%v %v", rs, err)
	}
}

func mustPEM(t *testing.T, c *Certificate) []byte {
	t.Helper()
	b, err := c.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCertificateVectorInDocs checks the test vector in docs/WIRE.md: the
// certificate the authority with the document's seed issues to the node
// with the document's seed encodes to exactly the bytes the document
// shows, so the layout drawn there is the one built.
func TestCertificateVectorInDocs(t *testing.T) {
	doc := wirevec.Load(t, "../docs/WIRE.md")
	seeded := func(name string) *Identity {
		id, err := FromSeed(doc.Bytes(name))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	c := testCert(t, seeded("membership.authority_seed"), seeded("membership.node_seed"), CertificateTemplate{
		Name: "worker-1", Groups: []string{"gpu", "ops"},
		NotBefore: time.Unix(1_800_000_000, 0), NotAfter: time.Unix(1_802_592_000, 0),
	})
	got, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	doc.Check("membership.certificate", got)
}

// FuzzDecodeCertificate feeds DecodeCertificate arbitrary bytes.
//
// Threat: a certificate arrives inside a stranger's handshake before
// anything about it is trusted, so the decoder sees attacker-chosen bytes.
// It must never panic and must accept only canonical encodings: decode,
// encode and decode again give the same certificate, and the encoding
// equals the input byte for byte, so a signature covers exactly one
// meaning. Verify must not panic on whatever decoded.
func FuzzDecodeCertificate(f *testing.F) {
	ca, node := seededID(f, 1), seededID(f, 2)
	for _, tmpl := range []CertificateTemplate{{}, {Groups: []string{"a", "gpu", "ops"}}, {Name: strings.Repeat("z", MaxCertNameLen)}} {
		b, err := testCert(f, ca, node, tmpl).MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCertificate(b)
		if err != nil {
			return
		}
		enc, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded certificate does not encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("non-canonical input accepted:\n in %x\nout %x", b, enc)
		}
		again, err := DecodeCertificate(enc)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, c, again)
		}
		_ = c.Verify(certEpoch, c.NodeKey, []ed25519.PublicKey{c.Authority})
		p, err := c.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseCertificatePEM(p); err != nil {
			t.Fatalf("PEM form does not parse: %v", err)
		}
	})
}

// FuzzDecodeRevocation feeds DecodeRevocation arbitrary bytes.
//
// Threat: revocations are gossiped: any member, or a relay, hands them on,
// so the decoder sees attacker-chosen bytes before the signature is
// checked. It must never panic, accept only canonical encodings (the
// round trip gives the input back), and VerifySignature must not panic.
func FuzzDecodeRevocation(f *testing.F) {
	r, err := IssueRevocation(seededID(f, 1), seededID(f, 2).PublicKey(), certEpoch)
	if err != nil {
		f.Fatal(err)
	}
	b, _ := r.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRevocation(b)
		if err != nil {
			return
		}
		enc, err := r.MarshalBinary()
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("round trip: %v\n in %x\nout %x", err, b, enc)
		}
		again, err := DecodeRevocation(enc)
		if err != nil || !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip: %v", err)
		}
		_ = r.VerifySignature()
	})
}
