package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Membership certificates. An authority (an ed25519 key kept apart from
// every node, see docs/OPERATIONS.md) signs a certificate for a node key:
// the node's name, its groups, a validity window and the authority's own
// key. A closed mesh admits a peer only with a certificate from an
// authority it trusts (package membership checks it during the
// handshake); docs/WIRE.md draws the byte layout.

// Certificate limits.
const (
	// MaxCertNameLen is the longest certificate name, in bytes.
	MaxCertNameLen = 64
	// MaxCertGroups is the most groups one certificate names: a node's
	// roles, not a directory. It keeps a certificate small enough to ride
	// in a handshake message (see MaxCertificateSize).
	MaxCertGroups = 8
	// MaxCertGroupLen is the longest group name, in bytes.
	MaxCertGroupLen = 32
	// MaxCertValidity (366 days) is the longest validity window a
	// certificate may have. It bounds how long a revocation must be
	// remembered: after RevokedAt + MaxCertValidity every certificate it
	// covers has expired (see Revocation.Expires).
	MaxCertValidity = 366 * 24 * time.Hour
	// CertClockSkew (1 minute) is how long before its NotBefore a
	// certificate is accepted already: a peer whose clock is a little
	// behind the issuer's still accepts a certificate issued a moment ago.
	CertClockSkew = time.Minute

	// MinCertificateSize is the smallest encoded certificate: a
	// one-byte name and no groups.
	MinCertificateSize = certHeaderLen + 1 + 1 + ed25519.SignatureSize
	// MaxCertificateSize is the largest encoded certificate: 476 bytes.
	MaxCertificateSize = certHeaderLen + MaxCertNameLen + 1 + MaxCertGroups*(1+MaxCertGroupLen) + ed25519.SignatureSize

	certVersion   = 1
	certHeaderLen = 83 // version .. name length
	// maxCertUnix is 9999-12-31T23:59:59Z, as for tokens: every encoded
	// second count is exactly representable, so decoding is canonical.
	maxCertUnix = maxTokenUnix
)

// certDomain prefixes the bytes an authority signs, so that a
// certificate signature can never be mistaken for any other netmesh
// signature.
const certDomain = "netmesh membership certificate v1\x00"

// Certificate errors. Every failure of DecodeCertificate, Validate and
// Verify wraps exactly one of them.
var (
	// ErrCertMalformed reports bytes that are not a well-formed
	// certificate, or a certificate whose fields break a rule.
	ErrCertMalformed = errors.New("identity: malformed certificate")
	// ErrCertSignature reports a certificate whose signature does not
	// verify under its authority's key.
	ErrCertSignature = errors.New("identity: bad certificate signature")
	// ErrCertUntrusted reports a certificate issued by an authority the
	// checker does not trust.
	ErrCertUntrusted = errors.New("identity: certificate authority not trusted")
	// ErrCertKeyMismatch reports a certificate issued for another node
	// key than the one the peer authenticated with.
	ErrCertKeyMismatch = errors.New("identity: certificate is for another key")
	// ErrCertExpired reports a certificate used at or after its NotAfter.
	ErrCertExpired = errors.New("identity: certificate expired")
	// ErrCertNotYetValid reports a certificate used before its NotBefore.
	ErrCertNotYetValid = errors.New("identity: certificate not yet valid")
)

// Certificate says that the holder of NodeKey is a member called Name, in
// Groups, from NotBefore until NotAfter, on the word of Authority. It is
// useless without NodeKey's private key: a checker compares NodeKey with
// the key the peer authenticated its session with.
//
// Times have one-second resolution; a certificate is valid for NotBefore
// <= now < NotAfter, and accepted from CertClockSkew before NotBefore.
// Groups are sorted and distinct.
type Certificate struct {
	Name      string
	Groups    []string
	NotBefore time.Time
	NotAfter  time.Time
	NodeKey   ed25519.PublicKey
	Authority ed25519.PublicKey
	Signature []byte
}

// CertificateTemplate is what IssueCertificate puts in a certificate.
type CertificateTemplate struct {
	// NodeKey is the key of the node the certificate is for. Required.
	NodeKey ed25519.PublicKey
	// Name names the node: 1 to MaxCertNameLen bytes of a-z, 0-9 and
	// "-_.". Required.
	Name string
	// Groups are the node's groups, each 1 to MaxCertGroupLen bytes of the
	// name alphabet, at most MaxCertGroups; duplicates are dropped and the
	// rest sorted.
	Groups []string
	// NotBefore is when the certificate becomes valid; zero means now.
	// Truncated to the second.
	NotBefore time.Time
	// NotAfter is when it stops being valid: required, after NotBefore
	// and at most MaxCertValidity after it. Truncated to the second.
	NotAfter time.Time
}

// IssueCertificate returns a certificate for t signed by authority.
func IssueCertificate(authority *Identity, t CertificateTemplate) (*Certificate, error) {
	if t.NotBefore.IsZero() {
		t.NotBefore = time.Now()
	}
	groups := slices.Clone(t.Groups)
	slices.Sort(groups)
	c := &Certificate{
		Name:      t.Name,
		Groups:    slices.Compact(groups),
		NotBefore: time.Unix(t.NotBefore.Unix(), 0),
		NotAfter:  time.Unix(t.NotAfter.Unix(), 0),
		NodeKey:   bytes.Clone(t.NodeKey),
		Authority: bytes.Clone(authority.PublicKey()),
	}
	if len(c.Groups) == 0 {
		c.Groups = nil
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	c.Signature = authority.Sign(c.appendSigned(make([]byte, 0, len(certDomain)+c.bodyLen())))
	return c, nil
}

// check validates the fields that do not need the signature.
func (c *Certificate) check() error {
	switch {
	case len(c.NodeKey) != ed25519.PublicKeySize || len(c.Authority) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: node and authority must be %d-byte keys", ErrCertMalformed, ed25519.PublicKeySize)
	case c.NotBefore.Unix() < 0 || c.NotAfter.Unix() > maxCertUnix:
		return fmt.Errorf("%w: times must lie in 1970..9999", ErrCertMalformed)
	case c.NotAfter.Unix() <= c.NotBefore.Unix():
		return fmt.Errorf("%w: not-after %v not after not-before %v", ErrCertMalformed, c.NotAfter.UTC(), c.NotBefore.UTC())
	case c.NotAfter.Unix()-c.NotBefore.Unix() > int64(MaxCertValidity/time.Second):
		return fmt.Errorf("%w: valid for %v, more than %v", ErrCertMalformed, c.NotAfter.Sub(c.NotBefore), MaxCertValidity)
	case len(c.Groups) > MaxCertGroups:
		return fmt.Errorf("%w: %d groups, at most %d", ErrCertMalformed, len(c.Groups), MaxCertGroups)
	}
	if err := checkCertLabel("name", c.Name, MaxCertNameLen); err != nil {
		return err
	}
	for i, g := range c.Groups {
		if err := checkCertLabel("group", g, MaxCertGroupLen); err != nil {
			return err
		}
		if i > 0 && c.Groups[i-1] >= g {
			return fmt.Errorf("%w: groups not sorted and distinct at %q", ErrCertMalformed, g)
		}
	}
	return nil
}

// ValidCertLabel reports whether s is a valid certificate name or group
// of at most max bytes: 1..max bytes of a-z, 0-9 and "-_.".
func ValidCertLabel(s string, max int) bool { return checkCertLabel("", s, max) == nil }

func checkCertLabel(what, s string, max int) error {
	if len(s) == 0 || len(s) > max {
		return fmt.Errorf("%w: %s must be 1..%d bytes, got %d", ErrCertMalformed, what, max, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: %s %q has %q at byte %d (a-z, 0-9, -_. allowed)", ErrCertMalformed, what, s, c, i)
		}
	}
	return nil
}

// bodyLen is the length of the encoding without the signature.
func (c *Certificate) bodyLen() int {
	n := certHeaderLen + len(c.Name) + 1
	for _, g := range c.Groups {
		n += 1 + len(g)
	}
	return n
}

// appendSigned appends the domain prefix and the body: the bytes the
// authority signs.
func (c *Certificate) appendSigned(b []byte) []byte {
	return c.appendBody(append(b, certDomain...))
}

// appendBody appends the encoding without the signature.
func (c *Certificate) appendBody(b []byte) []byte {
	b = append(b, certVersion, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotAfter.Unix()))
	b = append(b, c.NodeKey...)
	b = append(b, c.Authority...)
	b = append(b, byte(len(c.Name)))
	b = append(b, c.Name...)
	b = append(b, byte(len(c.Groups)))
	for _, g := range c.Groups {
		b = append(b, byte(len(g)))
		b = append(b, g...)
	}
	return b
}

// MarshalBinary encodes the certificate (layout in docs/WIRE.md). It
// fails with ErrCertMalformed if the certificate breaks a rule or is
// unsigned.
func (c *Certificate) MarshalBinary() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if len(c.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: unsigned", ErrCertMalformed)
	}
	b := c.appendBody(make([]byte, 0, c.bodyLen()+ed25519.SignatureSize))
	return append(b, c.Signature...), nil
}

