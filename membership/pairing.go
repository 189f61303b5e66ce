package membership

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
)

// Pairing codes. An issuer hands out a one-time code (NewPairingCode); the
// new node proves it knows the code inside its handshake with the issuer,
// with a MAC of that handshake's hash keyed by the code (Proof), so a
// proof seen on the wire or replayed in another handshake is worthless,
// and the code itself never travels. The issuer answers with the
// certificate and a MAC of its own (Confirmation) that proves to the new
// node that it, too, knew the code: an impostor at the address cannot
// hand the new node a certificate from an authority of its own.
//
// A code is 160 random bits, so that even a party that got a proof (an
// impostor the new node dialled by mistake) cannot find the code from it
// by trying candidates offline.

// CodeSize is the number of random bytes in a pairing code.
const CodeSize = 20

// ProofSize is the size of a pairing proof and of a confirmation.
const ProofSize = sha256.Size

// Domain strings of the two MACs, so neither can stand for the other.
const (
	proofDomain        = "netmesh pairing v1 initiator\x00"
	confirmationDomain = "netmesh pairing v1 responder\x00"
)

var codeEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Code is a pairing code's secret.
type Code [CodeSize]byte

// newCode returns a random code.
func newCode() Code {
	var c Code
	_, _ = rand.Read(c[:]) // never fails (crypto/rand panics instead)
	return c
}

// String returns the code as 32 lowercase base32 characters in groups of
// four: "abcd-efgh-...".
func (c Code) String() string {
	s := codeEncoding.EncodeToString(c[:])
	var b strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}

// ParseCode reads a code in the form String writes; case, dashes and
// spaces do not matter.
func ParseCode(s string) (Code, error) {
	var c Code
	t := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(s))
	if len(t) != codeEncoding.EncodedLen(CodeSize) {
		return c, fmt.Errorf("membership: a pairing code has %d characters, got %d", codeEncoding.EncodedLen(CodeSize), len(t))
	}
	if n, err := codeEncoding.Decode(c[:], []byte(t)); err != nil || n != CodeSize {
		return Code{}, fmt.Errorf("membership: pairing code is not base32")
	}
	return c, nil
}

// Proof returns the new node's proof that it knows c, bound to the
// handshake whose hash (before the message that carries the proof) is
// binding.
func (c Code) Proof(binding []byte) []byte { return c.mac(proofDomain, binding) }

// Confirmation returns the issuer's proof that it knows c, bound to the
// same handshake.
func (c Code) Confirmation(binding []byte) []byte { return c.mac(confirmationDomain, binding) }

func (c Code) mac(domain string, binding []byte) []byte {
	m := hmac.New(sha256.New, c[:])
	m.Write([]byte(domain))
	m.Write(binding)
	return m.Sum(nil)
}
