package noise

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"github.com/flynn/noise"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// Suite is the AEAD cipher of a handshake and of the session it makes. The
// Diffie-Hellman function (X25519) and the hash (BLAKE2s) are the same in
// every suite. The suite is part of the Noise protocol name, which every
// handshake hashes first, so two sides that disagree on it fail the
// handshake's first authenticated payload instead of making a session.
type Suite uint8

// The supported suites.
const (
	// SuiteChaChaPoly is ChaCha20-Poly1305 (Noise "ChaChaPoly"): fast in
	// constant time on any CPU, as in WireGuard.
	SuiteChaChaPoly Suite = iota + 1
	// SuiteAESGCM is AES-256-GCM (Noise "AESGCM"): about twice as fast as
	// ChaCha20-Poly1305 on a CPU with AES and carry-less multiply
	// instructions, and neither fast nor safe from timing side channels
	// without them; PreferredSuite picks it only where they exist.
	SuiteAESGCM
)

// String returns the suite's Noise name ("ChaChaPoly", "AESGCM") or
// "Suite(n)".
func (s Suite) String() string {
	switch s {
	case SuiteChaChaPoly:
		return "ChaChaPoly"
	case SuiteAESGCM:
		return "AESGCM"
	}
	return fmt.Sprintf("Suite(%d)", uint8(s))
}

// Valid reports whether s is a supported suite.
func (s Suite) Valid() bool { return s.cipherFunc() != nil }

// cipherFunc is flynn/noise's cipher of s, which names the suite in the
// handshake's protocol name; nil for an unknown suite.
func (s Suite) cipherFunc() noise.CipherFunc {
	switch s {
	case SuiteChaChaPoly:
		return noise.CipherChaChaPoly
	case SuiteAESGCM:
		return noise.CipherAESGCM
	}
	return nil
}

// PreferredSuite returns the faster suite on this CPU: SuiteAESGCM where
// HardwareAES, else SuiteChaChaPoly.
func PreferredSuite() Suite {
	if HardwareAES() {
		return SuiteAESGCM
	}
	return SuiteChaChaPoly
}

// HardwareAES reports whether Go's AES-GCM runs on hardware instructions
// here (x86-64 with AES-NI and PCLMULQDQ, arm64 with AES and PMULL), in
// constant time. Without them crypto/aes falls back to table lookups that
// are not, and a node should neither start nor answer AES-GCM handshakes.
func HardwareAES() bool {
	return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ || cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
}

// Cipher is one direction of a session's transport encryption: the AEAD
// of its Suite with the counter passed explicitly, so packets can be
// sealed and opened in any order. It is safe for concurrent use.
//
// The caller owns the counter: it must never seal two messages with the same
// counter, nor use a counter >= RejectAfterMessages.
type Cipher struct {
	aead cipher.AEAD
	// bigEndian is the nonce's counter order: little-endian for
	// ChaChaPoly, big-endian for AESGCM, as the Noise specification has
	// them.
	bigEndian bool
}

// Nonce is a caller-owned nonce buffer (12 bytes in both suites). Seal and
// Open allocate nothing when it lives in memory that is already on the
// heap, such as a pooled packet buffer or session struct. One Nonce must
// not be used by two goroutines at once.
type Nonce [chacha20poly1305.NonceSize]byte

// NewCipher returns a Cipher of suite s for a 32-byte key. Handshake.Keys
// builds the session's ciphers; this is for tests and benchmarks.
func NewCipher(s Suite, key []byte) (*Cipher, error) {
	var aead cipher.AEAD
	var err error
	switch s {
	case SuiteChaChaPoly:
		aead, err = chacha20poly1305.New(key)
	case SuiteAESGCM:
		if len(key) != 32 {
			return nil, fmt.Errorf("noise: AES-256-GCM key is %d bytes, want 32", len(key))
		}
		var block cipher.Block
		if block, err = aes.NewCipher(key); err == nil {
			aead, err = cipher.NewGCM(block)
		}
	default:
		return nil, fmt.Errorf("%w: unknown suite %v", ErrBadConfig, s)
	}
	if err != nil {
		return nil, fmt.Errorf("noise: %w", err)
	}
	return &Cipher{aead: aead, bigEndian: s == SuiteAESGCM}, nil
}

// set writes the Noise nonce for counter: 4 zero bytes, then the counter,
// little-endian (ChaChaPoly) or big-endian (AESGCM).
func (n *Nonce) set(counter uint64, bigEndian bool) []byte {
	n[0], n[1], n[2], n[3] = 0, 0, 0, 0
	if bigEndian {
		binary.BigEndian.PutUint64(n[4:], counter)
	} else {
		binary.LittleEndian.PutUint64(n[4:], counter)
	}
	return n[:]
}

// Seal encrypts and authenticates plaintext and authenticates ad, appends
// the result (len(plaintext)+TagSize bytes) to dst and returns the updated
// slice. To encrypt in place, pass dst = plaintext[:0] with TagSize bytes of
// spare capacity.
func (c *Cipher) Seal(dst []byte, n *Nonce, counter uint64, plaintext, ad []byte) []byte {
	return c.aead.Seal(dst, n.set(counter, c.bigEndian), plaintext, ad)
}

// Open authenticates ciphertext and ad, decrypts the ciphertext, appends the
// plaintext to dst and returns the updated slice. To decrypt in place, pass
// dst = ciphertext[:0]. It returns ErrBadMessage if the message was not
// sealed with this key, counter and ad. Check the counter against the
// ReplayWindow first and mark it only after Open succeeds.
func (c *Cipher) Open(dst []byte, n *Nonce, counter uint64, ciphertext, ad []byte) ([]byte, error) {
	out, err := c.aead.Open(dst, n.set(counter, c.bigEndian), ciphertext, ad)
	if err != nil {
		return nil, ErrBadMessage
	}
	return out, nil
}
