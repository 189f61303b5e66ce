package identity

import (
	"bytes"
	"container/list"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Permission is a set of rights a PermissionToken grants, as bits.
type Permission uint8

// Permissions.
const (
	// PermSubscribe allows the subject to subscribe to the channel(s).
	PermSubscribe Permission = 1 << iota
	// PermPublish allows the subject to publish on the channel(s).
	PermPublish

	permAll = PermSubscribe | PermPublish
)

// String returns "subscribe", "publish", "subscribe+publish" or "none".
func (p Permission) String() string {
	switch p & permAll {
	case PermSubscribe:
		return "subscribe"
	case PermPublish:
		return "publish"
	case permAll:
		return "subscribe+publish"
	}
	return "none"
}

// Token limits and layout (see docs/CHANNELS.md for the byte diagram).
const (
	// TokenIDSize is the size of a token's unique id: 128 random bits, so
	// ids never collide by chance and revocation lists can name a token.
	TokenIDSize = 16
	// MaxTokenChannelLen is the longest channel name or prefix a token can
	// name; it equals the longest channel name.
	MaxTokenChannelLen = 128
	// MinTokenSize and MaxTokenSize bound an encoded token in bytes.
	MinTokenSize = tokenHeaderLen + 1 + ed25519.SignatureSize
	// MaxTokenSize is the largest encoded token: 292 bytes.
	MaxTokenSize = tokenHeaderLen + MaxTokenChannelLen + ed25519.SignatureSize

	tokenVersion    = 1
	tokenHeaderLen  = 100 // version .. expiry, before the channel
	tokenFlagPrefix = 1

	// maxTokenUnix is 9999-12-31T23:59:59Z. Bounding the times keeps every
	// encoded second count exactly representable as a time.Time, so
	// decoding is canonical.
	maxTokenUnix = 253402300799
)

// tokenDomain prefixes the signed bytes so that a token signature can never
// be mistaken for any other netmesh signature.
const tokenDomain = "netmesh permission token v1\x00"

// Token errors. Every failure of Decode, Verify and Authorize wraps exactly
// one of them, so a caller (and a rejected subscriber) can tell them apart.
var (
	// ErrTokenMalformed reports bytes or text that are not a well-formed
	// token, or a token whose fields break a rule (empty permissions,
	// bad channel, expiry not after not-before).
	ErrTokenMalformed = errors.New("identity: malformed token")
	// ErrTokenSignature reports a token whose signature does not verify
	// under its issuer key.
	ErrTokenSignature = errors.New("identity: bad token signature")
	// ErrTokenExpired reports a token used at or after its expiry.
	ErrTokenExpired = errors.New("identity: token expired")
	// ErrTokenNotYetValid reports a token used before its not-before time.
	ErrTokenNotYetValid = errors.New("identity: token not yet valid")
	// ErrTokenUntrustedIssuer reports a token issued by a key the checker
	// does not trust.
	ErrTokenUntrustedIssuer = errors.New("identity: token issuer not trusted")
	// ErrTokenWrongSubject reports a token issued to another key.
	ErrTokenWrongSubject = errors.New("identity: token issued to another subject")
	// ErrTokenNotPermitted reports a token that does not grant the
	// permission asked for on the channel asked for.
	ErrTokenNotPermitted = errors.New("identity: token does not permit this")
)

// PermissionToken lets the holder of the Subject key subscribe to and/or
// publish on a channel (or every channel under a prefix) between NotBefore
// and Expiry, on the word of the Issuer key. Tokens are bearer-proof only
// together with the subject's key: a checker compares Subject with the key
// the peer authenticated its session with, so a stolen token is useless to
// anyone else.
//
// Times have one-second resolution. A token is valid for NotBefore <= now <
// Expiry.
type PermissionToken struct {
	ID        [TokenIDSize]byte
	Issuer    ed25519.PublicKey
	Subject   ed25519.PublicKey
	Perms     Permission
	Channel   string // the channel name, or a prefix of names when Prefix
	Prefix    bool
	NotBefore time.Time
	Expiry    time.Time
	Signature []byte
}

// TokenGrant is what IssueToken puts in a token.
type TokenGrant struct {
	Subject ed25519.PublicKey
	Perms   Permission
	// Channel is a channel name (1..MaxTokenChannelLen characters of
	// lowercase letters, digits and "-_./:"), or a name prefix if Prefix.
	Channel string
	Prefix  bool
	// NotBefore is when the token becomes valid; zero means now. It is
	// truncated to the second.
	NotBefore time.Time
	// Expiry is when the token stops being valid: required, truncated to
	// the second and after NotBefore.
	Expiry time.Time
}

// IssueToken returns a token for g signed by issuer, with a fresh random id.
func IssueToken(issuer *Identity, g TokenGrant) (*PermissionToken, error) {
	if g.NotBefore.IsZero() {
		g.NotBefore = time.Now()
	}
	t := &PermissionToken{
		Issuer:    issuer.PublicKey(),
		Subject:   g.Subject,
		Perms:     g.Perms,
		Channel:   g.Channel,
		Prefix:    g.Prefix,
		NotBefore: time.Unix(g.NotBefore.Unix(), 0),
		Expiry:    time.Unix(g.Expiry.Unix(), 0),
	}
	if _, err := rand.Read(t.ID[:]); err != nil {
		return nil, fmt.Errorf("identity: reading random token id: %w", err)
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	b := t.appendSigned(make([]byte, 0, len(tokenDomain)+tokenHeaderLen+len(t.Channel)))
	t.Signature = issuer.Sign(b)
	return t, nil
}

// check validates the fields that do not need the signature.
func (t *PermissionToken) check() error {
	switch {
	case len(t.Issuer) != ed25519.PublicKeySize || len(t.Subject) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: issuer and subject must be %d-byte keys", ErrTokenMalformed, ed25519.PublicKeySize)
	case t.Perms == 0 || t.Perms&^permAll != 0:
		return fmt.Errorf("%w: permissions %#x", ErrTokenMalformed, uint8(t.Perms))
	case t.NotBefore.Unix() < 0 || t.Expiry.Unix() > maxTokenUnix:
		return fmt.Errorf("%w: times must lie in 1970..9999", ErrTokenMalformed)
	case t.Expiry.Unix() <= t.NotBefore.Unix():
		return fmt.Errorf("%w: expiry %v not after not-before %v", ErrTokenMalformed, t.Expiry.UTC(), t.NotBefore.UTC())
	}
	return checkTokenChannel(t.Channel)
}

// checkTokenChannel applies the channel-name rules of package channel
// (which cannot be imported here): 1..MaxTokenChannelLen characters of
// a-z 0-9 - _ . / :. A prefix follows the same rules.
func checkTokenChannel(s string) error {
	if len(s) == 0 || len(s) > MaxTokenChannelLen {
		return fmt.Errorf("%w: channel must be 1..%d characters, got %d", ErrTokenMalformed, MaxTokenChannelLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-_./:", c) >= 0) {
			return fmt.Errorf("%w: channel %q has %q at byte %d", ErrTokenMalformed, s, c, i)
		}
	}
	return nil
}

// appendSigned appends the domain prefix and the encoded token without its
// signature: the bytes the issuer signs.
func (t *PermissionToken) appendSigned(b []byte) []byte {
	b = append(b, tokenDomain...)
	return t.appendBody(b)
}

// appendBody appends the encoding without the signature.
func (t *PermissionToken) appendBody(b []byte) []byte {
	var flags byte
	if t.Prefix {
		flags |= tokenFlagPrefix
	}
	b = append(b, tokenVersion, byte(t.Perms), flags, byte(len(t.Channel)))
	b = append(b, t.ID[:]...)
	b = append(b, t.Issuer...)
	b = append(b, t.Subject...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(t.Expiry.Unix()))
	return append(b, t.Channel...)
}

// MarshalBinary encodes the token (layout in docs/CHANNELS.md). It fails
// with ErrTokenMalformed if the token breaks a rule or is unsigned.
func (t *PermissionToken) MarshalBinary() ([]byte, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if len(t.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: unsigned", ErrTokenMalformed)
	}
	b := t.appendBody(make([]byte, 0, tokenHeaderLen+len(t.Channel)+ed25519.SignatureSize))
	return append(b, t.Signature...), nil
}

// DecodeToken decodes a token encoded by MarshalBinary. It checks the
// structure only (exact length, version, flags, permissions, channel
// alphabet, times), not the signature: use Verify or Authorize. The result
// does not alias b. Errors wrap ErrTokenMalformed; arbitrary input never
// panics.
func DecodeToken(b []byte) (*PermissionToken, error) {
	if len(b) < MinTokenSize || len(b) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d..%d", ErrTokenMalformed, len(b), MinTokenSize, MaxTokenSize)
	}
	if b[0] != tokenVersion {
		return nil, fmt.Errorf("%w: version %d", ErrTokenMalformed, b[0])
	}
	if b[2]&^tokenFlagPrefix != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrTokenMalformed, b[2])
	}
	n := int(b[3])
	if len(b) != tokenHeaderLen+n+ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: %d bytes, channel length %d needs %d", ErrTokenMalformed, len(b), n, tokenHeaderLen+n+ed25519.SignatureSize)
	}
	nb := int64(binary.BigEndian.Uint64(b[84:]))
	exp := int64(binary.BigEndian.Uint64(b[92:]))
	t := &PermissionToken{
		Issuer:    bytes.Clone(b[20:52]),
		Subject:   bytes.Clone(b[52:84]),
		Perms:     Permission(b[1]),
		Channel:   string(b[tokenHeaderLen : tokenHeaderLen+n]),
		Prefix:    b[2]&tokenFlagPrefix != 0,
		NotBefore: time.Unix(nb, 0),
		Expiry:    time.Unix(exp, 0),
		Signature: bytes.Clone(b[tokenHeaderLen+n:]),
	}
	copy(t.ID[:], b[4:20])
	if err := t.check(); err != nil {
		return nil, err
	}
	return t, nil
}

