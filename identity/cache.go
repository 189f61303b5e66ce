package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"sync"
)

// Per-identity cache bounds. The caches hold results that depend only on
// their exact inputs, so a cached answer is always the answer the uncached
// call would give; the bounds only limit memory. Full, each cache evicts a
// random entry.
const (
	// SignCacheSize (4) is how many distinct messages SignCached remembers.
	// It is meant for the few fixed statements a node signs again and
	// again, such as the signature over its Noise static key.
	SignCacheSize = 4

	// VerifyCacheSize (1024) is how many verified (key, message,
	// signature) triples VerifyCached remembers: about 210 KiB of heap
	// when full of handshake signatures (49-byte messages), 280 KiB with
	// messages of MaxCachedMessage bytes.
	VerifyCacheSize = 1024

	// MaxCachedMessage (128 bytes) is the longest message SignCached and
	// VerifyCached remember; longer ones are signed or verified every time.
	MaxCachedMessage = 128

	// StaticDHCacheSize (1024) is how many peers' static-static
	// Diffie-Hellman results StaticDHCached remembers: about 100 KiB of
	// heap when full.
	StaticDHCacheSize = 1024
)

// caches holds an identity's memoized results. Each map has its own lock,
// held only for map operations: signatures and verifications are computed
// outside it, so concurrent handshakes never wait for each other's
// public-key work (two that miss on the same key at once both compute it,
// and store the same bytes).
type caches struct {
	sigs     boundedMap[string, []byte]   // message -> signature
	verify   boundedMap[string, struct{}] // key || signature || message
	staticDH boundedMap[[32]byte, []byte] // peer's X25519 public key -> shared secret
}

// SignCached returns Sign(msg), remembering the signatures of up to
// SignCacheSize messages of at most MaxCachedMessage bytes. ed25519
// signatures are deterministic (RFC 8032, section 5.1.6), so a remembered
// signature is the same bytes Sign would compute. Use it for a message
// signed over and over, such as a statement about the identity's own
// keys; Sign suits everything else. The caller must not modify the
// result.
func (id *Identity) SignCached(msg []byte) []byte {
	if len(msg) > MaxCachedMessage {
		return id.Sign(msg)
	}
	if sig, ok := id.cache.sigs.get(string(msg)); ok {
		return sig
	}
	sig := id.Sign(msg)
	id.cache.sigs.put(string(msg), sig, SignCacheSize)
	return sig
}

// VerifyCached reports whether sig is a valid signature of msg by pub, like
// Verify, and remembers up to VerifyCacheSize valid triples (for messages
// of at most MaxCachedMessage bytes) so that verifying the same bytes again
// costs a map lookup. The cache is keyed by the exact bytes of pub, sig and
// msg: any other key, signature or message is verified afresh, and invalid
// triples are never remembered. It belongs to this identity, so each node
// remembers only what it has verified itself.
func (id *Identity) VerifyCached(pub ed25519.PublicKey, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	if len(msg) > MaxCachedMessage {
		return ed25519.Verify(pub, msg, sig)
	}
	// pub and sig have fixed sizes, so the concatenation is unambiguous.
	k := make([]byte, 0, len(pub)+len(sig)+len(msg))
	k = append(append(append(k, pub...), sig...), msg...)
	if _, ok := id.cache.verify.get(string(k)); ok {
		return true
	}
	if !ed25519.Verify(pub, msg, sig) {
		return false
	}
	id.cache.verify.put(string(k), struct{}{}, VerifyCacheSize)
	return true
}

// StaticDHCached returns the X25519 Diffie-Hellman of this identity's
// static key (ECDH) with a peer's static X25519 public key, as
// ecdh.PrivateKey.ECDH computes it: an error for a key that is not 32
// bytes or for a low-order point (an all-zero result). It remembers up to
// StaticDHCacheSize results, so a peer that connects again costs a map
// lookup instead of a scalar multiplication; WireGuard precomputes the
// same static-static value per peer. The value depends only on the two
// static keys, so a cached answer is always the computed one, and holding
// it exposes nothing that the static private key, held as long, does not.
// Errors are never remembered.
func (id *Identity) StaticDHCached(peer []byte) ([]byte, error) {
	if len(peer) != 32 {
		return nil, fmt.Errorf("identity: X25519 public key is %d bytes, want 32", len(peer))
	}
	k := [32]byte(peer)
	if s, ok := id.cache.staticDH.get(k); ok {
		return bytes.Clone(s), nil
	}
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, err
	}
	s, err := id.ECDH().ECDH(pub)
	if err != nil {
		return nil, err
	}
	id.cache.staticDH.put(k, s, StaticDHCacheSize)
	return bytes.Clone(s), nil
}

// boundedMap is a map safe for concurrent use that holds at most a given
// number of entries. When it is full, put evicts one entry picked by Go's
// randomized map iteration order: O(1), and unlike LRU it still hits
// sometimes when a working set cycles through more keys than fit. The
// zero value is empty and ready to use.
type boundedMap[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V // guarded by mu
}

// get returns the value stored for k.
func (b *boundedMap[K, V]) get(k K) (V, bool) {
	b.mu.Lock()
	v, ok := b.m[k]
	b.mu.Unlock()
	return v, ok
}

// put stores v for k, first evicting a random entry if the map already
// holds limit entries and k is not one of them.
func (b *boundedMap[K, V]) put(k K, v V, limit int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[K]V)
	}
	if _, ok := b.m[k]; !ok && len(b.m) >= limit {
		for old := range b.m {
			delete(b.m, old)
			break
		}
	}
	b.m[k] = v
}

// len returns the number of entries, for tests.
func (b *boundedMap[K, V]) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
