package mesh

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
)

// Handshake flood defence, after WireGuard's: every handshake message ends
// in two MACs. MAC1 is keyed from the recipient's public key (or, when the
// sender does not know it yet, from a fixed anonymous key), so junk is
// dropped after one keyed hash and no Diffie-Hellman. Under load, an
// initiation must also carry MAC2, keyed by a cookie that the responder
// derives from the source address and a rotating secret; a responder under
// load answers an initiation without a valid MAC2 with a cookie reply and
// does nothing else, so spoofed sources cost it no DH work.

// floodGuard is a node's handshake flood defence: its MAC and cookie
// keys, the per-source rate limits and the under-load state.
type floodGuard struct {
	mac1Own, mac1Anon     macKey   // verify MAC1 of messages sent to us
	cookieOwn, cookieAnon [32]byte // seal cookie replies

	mu       sync.Mutex
	secret   macKey // keyed by a random secret: cookies
	secretAt time.Time

	// limit is the per-source limit on initiations under load;
	// relayLimit is the same for initiations a peer relays, by its id.
	limit      *rateLimiter[netip.Addr]
	relayLimit *rateLimiter[identity.NodeID]
	// underLoadUntil is the mono time until which initiations need a
	// cookie.
	underLoadUntil atomic.Int64
}

func (g *floodGuard) init(pub ed25519.PublicKey, rate int) {
	g.mac1Own = pooledMACKey(mac1Key(pub))
	g.mac1Anon = pooledMACKey(mac1Key(nil))
	g.cookieOwn = cookieKey(pub)
	g.cookieAnon = cookieKey(nil)
	g.limit = newRateLimiter[netip.Addr](rate)
	g.relayLimit = newRateLimiter[identity.NodeID](rate)
}

// loaded puts the node under load until underLoadHold after now.
func (g *floodGuard) loaded(now int64) { g.underLoadUntil.Store(now + int64(underLoadHold)) }

// underLoad reports whether the node is under load at now.
func (g *floodGuard) underLoad(now int64) bool { return now < g.underLoadUntil.Load() }

// A blake3.Hasher is about 10 KiB (an 8 KiB input buffer), and a keyed
// one keeps its key for life: made per MAC, hashers were most of the
// bytes a handshake allocated, and every junk initiation of a flood cost
// one before it was dropped. So the node's own keys, and the key
// derivations, keep pools of hashers; only a MAC under a peer's key (one
// per handshake message sent) or a cookie makes a fresh one.

// macKey is a key for 16-byte keyed BLAKE3 MACs.
type macKey struct {
	key  [32]byte
	pool *sync.Pool // hashers under key; nil makes one per MAC
}

// pooledMACKey returns a macKey for key that reuses its hashers, for
// keys used many times.
func pooledMACKey(key [32]byte) macKey {
	return macKey{key: key, pool: &sync.Pool{New: func() any {
		h, _ := blake3.NewKeyed(key[:]) // only fails for a key that is not 32 bytes
		return h
	}}}
}

// sum returns the MAC of data.
func (k *macKey) sum(data []byte) (out [wire.MACSize]byte) {
	var h *blake3.Hasher
	if k.pool != nil {
		h = k.pool.Get().(*blake3.Hasher)
	} else {
		h, _ = blake3.NewKeyed(k.key[:])
	}
	h.Write(data)
	var sum [32]byte
	h.Sum(sum[:0])
	if k.pool != nil {
		h.Reset() // keeps the key
		k.pool.Put(h)
	}
	copy(out[:], sum[:])
	return out
}

// Key derivation contexts, with pools of hashers that have absorbed them.
var (
	mac1Context   = deriveContext("netmesh v1 mac1")
	cookieContext = deriveContext("netmesh v1 cookie")
)

func deriveContext(context string) *sync.Pool {
	return &sync.Pool{New: func() any { return blake3.NewDeriveKey(context) }}
}

// derive is blake3.DeriveKey with a pooled hasher.
func derive(context *sync.Pool, material []byte) (k [32]byte) {
	h := context.Get().(*blake3.Hasher)
	h.Write(material)
	h.Sum(k[:0])
	h.Reset() // keeps the context
	context.Put(h)
	return k
}

// mac1Key derives the MAC1 key for messages to the holder of pub; nil pub
// gives the anonymous key.
func mac1Key(pub ed25519.PublicKey) [32]byte { return derive(mac1Context, keyMaterial(pub)) }

// cookieKey derives the key that seals cookie replies from the holder of
// pub; nil pub gives the anonymous key.
func cookieKey(pub ed25519.PublicKey) [32]byte { return derive(cookieContext, keyMaterial(pub)) }