var tokenText = base64.RawURLEncoding

// String returns the token's text form: the binary encoding in unpadded
// base64url, safe for command lines and URLs. A token that cannot be
// encoded prints as "<invalid token>".
func (t *PermissionToken) String() string {
	b, err := t.MarshalBinary()
	if err != nil {
		return "<invalid token>"
	}
	return tokenText.EncodeToString(b)
}

// MarshalText implements encoding.TextMarshaler with the form of String.
func (t *PermissionToken) MarshalText() ([]byte, error) {
	b, err := t.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return tokenText.AppendEncode(nil, b), nil
}

// ParseToken decodes the text form produced by String. Errors wrap
// ErrTokenMalformed.
func ParseToken(s string) (*PermissionToken, error) {
	if len(s) > tokenText.EncodedLen(MaxTokenSize) {
		return nil, fmt.Errorf("%w: text of %d characters is too long", ErrTokenMalformed, len(s))
	}
	b, err := tokenText.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url: %v", ErrTokenMalformed, err)
	}
	return DecodeToken(b)
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *PermissionToken) UnmarshalText(b []byte) error {
	p, err := ParseToken(string(b))
	if err != nil {
		return err
	}
	*t = *p
	return nil
}

// Verify checks the token's fields, its validity period at now and its
// signature. Errors wrap ErrTokenMalformed, ErrTokenNotYetValid,
// ErrTokenExpired or ErrTokenSignature (checked in that order, the
// signature last because it is the costly part).
func (t *PermissionToken) Verify(now time.Time) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := t.checkTime(now); err != nil {
		return err
	}
	return t.verifySignature()
}

