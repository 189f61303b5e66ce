package noise

import (
	"bytes"
	"crypto/ecdh"
	"io"

	"github.com/flynn/noise"
)

// x25519 is the Noise 25519 DH function, computed with crypto/ecdh so that
// each Diffie-Hellman costs one scalar multiplication. flynn/noise's
// DH25519 calls curve25519.X25519, which builds an ecdh.PrivateKey (a
// scalar multiplication, for the public key) before every DH (a second
// one). This one keeps the ecdh.PrivateKey of every key it generated or was
// given, so a handshake's ladders drop from 20 to 10. One x25519 serves
// one handshake; it is not safe for concurrent use.
type x25519 struct {
	keys []*ecdh.PrivateKey
}

var _ noise.DHFunc = (*x25519)(nil)

func (x *x25519) GenerateKeypair(r io.Reader) (noise.DHKey, error) {
	k, err := ecdh.X25519().GenerateKey(r)
	if err != nil {
		return noise.DHKey{}, err
	}
	x.keys = append(x.keys, k)
	return noise.DHKey{Private: k.Bytes(), Public: k.PublicKey().Bytes()}, nil
}

func (x *x25519) DH(priv, pub []byte) ([]byte, error) {
	k, err := x.key(priv)
	if err != nil {
		return nil, err
	}
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return k.ECDH(p) // fails on a low-order point, like curve25519.X25519
}

// key returns the ecdh form of priv, from the keys seen before if it can.
func (x *x25519) key(priv []byte) (*ecdh.PrivateKey, error) {
	for _, k := range x.keys {
		if bytes.Equal(k.Bytes(), priv) {
			return k, nil
		}
	}
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	x.keys = append(x.keys, k)
	return k, nil
}

func (x *x25519) DHLen() int     { return 32 }
func (x *x25519) DHName() string { return "25519" }