func keyMaterial(pub ed25519.PublicKey) []byte {
	if pub == nil {
		return make([]byte, ed25519.PublicKeySize)
	}
	return pub
}

// setMAC1 fills MAC1 of handshake packet pkt with key and returns it.
func setMAC1(pkt []byte, key *macKey) [wire.MACSize]byte {
	m := key.sum(wire.MAC1Input(pkt))
	copy(pkt[len(pkt)-2*wire.MACSize:], m[:])
	return m
}

// setMAC2 fills MAC2 of handshake packet pkt from a cookie.
func setMAC2(pkt []byte, cookie *[wire.CookieSize]byte) {
	m := cookieMACKey(cookie).sum(wire.MAC2Input(pkt))
	copy(pkt[len(pkt)-wire.MACSize:], m[:])
}

// cookieMACKey is the MAC2 key of a cookie.
func cookieMACKey(cookie *[wire.CookieSize]byte) *macKey {
	var k macKey
	copy(k.key[:], cookie[:])
	return &k
}

// validMAC1 checks MAC1 of pkt.
func validMAC1(pkt []byte, key *macKey) bool {
	m := key.sum(wire.MAC1Input(pkt))
	return hmac.Equal(m[:], pkt[len(pkt)-2*wire.MACSize:len(pkt)-wire.MACSize])
}

// cookieFor returns the cookie for a source address under the current
// secret.
func (k *floodGuard) cookieFor(src netip.AddrPort) [wire.CookieSize]byte {
	k.mu.Lock()
	if k.secret.pool == nil || time.Since(k.secretAt) > cookieSecretLifetime {
		var secret [32]byte
		rand.Read(secret[:])
		k.secret = pooledMACKey(secret)
		k.secretAt = time.Now()
	}
	secret := k.secret
	k.mu.Unlock()
	a := src.Addr().As16()
	var in [18]byte
	copy(in[:], a[:])
	in[16], in[17] = byte(src.Port()>>8), byte(src.Port())
	return secret.sum(in[:])
}

// validMAC2 checks MAC2 of pkt against the cookie of src.
func (k *floodGuard) validMAC2(pkt []byte, src netip.AddrPort) bool {
	c := k.cookieFor(src)
	m := cookieMACKey(&c).sum(wire.MAC2Input(pkt))
	return hmac.Equal(m[:], pkt[len(pkt)-wire.MACSize:])
}

// cookieReply builds the reply to handshake packet pkt from src. The
// cookie is sealed under sealKey with the packet's MAC1 as associated data.
func (k *floodGuard) cookieReply(pkt []byte, sender uint32, src netip.AddrPort, sealKey *[32]byte) []byte {
	c := k.cookieFor(src)
	aead, _ := chacha20poly1305.NewX(sealKey[:])
	nonce := make([]byte, wire.CookieNonceSize)
	rand.Read(nonce)
	mac1 := pkt[len(pkt)-2*wire.MACSize : len(pkt)-wire.MACSize]
	sealed := aead.Seal(nil, nonce, c[:], mac1)
	return wire.AppendCookieReply(nil, wire.CookieReply{Receiver: sender, Nonce: nonce, Sealed: sealed})
}

// openCookie opens a cookie reply to a message whose MAC1 was mac1.
func openCookie(c wire.CookieReply, sealKey *[32]byte, mac1 []byte) ([wire.CookieSize]byte, bool) {
	var out [wire.CookieSize]byte
	aead, _ := chacha20poly1305.NewX(sealKey[:])
	pt, err := aead.Open(nil, c.Nonce, c.Sealed, mac1)
	if err != nil || len(pt) != wire.CookieSize {
		return out, false
	}
	copy(out[:], pt)
	return out, true
}

// rateLimiter is a token bucket per source of handshake initiations: a
// source IP, or the peer that relayed them.
type rateLimiter[K comparable] struct {
	rate    float64 // tokens per second, also the burst
	mu      sync.Mutex
	buckets map[K]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter[K comparable](perSecond int) *rateLimiter[K] {
	return &rateLimiter[K]{rate: float64(perSecond), buckets: make(map[K]*bucket)}
}

// allow takes a token for src and reports whether one was there.
func (r *rateLimiter[K]) allow(src K, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[src]
	if b == nil {
		b = &bucket{tokens: r.rate, last: now}
		r.buckets[src] = b
	}
	b.tokens = min(r.rate, b.tokens+now.Sub(b.last).Seconds()*r.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// gc forgets buckets that have refilled, so the map stays small.
func (r *rateLimiter[K]) gc(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for src, b := range r.buckets {
		if now.Sub(b.last) > bucketIdle {
			delete(r.buckets, src)
		}
	}
}
