package identity

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
)

func testID(t testing.TB, n byte) *Identity {
	t.Helper()
	id, err := FromSeed(bytes.Repeat([]byte{n}, SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSignCached(t *testing.T) {
	id := testID(t, 1)
	// More distinct messages than the cache holds, each signed twice, and
	// one too long to be cached: every answer must be Sign's.
	msgs := [][]byte{bytes.Repeat([]byte{'x'}, MaxCachedMessage+1)}
	for i := range 2 * SignCacheSize {
		msgs = append(msgs, fmt.Appendf(nil, "message %d", i))
	}
	for range 2 {
		for _, m := range msgs {
			got := id.SignCached(m)
			if !bytes.Equal(got, id.Sign(m)) {
				t.Fatalf("SignCached(%q) differs from Sign", m)
			}
			if !ed25519.Verify(id.PublicKey(), m, got) {
				t.Fatalf("SignCached(%q) does not verify", m)
			}
		}
	}
	if n := id.cache.sigs.len(); n > SignCacheSize {
		t.Fatalf("%d cached signatures, limit %d", n, SignCacheSize)
	}
	// Another identity signing the same message gets its own signature.
	other := testID(t, 2)
	if bytes.Equal(other.SignCached(msgs[1]), id.SignCached(msgs[1])) {
		t.Fatal("two identities share a cached signature")
	}
}

func TestVerifyCached(t *testing.T) {
	verifier, a, c := testID(t, 9), testID(t, 1), testID(t, 3)
	msg := []byte("netmesh static v1 and a static key")
	sig := a.Sign(msg)
	for range 2 { // the second round answers from the cache
		if !verifier.VerifyCached(a.PublicKey(), msg, sig) {
			t.Fatal("valid signature rejected")
		}
	}
	// Every other triple must be verified afresh and rejected, after the
	// valid one was cached.
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 1
		return b
	}
	for name, tc := range map[string]struct {
		pub       ed25519.PublicKey
		msg, sig  []byte
		wantValid bool
	}{
		"tampered signature, first byte": {a.PublicKey(), msg, flip(sig, 0), false},
		"tampered signature, last byte":  {a.PublicKey(), msg, flip(sig, 63), false},
		"another message":                {a.PublicKey(), flip(msg, len(msg)-1), sig, false},
		"another key":                    {c.PublicKey(), msg, sig, false},
		"another key's signature":        {a.PublicKey(), msg, c.Sign(msg), false},
		"short signature":                {a.PublicKey(), msg, sig[:63], false},
		"short key":                      {a.PublicKey()[:31], msg, sig, false},
		"prefix of the message":          {a.PublicKey(), msg[:len(msg)-1], sig, false},
		"the valid one again":            {a.PublicKey(), msg, sig, true},
	} {
		for range 2 { // an invalid triple is not cached either
			if got := verifier.VerifyCached(tc.pub, tc.msg, tc.sig); got != tc.wantValid {
				t.Errorf("%s: VerifyCached = %v, want %v", name, got, tc.wantValid)
			}
		}
	}
	if n := verifier.cache.verify.len(); n != 1 {
		t.Fatalf("%d cached triples, want 1 (invalid ones must not be cached)", n)
	}
	// A long message is verified without caching, correctly both ways.
	long := bytes.Repeat([]byte{'y'}, MaxCachedMessage+1)
	if !verifier.VerifyCached(a.PublicKey(), long, a.Sign(long)) || verifier.VerifyCached(a.PublicKey(), long, sig) {
		t.Fatal("long message verified wrongly")
	}
	// Each identity has its own cache.
	if c.cache.verify.len() != 0 {
		t.Fatal("a verification was cached in another identity")
	}
}

func TestBoundedMap(t *testing.T) {
	var m boundedMap[int, int]
	const limit = 16
	for i := range 10 * limit {
		m.put(i, i*i, limit)
		if m.len() > limit {
			t.Fatalf("%d entries after %d puts, limit %d", m.len(), i+1, limit)
		}
		if v, ok := m.get(i); !ok || v != i*i {
			t.Fatalf("get(%d) = %d, %v right after put", i, v, ok)
		}
	}
	// Whatever survived eviction maps to its own value.
	for i := range 10 * limit {
		if v, ok := m.get(i); ok && v != i*i {
			t.Fatalf("get(%d) = %d", i, v)
		}
	}
	// Replacing an existing key in a full map evicts nothing.
	var full boundedMap[int, int]
	for i := range limit {
		full.put(i, i, limit)
	}
	full.put(3, 33, limit)
	for i := range limit {
		if _, ok := full.get(i); !ok {
			t.Fatalf("key %d evicted by an update", i)
		}
	}
}

// The caches are shared by every handshake of a node: run them from many
// goroutines at once (meaningful under -race).
func TestCachesConcurrent(t *testing.T) {
	id, a := testID(t, 1), testID(t, 2)
	msg := []byte("statement")
	sig := a.Sign(msg)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if !id.VerifyCached(a.PublicKey(), msg, sig) {
					t.Error("valid signature rejected")
				}
				m := fmt.Appendf(nil, "m%d", (g+i)%(2*SignCacheSize))
				if !bytes.Equal(id.SignCached(m), id.Sign(m)) {
					t.Error("wrong signature")
				}
			}
		})
	}
	wg.Wait()
}

func TestStaticDHCached(t *testing.T) {
	a := testID(t, 1)
	// More peers than the cache holds, each asked twice: every answer
	// must be the DH ecdh computes, from both sides.
	peers := make([]*Identity, 0, 8)
	for i := range 8 {
		peers = append(peers, testID(t, byte(10+i)))
	}
	for range 2 {
		for _, p := range peers {
			pub := p.ECDH().PublicKey().Bytes()
			got, err := a.StaticDHCached(pub)
			if err != nil {
				t.Fatal(err)
			}
			want, err := a.ECDH().ECDH(p.ECDH().PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			back, err := p.StaticDHCached(a.ECDH().PublicKey().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || !bytes.Equal(back, want) {
				t.Fatal("StaticDHCached differs from ECDH")
			}
			got[0] ^= 1 // the caller's copy: must not reach the cache
		}
	}
	if n := a.cache.staticDH.len(); n != len(peers) {
		t.Fatalf("%d cached results, want %d", n, len(peers))
	}
	// A low-order point and a short key are errors, never remembered.
	if _, err := a.StaticDHCached(make([]byte, 32)); err == nil {
		t.Fatal("accepted a low-order point")
	}
	if _, err := a.StaticDHCached(make([]byte, 31)); err == nil {
		t.Fatal("accepted a 31-byte key")
	}
	if n := a.cache.staticDH.len(); n != len(peers) {
		t.Fatalf("%d cached results after errors, want %d", n, len(peers))
	}
}

func TestStaticDHCacheBound(t *testing.T) {
	a := testID(t, 1)
	pub := testID(t, 2).ECDH().PublicKey().Bytes()
	for i := range StaticDHCacheSize + 10 {
		k := bytes.Clone(pub)
		k[0] ^= byte(i) // distinct keys; most are valid curve points
		k[1] ^= byte(i >> 8)
		a.StaticDHCached(k)
	}
	if n := a.cache.staticDH.len(); n > StaticDHCacheSize {
		t.Fatalf("%d cached results, limit %d", n, StaticDHCacheSize)
	}
}
