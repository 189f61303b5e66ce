package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var tokenEpoch = time.Unix(1_700_000_000, 0)

func seededID(t testing.TB, b byte) *Identity {
	t.Helper()
	id, err := FromSeed(bytes.Repeat([]byte{b}, SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func testToken(t testing.TB, issuer, subject *Identity, g TokenGrant) *PermissionToken {
	t.Helper()
	g.Subject = subject.PublicKey()
	if g.Perms == 0 {
		g.Perms = PermSubscribe
	}
	if g.Channel == "" {
		g.Channel = "sensors/temp"
	}
	if g.NotBefore.IsZero() {
		g.NotBefore = tokenEpoch
	}
	if g.Expiry.IsZero() {
		g.Expiry = tokenEpoch.Add(time.Hour)
	}
	tok, err := IssueToken(issuer, g)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenRoundTrip(t *testing.T) {
	iss, sub := seededID(t, 1), seededID(t, 2)
	tok := testToken(t, iss, sub, TokenGrant{Perms: PermSubscribe | PermPublish, Channel: "a/", Prefix: true})
	b, err := tok.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != tokenHeaderLen+len("a/")+ed25519.SignatureSize {
		t.Fatalf("encoded %d bytes", len(b))
	}
	got, err := DecodeToken(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, tok) {
		t.Fatalf("decoded %+v\nwant %+v", got, tok)
	}
	txt, err := tok.MarshalText()
	if err != nil || string(txt) != tok.String() {
		t.Fatalf("MarshalText %q, %v; String %q", txt, err, tok.String())
	}
	var back PermissionToken
	if err := back.UnmarshalText(txt); err != nil || !reflect.DeepEqual(&back, tok) {
		t.Fatalf("text round trip: %v\n%+v", err, back)
	}
	if err := got.Verify(tokenEpoch); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(tok.String(), "+/=") {
		t.Fatalf("text form is not unpadded base64url: %s", tok)
	}
}

func TestTokenIDsUnique(t *testing.T) {
	iss, sub := seededID(t, 1), seededID(t, 2)
	seen := map[[TokenIDSize]byte]bool{}
	for range 100 {
		tok := testToken(t, iss, sub, TokenGrant{})
		if seen[tok.ID] {
			t.Fatal("duplicate token id")
		}
		seen[tok.ID] = true
	}
}

func TestIssueTokenRejects(t *testing.T) {
	iss, sub := seededID(t, 1), seededID(t, 2)
	for name, g := range map[string]TokenGrant{
		"no perms":       {Subject: sub.PublicKey(), Channel: "a", Expiry: tokenEpoch.Add(time.Hour), NotBefore: tokenEpoch},
		"unknown perm":   {Subject: sub.PublicKey(), Perms: 4, Channel: "a", Expiry: tokenEpoch.Add(time.Hour), NotBefore: tokenEpoch},
		"empty channel":  {Subject: sub.PublicKey(), Perms: PermSubscribe, Expiry: tokenEpoch.Add(time.Hour), NotBefore: tokenEpoch},
		"upper channel":  {Subject: sub.PublicKey(), Perms: PermSubscribe, Channel: "A", Expiry: tokenEpoch.Add(time.Hour), NotBefore: tokenEpoch},
		"long channel":   {Subject: sub.PublicKey(), Perms: PermSubscribe, Channel: strings.Repeat("a", MaxTokenChannelLen+1), Expiry: tokenEpoch.Add(time.Hour), NotBefore: tokenEpoch},
		"no expiry":      {Subject: sub.PublicKey(), Perms: PermSubscribe, Channel: "a", NotBefore: tokenEpoch},
		"expiry==nb":     {Subject: sub.PublicKey(), Perms: PermSubscribe, Channel: "a", Expiry: tokenEpoch, NotBefore: tokenEpoch},
		"short subject":  {Subject: sub.PublicKey()[:31], Perms: PermSubscribe, Channel: "a", Expiry: tokenEpoch.Add(time.Hour), NotBefore: tokenEpoch},
		"year 10000":     {Subject: sub.PublicKey(), Perms: PermSubscribe, Channel: "a", Expiry: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), NotBefore: tokenEpoch},
		"before 1970":    {Subject: sub.PublicKey(), Perms: PermSubscribe, Channel: "a", Expiry: tokenEpoch, NotBefore: time.Unix(-1, 0)},
		"space in chan":  {Subject: sub.PublicKey(), Perms: PermSubscribe, Channel: "a b", Expiry: tokenEpoch.Add(time.Hour), NotBefore: tokenEpoch},
		"unicode in chn": {Subject: sub.PublicKey(), Perms: PermSubscribe, Channel: "é", Expiry: tokenEpoch.Add(time.Hour), NotBefore: tokenEpoch},
	} {
		if _, err := IssueToken(iss, g); !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("%s: got %v, want ErrTokenMalformed", name, err)
		}
	}
}

func TestTokenVerifyErrors(t *testing.T) {
	iss, sub := seededID(t, 1), seededID(t, 2)
	tok := testToken(t, iss, sub, TokenGrant{})
	forged := *tok
	forged.Signature = bytes.Clone(tok.Signature)
	forged.Signature[10] ^= 1
	widened := *tok
	widened.Perms = PermSubscribe | PermPublish
	unsigned := *tok
	unsigned.Signature = nil
	for _, c := range []struct {
		name string
		tok  *PermissionToken
		now  time.Time
		want error
	}{
		{"valid at not-before", tok, tokenEpoch, nil},
		{"valid just before expiry", tok, tokenEpoch.Add(time.Hour - time.Second), nil},
		{"expired at expiry", tok, tokenEpoch.Add(time.Hour), ErrTokenExpired},
		{"not yet valid", tok, tokenEpoch.Add(-time.Second), ErrTokenNotYetValid},
		{"flipped signature", &forged, tokenEpoch, ErrTokenSignature},
		{"widened permissions", &widened, tokenEpoch, ErrTokenSignature},
		{"unsigned", &unsigned, tokenEpoch, ErrTokenSignature},
	} {
		err := c.tok.Verify(c.now)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestTokenAuthorize(t *testing.T) {
	iss, sub, other := seededID(t, 1), seededID(t, 2), seededID(t, 3)
	exact := testToken(t, iss, sub, TokenGrant{Channel: "sensors/temp"})
	prefix := testToken(t, iss, sub, TokenGrant{Channel: "sensors/", Prefix: true, Perms: PermPublish})
	req := func(ch string, p Permission) TokenRequest {
		return TokenRequest{Subject: sub.PublicKey(), Channel: ch, Perm: p, Issuers: []ed25519.PublicKey{other.PublicKey(), iss.PublicKey()}}
	}
	for _, c := range []struct {
		name string
		tok  *PermissionToken
		r    TokenRequest
		now  time.Time
		want error
	}{
		{"exact ok", exact, req("sensors/temp", PermSubscribe), tokenEpoch, nil},
		{"exact other channel", exact, req("sensors/temp2", PermSubscribe), tokenEpoch, ErrTokenNotPermitted},
		{"exact wrong perm", exact, req("sensors/temp", PermPublish), tokenEpoch, ErrTokenNotPermitted},
		{"prefix ok", prefix, req("sensors/x/y", PermPublish), tokenEpoch, nil},
		{"prefix itself", prefix, req("sensors/", PermPublish), tokenEpoch, nil},
		{"prefix outside", prefix, req("sensorsx", PermPublish), tokenEpoch, ErrTokenNotPermitted},
		{"prefix wrong perm", prefix, req("sensors/x", PermSubscribe), tokenEpoch, ErrTokenNotPermitted},
		{"zero perm", exact, req("sensors/temp", 0), tokenEpoch, ErrTokenNotPermitted},
		{"wrong subject", exact, TokenRequest{Subject: other.PublicKey(), Channel: "sensors/temp", Perm: PermSubscribe, Issuers: []ed25519.PublicKey{iss.PublicKey()}}, tokenEpoch, ErrTokenWrongSubject},
		{"untrusted issuer", exact, TokenRequest{Subject: sub.PublicKey(), Channel: "sensors/temp", Perm: PermSubscribe, Issuers: []ed25519.PublicKey{other.PublicKey()}}, tokenEpoch, ErrTokenUntrustedIssuer},
		{"no issuers trusts none", exact, TokenRequest{Subject: sub.PublicKey(), Channel: "sensors/temp", Perm: PermSubscribe}, tokenEpoch, ErrTokenUntrustedIssuer},
		{"expired", exact, req("sensors/temp", PermSubscribe), tokenEpoch.Add(2 * time.Hour), ErrTokenExpired},
		{"early", exact, req("sensors/temp", PermSubscribe), tokenEpoch.Add(-time.Hour), ErrTokenNotYetValid},
	} {
		err := c.tok.Authorize(c.now, c.r)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

// TestTokenErrorsDistinct makes sure no token sentinel matches another.
func TestTokenErrorsDistinct(t *testing.T) {
	all := []error{ErrTokenMalformed, ErrTokenSignature, ErrTokenExpired, ErrTokenNotYetValid, ErrTokenUntrustedIssuer, ErrTokenWrongSubject, ErrTokenNotPermitted}
	for i, a := range all {
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v matches %v", a, b)
			}
		}
	}
}

func TestDecodeTokenRejects(t *testing.T) {
	iss, sub := seededID(t, 1), seededID(t, 2)
	good, err := testToken(t, iss, sub, TokenGrant{}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(good) + 2 {
		b := append(bytes.Clone(good), 0, 0)[:n]
		if _, err := DecodeToken(b); (err == nil) != (n == len(good)) {
			t.Errorf("length %d of %d: %v", n, len(good), err)
		}
	}
	mutate := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	long := append(bytes.Clone(good[:tokenHeaderLen]), bytes.Repeat([]byte{'a'}, 200)...)
	long[3] = 200
	for name, b := range map[string][]byte{
		"version":      mutate(0, 2),
		"perms 0":      mutate(1, 0),
		"perms 4":      mutate(1, 4),
		"flags":        mutate(2, 2),
		"channel len":  mutate(3, 13),
		"channel char": mutate(tokenHeaderLen, 'A'),
		"expiry<nb":    mutate(96, 0),
		"nb negative":  mutate(84, 0x80),
		"oversized":    append(long, make([]byte, 64)...),
	} {
		if _, err := DecodeToken(b); !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	for _, s := range []string{"", "!!!", strings.Repeat("A", 1000), "AAAA"} {
		if _, err := ParseToken(s); !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("ParseToken(%.10q): got %v", s, err)
		}
	}
}

func TestTokenCache(t *testing.T) {
	iss, sub := seededID(t, 1), seededID(t, 2)
	r := TokenRequest{Subject: sub.PublicKey(), Channel: "sensors/temp", Perm: PermSubscribe, Issuers: []ed25519.PublicKey{iss.PublicKey()}}
	c := NewTokenCache(2)
	tok := testToken(t, iss, sub, TokenGrant{})
	for range 3 {
		if err := c.Authorize(tok, tokenEpoch, r); err != nil {
			t.Fatal(err)
		}
	}
	if h, m := c.Stats(); h != 2 || m != 1 {
		t.Fatalf("hits %d misses %d, want 2 and 1", h, m)
	}
	// A hit still checks time, subject and permission.
	if err := c.Authorize(tok, tokenEpoch.Add(time.Hour), r); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired token from cache: %v", err)
	}
	if err := c.Verify(tok, tokenEpoch.Add(-time.Hour)); !errors.Is(err, ErrTokenNotYetValid) {
		t.Fatalf("early token from cache: %v", err)
	}
	r2 := r
	r2.Subject = iss.PublicKey()
	if err := c.Authorize(tok, tokenEpoch, r2); !errors.Is(err, ErrTokenWrongSubject) {
		t.Fatalf("wrong subject from cache: %v", err)
	}
	// A forgery reusing the cached token's id and fields but another
	// channel is not a hit.
	forged := *tok
	forged.Channel = "sensors/"
	forged.Prefix = true
	r3 := r
	r3.Channel = "sensors/secret"
	if err := c.Authorize(&forged, tokenEpoch, r3); !errors.Is(err, ErrTokenSignature) {
		t.Fatalf("forged token: %v", err)
	}
	if err := c.Verify(&PermissionToken{}, tokenEpoch); !errors.Is(err, ErrTokenMalformed) {
		t.Fatalf("zero token: %v", err)
	}
	// Bounded: three tokens in a cache of two; the least recently used goes.
	t2 := testToken(t, iss, sub, TokenGrant{})
	t3 := testToken(t, iss, sub, TokenGrant{})
	for _, x := range []*PermissionToken{t2, tok, t3} {
		if err := c.Verify(x, tokenEpoch); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 2 {
		t.Fatalf("Len %d, want 2", c.Len())
	}
	_, m0 := c.Stats()
	_ = c.Verify(tok, tokenEpoch) // recently used: still cached
	_ = c.Verify(t2, tokenEpoch)  // evicted: verified again
	if _, m := c.Stats(); m != m0+1 {
		t.Fatalf("misses %d, want %d", m, m0+1)
	}
	if NewTokenCache(0).size != DefaultTokenCacheSize {
		t.Fatal("size 0 is not the default")
	}
}

func TestPermissionString(t *testing.T) {
	for p, want := range map[Permission]string{0: "none", PermSubscribe: "subscribe", PermPublish: "publish", PermSubscribe | PermPublish: "subscribe+publish"} {
		if p.String() != want {
			t.Errorf("%d: %q", p, p.String())
		}
	}
	if (&PermissionToken{}).String() != "<invalid token>" {
		t.Error("invalid token prints")
	}
}

func BenchmarkTokenVerify(b *testing.B) {
	iss, sub := seededID(b, 1), seededID(b, 2)
	tok := testToken(b, iss, sub, TokenGrant{})
	r := TokenRequest{Subject: sub.PublicKey(), Channel: "sensors/temp", Perm: PermSubscribe, Issuers: []ed25519.PublicKey{iss.PublicKey()}}
	b.Run("signature", func(b *testing.B) {
		for b.Loop() {
			if err := tok.Authorize(tokenEpoch, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := NewTokenCache(0)
		for b.Loop() {
			if err := c.Authorize(tok, tokenEpoch, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzDecodeToken feeds DecodeToken arbitrary bytes.
//
// Threat: a token arrives from a peer (inside a subscribe request) or from a
// command line before anything about it is trusted, so DecodeToken sees
// attacker-chosen bytes. It must never panic and must accept only canonical
// encodings: decode, encode and decode again must give the same token, and
// the encoding must equal the input byte for byte, so a signature covers
// exactly one meaning. Verify must not panic on whatever decoded.
func FuzzDecodeToken(f *testing.F) {
	iss, sub := seededID(f, 1), seededID(f, 2)
	for _, g := range []TokenGrant{{}, {Channel: "a/", Prefix: true, Perms: PermPublish | PermSubscribe}, {Channel: strings.Repeat("z", MaxTokenChannelLen)}} {
		b, err := testToken(f, iss, sub, g).MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{tokenVersion, 1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := DecodeToken(b)
		if err != nil {
			return
		}
		enc, err := tok.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded token does not encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("non-canonical input accepted:\n in %x\nout %x", b, enc)
		}
		again, err := DecodeToken(enc)
		if err != nil || !reflect.DeepEqual(tok, again) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, tok, again)
		}
		_ = tok.Verify(tokenEpoch)
		if s := tok.String(); s == "<invalid token>" {
			t.Fatal("decoded token has no text form")
		} else if _, err := ParseToken(s); err != nil {
			t.Fatalf("text form does not parse: %v", err)
		}
	})
}

func ExampleIssueToken() {
	authority, _ := FromSeed(bytes.Repeat([]byte{1}, SeedSize))
	worker, _ := FromSeed(bytes.Repeat([]byte{2}, SeedSize))
	tok, err := IssueToken(authority, TokenGrant{
		Subject:   worker.PublicKey(),
		Perms:     PermSubscribe,
		Channel:   "jobs/",
		Prefix:    true,
		NotBefore: tokenEpoch,
		Expiry:    tokenEpoch.Add(24 * time.Hour),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The token travels as text (a CLI flag, a config file) ...
	parsed, _ := ParseToken(tok.String())
	// ... and the channel owner checks it against the key the worker
	// authenticated with.
	err = parsed.Authorize(tokenEpoch.Add(time.Hour), TokenRequest{
		Subject: worker.PublicKey(),
		Channel: "jobs/gpu",
		Perm:    PermSubscribe,
		Issuers: []ed25519.PublicKey{authority.PublicKey()},
	})
	fmt.Println(err)
	err = parsed.Authorize(tokenEpoch.Add(25*time.Hour), TokenRequest{
		Subject: worker.PublicKey(),
		Channel: "jobs/gpu",
		Perm:    PermSubscribe,
		Issuers: []ed25519.PublicKey{authority.PublicKey()},
	})
	fmt.Println(errors.Is(err, ErrTokenExpired))
	// Output:
	// <nil>
	// true
}