func (t *PermissionToken) checkTime(now time.Time) error {
	switch s := now.Unix(); {
	case s < t.NotBefore.Unix():
		return fmt.Errorf("%w: valid from %v", ErrTokenNotYetValid, t.NotBefore.UTC())
	case s >= t.Expiry.Unix():
		return fmt.Errorf("%w: at %v", ErrTokenExpired, t.Expiry.UTC())
	}
	return nil
}

func (t *PermissionToken) verifySignature() error {
	var buf [len(tokenDomain) + tokenHeaderLen + MaxTokenChannelLen]byte
	if !Verify(t.Issuer, t.appendSigned(buf[:0]), t.Signature) {
		return ErrTokenSignature
	}
	return nil
}

// Permits reports whether the token grants every permission in p on
// channel name: Channel equals name, or Prefix is set and name starts with
// Channel. It does not check times or the signature.
func (t *PermissionToken) Permits(name string, p Permission) bool {
	if p == 0 || t.Perms&p != p {
		return false
	}
	if t.Prefix {
		return strings.HasPrefix(name, t.Channel)
	}
	return name == t.Channel
}

// TokenRequest is what a token must allow for Authorize to accept it.
type TokenRequest struct {
	// Subject is the key the requester authenticated with.
	Subject ed25519.PublicKey
	// Channel is the channel name asked for.
	Channel string
	// Perm is the permission asked for.
	Perm Permission
	// Issuers are the trusted issuer keys. Empty trusts no issuer.
	Issuers []ed25519.PublicKey
}

