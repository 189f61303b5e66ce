package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Revocations. An authority revokes a node key by signing a Revocation: it
// covers every certificate that authority issued for that key with a
// NotBefore at or before RevokedAt. Certificates issued later (a node
// admitted again on purpose) are not covered. docs/WIRE.md draws the
// layout.

// RevocationSize is the exact size of an encoded revocation.
const RevocationSize = 1 + 8 + 2*ed25519.PublicKeySize + ed25519.SignatureSize

const (
	revocationVersion = 1
	// revocationDomain prefixes the signed bytes (see certDomain).
	revocationDomain = "netmesh membership revocation v1\x00"
)

// Revocation errors.
var (
	// ErrRevocationMalformed reports bytes that are not a well-formed
	// revocation.
	ErrRevocationMalformed = errors.New("identity: malformed revocation")
	// ErrRevocationSignature reports a revocation whose signature does
	// not verify under its authority's key.
	ErrRevocationSignature = errors.New("identity: bad revocation signature")
)

// Revocation withdraws the certificates Authority issued for NodeKey that
// start at or before RevokedAt (one-second resolution).
type Revocation struct {
	Authority ed25519.PublicKey
	NodeKey   ed25519.PublicKey
	RevokedAt time.Time
	Signature []byte
}

// IssueRevocation returns authority's revocation of nodeKey at time at
// (zero means now).
func IssueRevocation(authority *Identity, nodeKey ed25519.PublicKey, at time.Time) (*Revocation, error) {
	if at.IsZero() {
		at = time.Now()
	}
	r := &Revocation{
		Authority: bytes.Clone(authority.PublicKey()),
		NodeKey:   bytes.Clone(nodeKey),
		RevokedAt: time.Unix(at.Unix(), 0),
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	var buf [len(revocationDomain) + RevocationSize]byte
	r.Signature = authority.Sign(r.appendSigned(buf[:0]))
	return r, nil
}

func (r *Revocation) check() error {
	switch {
	case len(r.NodeKey) != ed25519.PublicKeySize || len(r.Authority) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: node and authority must be %d-byte keys", ErrRevocationMalformed, ed25519.PublicKeySize)
	case r.RevokedAt.Unix() < 0 || r.RevokedAt.Unix() > maxCertUnix:
		return fmt.Errorf("%w: time must lie in 1970..9999", ErrRevocationMalformed)
	}
	return nil
}

func (r *Revocation) appendSigned(b []byte) []byte {
	return r.appendBody(append(b, revocationDomain...))
}

func (r *Revocation) appendBody(b []byte) []byte {
	b = append(b, revocationVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.RevokedAt.Unix()))
	b = append(b, r.NodeKey...)
	return append(b, r.Authority...)
}

// MarshalBinary encodes the revocation: RevocationSize bytes.
func (r *Revocation) MarshalBinary() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if len(r.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: unsigned", ErrRevocationMalformed)
	}
	return append(r.appendBody(make([]byte, 0, RevocationSize)), r.Signature...), nil
}

// DecodeRevocation decodes a revocation encoded by MarshalBinary. It
// checks the structure, not the signature (VerifySignature). The result
// does not alias b.
func DecodeRevocation(b []byte) (*Revocation, error) {
	if len(b) != RevocationSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrRevocationMalformed, len(b), RevocationSize)
	}
	if b[0] != revocationVersion {
		return nil, fmt.Errorf("%w: version %d", ErrRevocationMalformed, b[0])
	}
	r := &Revocation{
		RevokedAt: time.Unix(int64(binary.BigEndian.Uint64(b[1:])), 0),
		NodeKey:   bytes.Clone(b[9:41]),
		Authority: bytes.Clone(b[41:73]),
		Signature: bytes.Clone(b[73:]),
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifySignature checks the authority's signature.
func (r *Revocation) VerifySignature() error {
	if err := r.check(); err != nil {
		return err
	}
	var buf [len(revocationDomain) + RevocationSize]byte
	if !Verify(r.Authority, r.appendSigned(buf[:0]), r.Signature) {
		return ErrRevocationSignature
	}
	return nil
}

// Covers reports whether r withdraws c: the same authority and node key,
// and c starts at or before RevokedAt.
func (r *Revocation) Covers(c *Certificate) bool {
	return bytes.Equal(r.Authority, c.Authority) && bytes.Equal(r.NodeKey, c.NodeKey) &&
		c.NotBefore.Unix() <= r.RevokedAt.Unix()
}

// Expires returns when the revocation stops mattering: RevokedAt +
// MaxCertValidity, when every certificate it covers has expired.
func (r *Revocation) Expires() time.Time { return r.RevokedAt.Add(MaxCertValidity) }

// String describes the revocation on one line.
func (r *Revocation) String() string {
	return fmt.Sprintf("node=%s key=%s revoked-at=%s authority=%s", NodeIDFromKey(r.NodeKey).Short(),
		KeyFingerprint(r.NodeKey), r.RevokedAt.UTC().Format(time.RFC3339), KeyFingerprint(r.Authority))
}