// DecodeCertificate decodes a certificate encoded by MarshalBinary. It
// checks the structure only (exact length, version, flags, labels, sorted
// groups, times), not the signature or trust: use Verify. The result does
// not alias b. Errors wrap ErrCertMalformed; arbitrary input never panics.
func DecodeCertificate(b []byte) (*Certificate, error) {
	if len(b) < MinCertificateSize || len(b) > MaxCertificateSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d..%d", ErrCertMalformed, len(b), MinCertificateSize, MaxCertificateSize)
	}
	if b[0] != certVersion || b[1] != 0 {
		return nil, fmt.Errorf("%w: version %d, flags %#x", ErrCertMalformed, b[0], b[1])
	}
	c := &Certificate{
		NotBefore: time.Unix(int64(binary.BigEndian.Uint64(b[2:])), 0),
		NotAfter:  time.Unix(int64(binary.BigEndian.Uint64(b[10:])), 0),
		NodeKey:   bytes.Clone(b[18:50]),
		Authority: bytes.Clone(b[50:82]),
	}
	body := b[:len(b)-ed25519.SignatureSize]
	rest := body[certHeaderLen-1:]
	name, rest, ok := cutLabel(rest)
	if !ok || len(rest) < 1 {
		return nil, fmt.Errorf("%w: truncated name", ErrCertMalformed)
	}
	c.Name = name
	n := int(rest[0])
	rest = rest[1:]
	if n > MaxCertGroups {
		return nil, fmt.Errorf("%w: %d groups, at most %d", ErrCertMalformed, n, MaxCertGroups)
	}
	for range n {
		var g string
		if g, rest, ok = cutLabel(rest); !ok {
			return nil, fmt.Errorf("%w: truncated group", ErrCertMalformed)
		}
		c.Groups = append(c.Groups, g)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the groups", ErrCertMalformed, len(rest))
	}
	c.Signature = bytes.Clone(b[len(body):])
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// cutLabel splits a one-byte length and that many bytes off b.
func cutLabel(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

// Validate checks everything about the certificate but its signature, in
// this order: its fields, that authorities (the trusted authority keys)
// hold its Authority, that it was issued for key (the key the peer
// authenticated with), and that it is valid at now (or will be within
// CertClockSkew). Errors wrap
// ErrCertMalformed, ErrCertUntrusted, ErrCertKeyMismatch,
// ErrCertNotYetValid or ErrCertExpired. The checks are cheap; Verify adds
// the signature.
func (c *Certificate) Validate(now time.Time, key ed25519.PublicKey, authorities []ed25519.PublicKey) error {
	if err := c.check(); err != nil {
		return err
	}
	if !slices.ContainsFunc(authorities, func(a ed25519.PublicKey) bool { return bytes.Equal(a, c.Authority) }) {
		return fmt.Errorf("%w: %s", ErrCertUntrusted, KeyFingerprint(c.Authority))
	}
	if !bytes.Equal(c.NodeKey, key) {
		return ErrCertKeyMismatch
	}
	switch s := now.Unix(); {
	case s < c.NotBefore.Unix()-int64(CertClockSkew/time.Second):
		return fmt.Errorf("%w: valid from %v", ErrCertNotYetValid, c.NotBefore.UTC())
	case s >= c.NotAfter.Unix():
		return fmt.Errorf("%w: at %v", ErrCertExpired, c.NotAfter.UTC())
	}
	return nil
}

// VerifySignature checks the authority's signature. Errors wrap
// ErrCertMalformed or ErrCertSignature.
func (c *Certificate) VerifySignature() error {
	if err := c.check(); err != nil {
		return err
	}
	var buf [len(certDomain) + MaxCertificateSize]byte
	if !Verify(c.Authority, c.appendSigned(buf[:0]), c.Signature) {
		return ErrCertSignature
	}
	return nil
}

// Verify is Validate and then VerifySignature: the cheap checks first,
// the signature last.
func (c *Certificate) Verify(now time.Time, key ed25519.PublicKey, authorities []ed25519.PublicKey) error {
	if err := c.Validate(now, key, authorities); err != nil {
		return err
	}
	return c.VerifySignature()
}

// InGroup reports whether the certificate names any of groups. No groups
// asked for is false.
func (c *Certificate) InGroup(groups ...string) bool {
	if c == nil {
		return false
	}
	for _, g := range groups {
		if _, ok := slices.BinarySearch(c.Groups, g); ok {
			return true
		}
	}
	return false
}

// String describes the certificate on one line, for logs and netnode.
func (c *Certificate) String() string {
	if c == nil {
		return "<no certificate>"
	}
	return fmt.Sprintf("name=%s groups=%s node=%s valid=%s..%s authority=%s",
		c.Name, strings.Join(c.Groups, ","), NodeIDFromKey(c.NodeKey).Short(),
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), KeyFingerprint(c.Authority))
}

// KeyFingerprint returns the first 8 bytes of an ed25519 key in hex: short
// enough for logs and errors, long enough to tell authorities apart.
func KeyFingerprint(k ed25519.PublicKey) string {
	if len(k) < 8 {
		return hex.EncodeToString(k)
	}
	return hex.EncodeToString(k[:8])
}
