package membership

import (
	"crypto/ed25519"
	"crypto/hmac"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Grant is what a pairing code admits: the certificate the new node
// receives.
type Grant struct {
	// Name and Groups go into the certificate (rules of
	// identity.CertificateTemplate).
	Name   string
	Groups []string
	// ValidFor is the certificate's validity; 0 means
	// DefaultCertValidity, at most identity.MaxCertValidity.
	ValidFor time.Duration
	// CodeLifetime is how long the code may be used; 0 means
	// DefaultCodeLifetime, at most MaxCodeLifetime.
	CodeLifetime time.Duration
}

// IssuerOptions tune an Issuer; the zero value is the default.
type IssuerOptions struct {
	// PairingBurst and PairingInterval are each source's budget of
	// pairing attempts: PairingBurst at once, then one per
	// PairingInterval. Zero means DefaultPairingBurst and
	// DefaultPairingInterval.
	PairingBurst    int
	PairingInterval time.Duration
}

// Issuer issues certificates on behalf of an authority key the node
// holds: to new nodes that prove they know a pairing code, and to members
// that renew. It is safe for concurrent use.
type Issuer struct {
	authority *identity.Identity
	limit     sourceLimiter

	mu    sync.Mutex
	codes []*pairingCode // outstanding
	spent []spentCode    // used or expired, newest last
}

type pairingCode struct {
	code    Code
	grant   Grant
	expires time.Time
}

// spentCode remembers a code after its end, to say why it no longer
// works.
type spentCode struct {
	code Code
	why  Reason // ReasonPairingReused or ReasonPairingExpired
}

// NewIssuer returns an issuer for authority.
func NewIssuer(authority *identity.Identity, opts IssuerOptions) *Issuer {
	is := &Issuer{authority: authority}
	is.limit.init(orDefault(opts.PairingBurst, DefaultPairingBurst), orDefault(opts.PairingInterval, DefaultPairingInterval))
	return is
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Key returns the authority's public key.
func (is *Issuer) Key() ed25519.PublicKey { return is.authority.PublicKey() }

// NewPairingCode hands out a one-time code that admits one node with g.
// It fails when MaxPairingCodes are outstanding or g is not a valid
// certificate grant.
func (is *Issuer) NewPairingCode(g Grant, now time.Time) (Code, error) {
	g.ValidFor = orDefault(g.ValidFor, DefaultCertValidity)
	g.CodeLifetime = orDefault(g.CodeLifetime, DefaultCodeLifetime)
	switch {
	case g.ValidFor < 0 || g.ValidFor > identity.MaxCertValidity:
		return Code{}, fmt.Errorf("%w: certificate validity %v not in (0, %v]", ErrInvalidConfig, g.ValidFor, identity.MaxCertValidity)
	case g.CodeLifetime < 0 || g.CodeLifetime > MaxCodeLifetime:
		return Code{}, fmt.Errorf("%w: code lifetime %v not in (0, %v]", ErrInvalidConfig, g.CodeLifetime, MaxCodeLifetime)
	}
	// The grant must make a valid certificate: try it on our own key.
	if _, err := is.Issue(is.Key(), g.Name, g.Groups, g.ValidFor, now); err != nil {
		return Code{}, err
	}
	g.Groups = slices.Clone(g.Groups)
	is.mu.Lock()
	defer is.mu.Unlock()
	is.expireLocked(now)
	if len(is.codes) >= MaxPairingCodes {
		return Code{}, fmt.Errorf("%w: %d pairing codes outstanding", ErrInvalidConfig, len(is.codes))
	}
	c := newCode()
	is.codes = append(is.codes, &pairingCode{code: c, grant: g, expires: now.Add(g.CodeLifetime)})
	return c, nil
}

// expireLocked moves the codes expired at now to spent.
func (is *Issuer) expireLocked(now time.Time) {
	is.codes = slices.DeleteFunc(is.codes, func(p *pairingCode) bool {
		if now.Before(p.expires) {
			return false
		}
		is.spendLocked(p.code, ReasonPairingExpired)
		return true
	})
}

func (is *Issuer) spendLocked(c Code, why Reason) {
	if len(is.spent) >= maxSpentCodes {
		is.spent = slices.Delete(is.spent, 0, 1)
	}
	is.spent = append(is.spent, spentCode{code: c, why: why})
}

// Redeem checks a pairing proof that the node with nodeKey sent from
// source (an address or relay, as the caller names it) in the handshake
// whose hash before the proof was binding. The source first takes a token
// of its budget; then the proof is checked against every outstanding
// code, and a code that matches is spent and issues a certificate for
// nodeKey. It returns the certificate and the issuer's confirmation for
// the new node, or why not: ReasonPairingRateLimited, ReasonPairingCode,
// ReasonPairingExpired or ReasonPairingReused.
func (is *Issuer) Redeem(proof, binding []byte, nodeKey ed25519.PublicKey, source string, now time.Time) (*identity.Certificate, []byte, Reason) {
	if !is.limit.allow(source, now) {
		return nil, nil, ReasonPairingRateLimited
	}
	if len(proof) != ProofSize {
		return nil, nil, ReasonPairingCode
	}
	is.mu.Lock()
	is.expireLocked(now)
	var found *pairingCode
	for i, p := range is.codes {
		if hmac.Equal(p.code.Proof(binding), proof) {
			found = p
			is.codes = slices.Delete(is.codes, i, i+1)
			is.spendLocked(p.code, ReasonPairingReused)
			break
		}
	}
	why := ReasonPairingCode
	if found == nil {
		for _, s := range is.spent {
			if hmac.Equal(s.code.Proof(binding), proof) {
				why = s.why
			}
		}
	}
	is.mu.Unlock()
	if found == nil {
		return nil, nil, why
	}
	c, err := is.Issue(nodeKey, found.grant.Name, found.grant.Groups, found.grant.ValidFor, now)
	if err != nil {
		return nil, nil, ReasonInvalid // unreachable: NewPairingCode tried the grant
	}
	return c, found.code.Confirmation(binding), ReasonNone
}

// RenewAt returns when a certificate is due for renewal: when two thirds
// of its validity have passed.
func RenewAt(c *identity.Certificate) time.Time {
	return c.NotAfter.Add(-c.NotAfter.Sub(c.NotBefore) / 3)
}

// Renew issues the successor of c, a member's current certificate, which
// the caller has verified (trust, key, validity, revocation): the same
// node key, name and groups, valid from now for as long as c was. It
// fails with ErrNotDue when c is another authority's or not yet at
// RenewAt, so a member cannot make the issuer sign again and again.
func (is *Issuer) Renew(c *identity.Certificate, now time.Time) (*identity.Certificate, error) {
	if !slices.Equal(c.Authority, is.Key()) {
		return nil, fmt.Errorf("%w: issued by another authority", ErrNotDue)
	}
	if now.Before(RenewAt(c)) {
		return nil, fmt.Errorf("%w: not before %v", ErrNotDue, RenewAt(c).UTC())
	}
	return is.Issue(c.NodeKey, c.Name, c.Groups, c.NotAfter.Sub(c.NotBefore), now)
}

// Revoke signs the revocation of every certificate this authority issued
// for nodeKey until now.
func (is *Issuer) Revoke(nodeKey ed25519.PublicKey, now time.Time) (*identity.Revocation, error) {
	return identity.IssueRevocation(is.authority, nodeKey, now)
}

// Issue signs a certificate for key valid from now for validFor (at
// most identity.MaxCertValidity).
func (is *Issuer) Issue(key ed25519.PublicKey, name string, groups []string, validFor time.Duration, now time.Time) (*identity.Certificate, error) {
	return identity.IssueCertificate(is.authority, identity.CertificateTemplate{
		NodeKey: key, Name: name, Groups: groups, NotBefore: now, NotAfter: now.Add(min(validFor, identity.MaxCertValidity)),
	})
}

// sourceLimiter is a token bucket per source, bounded in sources.
type sourceLimiter struct {
	burst    float64
	interval time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func (l *sourceLimiter) init(burst int, interval time.Duration) {
	l.burst, l.interval = float64(burst), interval
	l.buckets = make(map[string]*bucket)
}

// allow takes a token of source's bucket at now.
func (l *sourceLimiter) allow(source string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[source]
	if b == nil {
		if len(l.buckets) >= maxPairingSources {
			l.forgetFullLocked(now)
			if len(l.buckets) >= maxPairingSources {
				return false
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[source] = b
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.last))/float64(l.interval))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forgetFullLocked forgets the buckets that have refilled: forgetting
// them changes nothing.
func (l *sourceLimiter) forgetFullLocked(now time.Time) {
	full := time.Duration(l.burst * float64(l.interval))
	for s, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, s)
		}
	}
}