// Authorize checks that the token is well formed, issued by one of
// r.Issuers to r.Subject, grants r.Perm on r.Channel, is valid at now and is
// correctly signed: cheap checks first, the signature last. Errors wrap
// ErrTokenMalformed, ErrTokenUntrustedIssuer, ErrTokenWrongSubject,
// ErrTokenNotPermitted, ErrTokenNotYetValid, ErrTokenExpired or
// ErrTokenSignature.
func (t *PermissionToken) Authorize(now time.Time, r TokenRequest) error {
	if err := t.authorizeCheap(now, r); err != nil {
		return err
	}
	return t.verifySignature()
}

func (t *PermissionToken) authorizeCheap(now time.Time, r TokenRequest) error {
	if err := t.check(); err != nil {
		return err
	}
	trusted := false
	for _, k := range r.Issuers {
		if bytes.Equal(k, t.Issuer) {
			trusted = true
			break
		}
	}
	switch {
	case !trusted:
		return ErrTokenUntrustedIssuer
	case !bytes.Equal(t.Subject, r.Subject):
		return ErrTokenWrongSubject
	case !t.Permits(r.Channel, r.Perm):
		return fmt.Errorf("%w: %s on %q", ErrTokenNotPermitted, r.Perm, r.Channel)
	}
	return t.checkTime(now)
}

// DefaultTokenCacheSize is the capacity of a TokenCache made with size 0:
// 4096 entries of about 300 bytes, ~1.2 MB.
const DefaultTokenCacheSize = 4096

// TokenCache remembers tokens whose signature verified, so checking the
// same token again (a re-subscription, a second channel under a prefix
// token) skips the ed25519 verification (~50 µs) and costs a map lookup.
// Only the signature result is cached: times, subject, issuer trust and
// permissions are checked on every call. Entries are keyed by the token's
// complete content, signature included, so a forged token that reuses a
// cached token's id is not a hit. The cache holds at most its size in
// entries and forgets the least recently used. It is safe for concurrent
// use.
type TokenCache struct {
	mu    sync.Mutex // guards the fields below
	size  int
	order *list.List // of tokenKey, most recently used first
	index map[tokenKey]*list.Element
	hits  uint64
	miss  uint64
}

// tokenKey is a token's complete content in comparable form.
type tokenKey struct {
	id      [TokenIDSize]byte
	issuer  [ed25519.PublicKeySize]byte
	subject [ed25519.PublicKeySize]byte
	perms   Permission
	prefix  bool
	channel string
	nb, exp int64
	sig     [ed25519.SignatureSize]byte
}

func (t *PermissionToken) key() tokenKey {
	k := tokenKey{
		id:      t.ID,
		perms:   t.Perms,
		prefix:  t.Prefix,
		channel: t.Channel,
		nb:      t.NotBefore.Unix(),
		exp:     t.Expiry.Unix(),
	}
	copy(k.issuer[:], t.Issuer)
	copy(k.subject[:], t.Subject)
	copy(k.sig[:], t.Signature)
	return k
}

// NewTokenCache returns a cache of at most size tokens; size 0 means
// DefaultTokenCacheSize.
func NewTokenCache(size int) *TokenCache {
	if size <= 0 {
		size = DefaultTokenCacheSize
	}
	return &TokenCache{size: size, order: list.New(), index: make(map[tokenKey]*list.Element)}
}

// Verify is PermissionToken.Verify with the signature check cached.
func (c *TokenCache) Verify(t *PermissionToken, now time.Time) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := t.checkTime(now); err != nil {
		return err
	}
	return c.verifySignature(t)
}

// Authorize is PermissionToken.Authorize with the signature check cached.
func (c *TokenCache) Authorize(t *PermissionToken, now time.Time, r TokenRequest) error {
	if err := t.authorizeCheap(now, r); err != nil {
		return err
	}
	return c.verifySignature(t)
}

// Stats returns how many signature checks were answered from the cache
// (hits) and how many verified a signature (misses).
func (c *TokenCache) Stats() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.miss
}

// Len returns the number of cached tokens.
func (c *TokenCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

func (c *TokenCache) verifySignature(t *PermissionToken) error {
	if len(t.Signature) != ed25519.SignatureSize {
		return ErrTokenSignature
	}
	k := t.key()
	c.mu.Lock()
	if e, ok := c.index[k]; ok {
		c.order.MoveToFront(e)
		c.hits++
		c.mu.Unlock()
		return nil
	}
	c.miss++
	c.mu.Unlock()
	// Verify without the lock: concurrent checks of different tokens run
	// in parallel.
	if err := t.verifySignature(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.index[k]; ok {
		return nil
	}
	c.index[k] = c.order.PushFront(k)
	if c.order.Len() > c.size {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.index, old.Value.(tokenKey))
	}
	return nil
}
