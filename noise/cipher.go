package noise

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Cipher is one direction of a session's transport encryption:
// ChaCha20-Poly1305 with the counter passed explicitly, so packets can be
// sealed and opened in any order. It is safe for concurrent use.
//
// The caller owns the counter: it must never seal two messages with the same
// counter, nor use a counter >= RejectAfterMessages.
type Cipher struct {
	aead cipher.AEAD
}

// Nonce is a caller-owned nonce buffer. Seal and Open allocate nothing when
// it lives in memory that is already on the heap, such as a pooled packet
// buffer or session struct. One Nonce must not be used by two goroutines at
// once.
type Nonce [chacha20poly1305.NonceSize]byte

// NewCipher returns a Cipher for a 32-byte key. Handshake.Keys builds the
// session's ciphers; this is for tests and benchmarks.
func NewCipher(key []byte) (*Cipher, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, fmt.Errorf("noise: %w", err)
	}
	return &Cipher{aead: aead}, nil
}

// set writes the Noise ChaChaPoly nonce for counter: 4 zero bytes, then the
// counter in little-endian order.
func (n *Nonce) set(counter uint64) []byte {
	n[0], n[1], n[2], n[3] = 0, 0, 0, 0
	binary.LittleEndian.PutUint64(n[4:], counter)
	return n[:]
}

// Seal encrypts and authenticates plaintext and authenticates ad, appends
// the result (len(plaintext)+TagSize bytes) to dst and returns the updated
// slice. To encrypt in place, pass dst = plaintext[:0] with TagSize bytes of
// spare capacity.
func (c *Cipher) Seal(dst []byte, n *Nonce, counter uint64, plaintext, ad []byte) []byte {
	return c.aead.Seal(dst, n.set(counter), plaintext, ad)
}

// Open authenticates ciphertext and ad, decrypts the ciphertext, appends the
// plaintext to dst and returns the updated slice. To decrypt in place, pass
// dst = ciphertext[:0]. It returns ErrBadMessage if the message was not
// sealed with this key, counter and ad. Check the counter against the
// ReplayWindow first and mark it only after Open succeeds.
func (c *Cipher) Open(dst []byte, n *Nonce, counter uint64, ciphertext, ad []byte) ([]byte, error) {
	out, err := c.aead.Open(dst, n.set(counter), ciphertext, ad)
	if err != nil {
		return nil, ErrBadMessage
	}
	return out, nil
}
