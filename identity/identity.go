// Package identity holds a node's long-term ed25519 key and the NodeID
// derived from it.
//
// A NodeID is the first 16 bytes of BLAKE3("netmesh node id v1" || public key).
// It is short enough to carry in every routed packet and long enough that
// finding a second key for someone else's NodeID costs 2^128 work.
package identity

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"sync"

	"filippo.io/edwards25519"
	"github.com/zeebo/blake3"
)

// Sentinel errors.
var (
	// ErrBadSeed reports a seed that is not SeedSize bytes long.
	ErrBadSeed = errors.New("identity: seed must be 32 bytes")
	// ErrBadPublicKey reports a public key of the wrong size or not a valid
	// curve point.
	ErrBadPublicKey = errors.New("identity: invalid ed25519 public key")
	// ErrBadNodeID reports a NodeID string that does not parse.
	ErrBadNodeID = errors.New("identity: invalid node id")
)

// SeedSize is the size of an ed25519 private key seed.
const SeedSize = ed25519.SeedSize

// Identity is a node's ed25519 key pair. It is safe for concurrent use.
// It also holds the node's bounded caches of handshake results
// (SignCached, VerifyCached, StaticDHCached), so every handshake made with one Identity
// shares them.
type Identity struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	id   NodeID

	ecdhOnce sync.Once
	ecdh     *ecdh.PrivateKey

	cache caches // SignCached, VerifyCached, StaticDHCached
}

// Generate creates a new random identity.
func Generate() (*Identity, error) {
	seed := make([]byte, SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("identity: reading random seed: %w", err)
	}
	return FromSeed(seed)
}

// FromSeed derives an identity from a 32-byte seed.
func FromSeed(seed []byte) (*Identity, error) {
	if len(seed) != SeedSize {
		return nil, ErrBadSeed
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	return &Identity{priv: priv, pub: pub, id: NodeIDFromKey(pub)}, nil
}

// Seed returns a copy of the 32-byte seed the identity was derived from.
func (id *Identity) Seed() []byte { return append([]byte(nil), id.priv.Seed()...) }

// PublicKey returns the ed25519 public key. The caller must not modify it.
func (id *Identity) PublicKey() ed25519.PublicKey { return id.pub }

// NodeID returns the identity's NodeID.
func (id *Identity) NodeID() NodeID { return id.id }

// Sign signs msg with the identity's private key.
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.priv, msg) }

// X25519 returns the X25519 private key that corresponds to the ed25519 key
// (the clamped scalar of RFC 8032 section 5.1.5). Its public half is
// X25519PublicKey(id.PublicKey()), so a peer that knows this node's ed25519
// key also knows its Noise static key and can use the one-round-trip IK
// handshake.
func (id *Identity) X25519() []byte { return id.ECDH().Bytes() }

// ECDH returns the X25519 private key (see X25519) as a crypto/ecdh key,
// built once: handshakes use it for Diffie-Hellman without recomputing its
// public half each time.
func (id *Identity) ECDH() *ecdh.PrivateKey {
	id.ecdhOnce.Do(func() {
		h := sha512.Sum512(id.priv.Seed())
		s := h[:32]
		s[0] &= 248
		s[31] &= 127
		s[31] |= 64
		id.ecdh, _ = ecdh.X25519().NewPrivateKey(s) // 32 bytes: cannot fail
	})
	return id.ecdh
}

// Verify reports whether sig is a valid signature of msg by pub. A key of
// the wrong size is reported as invalid, not a panic.
func Verify(pub ed25519.PublicKey, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, msg, sig)
}

// X25519PublicKey converts an ed25519 public key to the X25519 (Montgomery)
// public key of the same scalar.
func X25519PublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, ErrBadPublicKey
	}
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, ErrBadPublicKey
	}
	return p.BytesMontgomery(), nil
}

// NodeIDSize is the size of a NodeID in bytes.
const NodeIDSize = 16

// NodeID identifies a node. It is comparable and usable as a map key; the
// zero value means "no node".
type NodeID [NodeIDSize]byte

var nodeIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// nodeIDStringLen is the length of NodeID.String: 16 bytes in base32.
var nodeIDStringLen = nodeIDEncoding.EncodedLen(NodeIDSize)

// NodeIDFromKey derives the NodeID of an ed25519 public key.
func NodeIDFromKey(pub ed25519.PublicKey) NodeID {
	h := blake3.New()
	h.Write([]byte("netmesh node id v1"))
	h.Write(pub)
	var sum [32]byte
	h.Sum(sum[:0])
	var id NodeID
	copy(id[:], sum[:])
	return id
}

// String returns the 26-character lowercase base32 form of the NodeID.
func (n NodeID) String() string { return nodeIDEncoding.EncodeToString(n[:]) }

// Short returns the first 8 characters of String, for logs and tables.
func (n NodeID) Short() string { return n.String()[:8] }

// IsZero reports whether n is the zero NodeID.
func (n NodeID) IsZero() bool { return n == NodeID{} }

// MarshalText implements encoding.TextMarshaler.
func (n NodeID) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (n *NodeID) UnmarshalText(b []byte) error {
	id, err := ParseNodeID(string(b))
	if err != nil {
		return err
	}
	*n = id
	return nil
}

// ParseNodeID parses the form produced by NodeID.String. Upper case is
// accepted.
func ParseNodeID(s string) (NodeID, error) {
	var id NodeID
	if len(s) != nodeIDStringLen {
		return id, fmt.Errorf("%w: %q has %d characters, want %d", ErrBadNodeID, s, len(s), nodeIDStringLen)
	}
	n, err := nodeIDEncoding.Decode(id[:], []byte(strings.ToLower(s)))
	if err != nil || n != NodeIDSize {
		return NodeID{}, fmt.Errorf("%w: %q is not base32", ErrBadNodeID, s)
	}
	// 26 base32 characters carry 130 bits; the last 2 must be zero or two
	// strings would name one id.
	if id.String() != strings.ToLower(s) {
		return NodeID{}, fmt.Errorf("%w: %q is not canonical", ErrBadNodeID, s)
	}
	return id, nil
}
