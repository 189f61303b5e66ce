package noise

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"io"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"github.com/flynn/noise"

	"github.com/netmesh/netmesh/identity"
)

// x25519 is the Noise 25519 DH function (RFC 7748's X25519), arranged so a
// handshake does as few scalar multiplications, and as cheap ones, as it
// can:
//
//   - GenerateKeypair computes the public key as a fixed-base
//     multiplication on the twisted Edwards form of the curve
//     (edwards25519's precomputed tables, then the birational map to the
//     Montgomery u-coordinate), about 2.5× cheaper than the Montgomery
//     ladder crypto/ecdh uses for it.
//   - DH is one ladder (scalarMult). flynn/noise's DH25519 goes through
//     curve25519.X25519, which runs a second ladder per DH to compute a
//     public key it then discards.
//   - An IK initiator takes the static-static DH (the ss token) from the
//     identity's cache (StaticDHCached), so reconnecting to a peer or
//     rekeying with it skips one ladder. Only the initiator: it chose the
//     peer's key itself, while a responder gets it from an initiation
//     that nothing has authenticated yet, and a cache hit's speed would
//     tell a stranger which nodes this one has met (docs/SECURITY.md,
//     Handshake caches).
//
// One x25519 serves one handshake; it is not safe for concurrent use.
type x25519 struct {
	id        *identity.Identity    // this node's identity, for the cached ss; nil in tests
	hs        *noise.HandshakeState // the handshake, for its peer's static key
	initiator bool                  // only an initiator uses the cache

	// testEphemeral, set only by tests, is read for the ephemeral private
	// key instead of the handshake's random source: the wire test vectors
	// fix it.
	testEphemeral io.Reader
}

var _ noise.DHFunc = (*x25519)(nil)

// errLowOrder reports a DH whose result is all zeros: the peer sent a
// low-order point, which would make the shared secret predictable.
var errLowOrder = errors.New("noise: X25519 with a low-order point")

func (x *x25519) GenerateKeypair(r io.Reader) (noise.DHKey, error) {
	if x.testEphemeral != nil {
		r = x.testEphemeral
	}
	priv := make([]byte, 32)
	if _, err := io.ReadFull(r, priv); err != nil {
		return noise.DHKey{}, err
	}
	s, err := edwards25519.NewScalar().SetBytesWithClamping(priv)
	if err != nil {
		return noise.DHKey{}, err // unreachable: priv is 32 bytes
	}
	// X25519's clamping and RFC 8032's are the same, and the Edwards base
	// point maps to X25519's u = 9, so this is X25519(priv, 9).
	pub := new(edwards25519.Point).ScalarBaseMult(s).BytesMontgomery()
	return noise.DHKey{Private: priv, Public: pub}, nil
}

func (x *x25519) DH(priv, pub []byte) ([]byte, error) {
	if x.staticStatic(priv, pub) {
		return x.id.StaticDHCached(pub)
	}
	return scalarMult(priv, pub)
}

// staticStatic reports whether DH(priv, pub) is an initiator's DH between
// this node's static key and the peer's, the one DH whose result outlives
// the handshake.
func (x *x25519) staticStatic(priv, pub []byte) bool {
	if x.id == nil || x.hs == nil || !x.initiator {
		return false
	}
	peer := x.hs.PeerStatic()
	return len(peer) > 0 && bytes.Equal(pub, peer) &&
		subtle.ConstantTimeCompare(priv, x.id.X25519()) == 1
}

func (x *x25519) DHLen() int     { return 32 }
func (x *x25519) DHName() string { return "25519" }

// a24 is (A - 2) / 4 for Curve25519's A = 486662 (RFC 7748, section 5).
const a24 = 121665

// scalarMult returns X25519(scalar, u) as RFC 7748, section 5 defines it:
// the scalar clamped, the most significant bit of u ignored, and a
// Montgomery ladder over bits 254 down to 0 with constant-time swaps, so
// its running time does not depend on the scalar. A result of all zeros (u
// of low order) is errLowOrder, as crypto/ecdh and curve25519.X25519 do.
func scalarMult(scalar, u []byte) ([]byte, error) {
	if len(scalar) != 32 || len(u) != 32 {
		return nil, errors.New("noise: X25519 keys are 32 bytes")
	}
	var k [32]byte
	copy(k[:], scalar)
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64
	defer clear(k[:])

	var x1, x2, z2, x3, z3 field.Element
	if _, err := x1.SetBytes(u); err != nil { // masks the top bit
		return nil, err
	}
	x2.One()
	x3.Set(&x1)
	z3.One()
	// RFC 7748's step computed in place with two scratch elements, the
	// products that do not wait on each other side by side: 12 % faster
	// on a Zen 5 than one element per name of the RFC, each used once.
	var p, q field.Element
	swap := 0
	for t := 254; t >= 0; t-- {
		kt := int(k[t>>3]>>(t&7)) & 1
		swap ^= kt
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = kt

		p.Subtract(&x3, &z3) // D
		q.Subtract(&x2, &z2) // B
		x2.Add(&x2, &z2)     // A
		z2.Add(&x3, &z3)     // C
		z3.Multiply(&p, &x2) // DA
		z2.Multiply(&z2, &q) // CB
		p.Square(&q)         // BB
		q.Square(&x2)        // AA
		x3.Add(&z3, &z2)     // DA + CB
		z2.Subtract(&z3, &z2)
		x2.Multiply(&q, &p) // x_2 = AA * BB
		q.Subtract(&q, &p)  // E = AA - BB
		z2.Square(&z2)      // (DA - CB)^2
		z3.Mult32(&q, a24+1)
		x3.Square(&x3)        // x_3 = (DA + CB)^2
		p.Add(&p, &z3)        // BB + (a24 + 1) * E = AA + a24 * E
		z3.Multiply(&x1, &z2) // z_3 = x_1 * (DA - CB)^2
		z2.Multiply(&q, &p)   // z_2 = E * (AA + a24 * E)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)
	z2.Invert(&z2) // 0 stays 0, so a low-order u gives 0
	x2.Multiply(&x2, &z2)
	out := x2.Bytes()
	if subtle.ConstantTimeCompare(out, make([]byte, 32)) == 1 {
		return nil, errLowOrder
	}
	return out, nil
}
