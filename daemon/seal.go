package daemon

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/netmesh/netmesh/identity"
)

// A daemon's private key never travels in clear, not even inside the
// encrypted session: it is sealed to the node that is to hold it, with
// HPKE (RFC 9180, Go's crypto/hpke) in base mode:
//
//	KEM  DHKEM(X25519, HKDF-SHA256)
//	KDF  HKDF-SHA256
//	AEAD ChaCha20-Poly1305
//
// The recipient's KEM key is its node key: the X25519 key of the same
// scalar as its ed25519 identity (identity.X25519PublicKey; the same
// static key its Noise handshakes use), so a sender that knows a node's
// ed25519 key (from its session or its signed announcement) can seal to
// it with no extra round trip, and only the node holding that identity
// can open. HPKE derives its keys through its own labelled KDF with its
// suite id, which keeps them apart from every Noise key derived from the
// same static key.
//
// The plaintext is the daemon's 32-byte ed25519 seed. The info string
// binds it to its purpose and context:
//
//	"netmesh daemon key v1" || purpose (1 byte) || daemon id (16) || recipient NodeID (16) || context (16)
//
// where context is the transfer id for a transfer (so a sealed key
// cannot be cut from one transfer and pasted into another) and zero for
// a snapshot. A node refuses (KEY_REFUSED) a key it cannot open, and one
// whose public key does not derive the daemon id it came with.

// Purposes of a sealed key.
const (
	sealTransfer byte = 1 // in a transfer (migration, spawn, standby)
	sealSnapshot byte = 2 // in a Snapshot, for the node that asked
)

const sealLabel = "netmesh daemon key v1"

var (
	sealKDF  = hpke.HKDFSHA256()
	sealAEAD = hpke.ChaCha20Poly1305()
)

// errKeyMismatch reports an opened key that is not the daemon's.
var errKeyMismatch = errors.New("the key does not belong to the daemon")

func sealInfo(purpose byte, daemon ID, to identity.NodeID, ctx ID) []byte {
	b := make([]byte, 0, len(sealLabel)+1+IDSize+identity.NodeIDSize+IDSize)
	b = append(b, sealLabel...)
	b = append(b, purpose)
	b = append(b, daemon[:]...)
	b = append(b, to[:]...)
	return append(b, ctx[:]...)
}

// sealFor seals key's seed to node for purpose.
func (rt *Runtime) sealFor(node identity.NodeID, key *identity.Identity, purpose byte, daemon, ctx ID) ([]byte, error) {
	pub, ok := rt.nodeKey(node)
	if !ok {
		return nil, fmt.Errorf("no key known for node %s", node.Short())
	}
	x, err := identity.X25519PublicKey(pub)
	if err != nil {
		return nil, err
	}
	xp, err := ecdh.X25519().NewPublicKey(x)
	if err != nil {
		return nil, err
	}
	pk, err := hpke.NewDHKEMPublicKey(xp)
	if err != nil {
		return nil, err
	}
	seed := key.Seed()
	defer clear(seed)
	return hpke.Seal(pk, sealKDF, sealAEAD, sealInfo(purpose, daemon, node, ctx), seed)
}

// openKey opens a key sealed to this node for purpose, and checks that
// it is daemon's.
func (rt *Runtime) openKey(sealed []byte, purpose byte, daemon, ctx ID) (*identity.Identity, error) {
	sk, err := hpke.NewDHKEMPrivateKey(rt.m.Identity().ECDH())
	if err != nil {
		return nil, err
	}
	seed, err := hpke.Open(sk, sealKDF, sealAEAD, sealInfo(purpose, daemon, rt.self, ctx), sealed)
	if err != nil {
		return nil, err
	}
	defer clear(seed)
	key, err := identity.FromSeed(seed)
	if err != nil {
		return nil, err
	}
	got := idOf(key)
	if subtle.ConstantTimeCompare(got[:], daemon[:]) != 1 {
		return nil, errKeyMismatch
	}
	return key, nil
}
