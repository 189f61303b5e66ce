package mesh

import (
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"io"
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
//
// None of it runs on the socket readers: they only queue handshake
// messages for the workers (handshake.go), and, under load, spend a token
// of the source's bucket first, so one source cannot fill the queue. A
// source is an IPv4 address or an IPv6 /64 (sourceKey): an attacker with
// a /64 gets one bucket, not 2^64, and the nodes behind one NAT share
// one.

// floodGuard is a node's handshake flood defence: its MAC and cookie
// keys, the per-source rate limits and the under-load state.
type floodGuard struct {
	mac1Own, mac1Anon macKey      // verify MAC1 of messages sent to us
	sealOwn, sealAnon cipher.AEAD // seal cookie replies to IK and XX initiations

	mu       sync.Mutex
	secret   macKey // keyed by a random secret: cookies
	secretAt int64  // mono ns

	// limit is the per-source limit on initiations under load, by
	// sourceKey; relayLimit is the same for initiations a peer relays,
	// by its id.
	limit      *rateLimiter[netip.Addr]
	relayLimit *rateLimiter[identity.NodeID]
	// underLoadUntil is the mono time until which initiations need a
	// cookie.
	underLoadUntil atomic.Int64
}

func (g *floodGuard) init(pub ed25519.PublicKey, rate int) {
	g.mac1Own = pooledMACKey(mac1Key(pub))
	g.mac1Anon = pooledMACKey(mac1Key(nil))
	own, anon := cookieKey(pub), cookieKey(nil)
	g.sealOwn, _ = chacha20poly1305.NewX(own[:]) // only fails for a key that is not 32 bytes
	g.sealAnon, _ = chacha20poly1305.NewX(anon[:])
	g.limit = newRateLimiter[netip.Addr](rate)
	g.relayLimit = newRateLimiter[identity.NodeID](rate)
}

// loaded puts the node under load until underLoadHold after now.
func (g *floodGuard) loaded(now int64) { g.underLoadUntil.Store(now + int64(underLoadHold)) }

// underLoad reports whether the node is under load at now.
func (g *floodGuard) underLoad(now int64) bool { return now < g.underLoadUntil.Load() }

// sourceKey groups source addresses for the rate limits: an IPv4 address
// stands for itself, an IPv6 address for its /64, the block one
// subscriber or host is given.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is4() {
		return a
	}
	p, _ := a.Prefix(64)
	return p.Addr()
}

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
// MAC2 is a derivation too (see mac2): a keyed hasher cannot be re-keyed,
// and a fresh one per cookie is 10 KiB.
var (
	mac1Context   = deriveContext("netmesh v1 mac1")
	cookieContext = deriveContext("netmesh v1 cookie")
	mac2Context   = deriveContext("netmesh v1 mac2")
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

// mac2 is MAC2 of a handshake packet's MAC2Input under a cookie: the
// BLAKE3 key derivation in context "netmesh v1 mac2" of cookie ‖ input,
// a PRF of the secret cookie.
func mac2(cookie *[wire.CookieSize]byte, input []byte) (out [wire.MACSize]byte) {
	h := mac2Context.Get().(*blake3.Hasher)
	h.Write(cookie[:])
	h.Write(input)
	var sum [32]byte
	h.Sum(sum[:0])
	h.Reset() // keeps the context
	mac2Context.Put(h)
	copy(out[:], sum[:])
	return out
}

// setMAC2 fills MAC2 of handshake packet pkt from a cookie.
func setMAC2(pkt []byte, cookie *[wire.CookieSize]byte) {
	m := mac2(cookie, wire.MAC2Input(pkt))
	copy(pkt[len(pkt)-wire.MACSize:], m[:])
}

// validMAC1 checks MAC1 of pkt.
func validMAC1(pkt []byte, key *macKey) bool {
	m := key.sum(wire.MAC1Input(pkt))
	return hmac.Equal(m[:], pkt[len(pkt)-2*wire.MACSize:len(pkt)-wire.MACSize])
}

// cookieFor returns the cookie for a source address under the current
// secret, which it renews every cookieSecretLifetime.
func (g *floodGuard) cookieFor(src netip.AddrPort, now int64) [wire.CookieSize]byte {
	g.mu.Lock()
	if g.secret.pool == nil || now-g.secretAt > int64(cookieSecretLifetime) {
		var secret [32]byte
		rand.Read(secret[:])
		g.secret = pooledMACKey(secret)
		g.secretAt = now
	}
	secret := g.secret
	g.mu.Unlock()
	a := src.Addr().As16()
	var in [18]byte
	copy(in[:], a[:])
	in[16], in[17] = byte(src.Port()>>8), byte(src.Port())
	return secret.sum(in[:])
}

// validMAC2 checks MAC2 of pkt against cookie, the cookie of its source.
func validMAC2(pkt []byte, cookie *[wire.CookieSize]byte) bool {
	m := mac2(cookie, wire.MAC2Input(pkt))
	return hmac.Equal(m[:], pkt[len(pkt)-wire.MACSize:])
}

// putCookieReply writes the reply to handshake packet pkt (of type typ,
// whose source's cookie is cookie) into b[:wire.CookieReplySize]: the
// cookie, sealed under the key of the recipient the initiation was for,
// with the packet's MAC1 as associated data and a nonce from rnd. It
// allocates nothing.
func (g *floodGuard) putCookieReply(b, pkt []byte, typ wire.Type, sender uint32, cookie *[wire.CookieSize]byte, rnd io.Reader) {
	seal := g.sealAnon
	if typ == wire.TypeInitIK {
		seal = g.sealOwn
	}
	nonce, sealed := wire.PutCookieReplyHeader(b, sender)
	rnd.Read(nonce)
	mac1 := pkt[len(pkt)-2*wire.MACSize : len(pkt)-wire.MACSize]
	copy(sealed, cookie[:]) // sealed in place
	seal.Seal(sealed[:0], nonce, sealed[:wire.CookieSize], mac1)
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
// source (sourceKey), or the peer that relayed them. It holds at most
// maxBuckets buckets: beyond that, until the timer loop's gc has
// forgotten idle ones, a new source gets no token.
type rateLimiter[K comparable] struct {
	rate    float64 // tokens per second, also the burst
	mu      sync.Mutex
	buckets map[K]*bucket
}

type bucket struct {
	tokens float64
	last   int64 // mono ns
}

func newRateLimiter[K comparable](perSecond int) *rateLimiter[K] {
	return &rateLimiter[K]{rate: float64(perSecond), buckets: make(map[K]*bucket)}
}

// allow takes a token for src at mono time now and reports whether one
// was there.
func (r *rateLimiter[K]) allow(src K, now int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[src]
	if b == nil {
		if len(r.buckets) >= maxBuckets {
			return false
		}
		b = &bucket{tokens: r.rate, last: now}
		r.buckets[src] = b
	}
	b.tokens = min(r.rate, b.tokens+float64(now-b.last)/float64(time.Second)*r.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// gc forgets buckets that have refilled, so the map stays small.
func (r *rateLimiter[K]) gc(now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for src, b := range r.buckets {
		if now-b.last > int64(bucketIdle) {
			delete(r.buckets, src)
		}
	}
}
