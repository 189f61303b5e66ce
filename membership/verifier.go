package membership

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Verifier decides whether a peer is a member of the mesh: whether the
// certificate it presented was issued for its key, by an authority this
// node trusts, is valid now, and is not revoked. With no authorities the
// mesh is open and every peer is admitted without a certificate. It is
// safe for concurrent use.
type Verifier struct {
	authorities []ed25519.PublicKey // fixed at NewVerifier

	// verified remembers certificates whose signature verified, by the
	// SHA-256 of their encoding, under a lock of its own.
	verified digestSet
	// signatures counts signature checks, hits the checks the cache
	// answered.
	signatures, hits atomic.Uint64
	// maxRevs is MaxRevocations; tests shrink it.
	maxRevs int

	// mu guards revs; the checks read-lock it.
	mu   sync.RWMutex
	revs map[revKey]*identity.Revocation // the newest per authority and node key
}

// revKey names the certificates one revocation can cover.
type revKey struct{ authority, node [ed25519.PublicKeySize]byte }

func keyOf(authority, node ed25519.PublicKey) revKey {
	var k revKey
	copy(k.authority[:], authority)
	copy(k.node[:], node)
	return k
}

// NewVerifier returns a verifier that trusts authorities (at most
// MaxAuthorities ed25519 keys; none means an open mesh).
func NewVerifier(authorities []ed25519.PublicKey) (*Verifier, error) {
	if len(authorities) > MaxAuthorities {
		return nil, fmt.Errorf("%w: %d authorities, at most %d", ErrInvalidConfig, len(authorities), MaxAuthorities)
	}
	v := &Verifier{revs: make(map[revKey]*identity.Revocation), maxRevs: MaxRevocations}
	for _, a := range authorities {
		if len(a) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: authority key of %d bytes", ErrInvalidConfig, len(a))
		}
		if !slices.ContainsFunc(v.authorities, func(b ed25519.PublicKey) bool { return bytes.Equal(a, b) }) {
			v.authorities = append(v.authorities, bytes.Clone(a))
		}
	}
	v.verified.init(VerifiedCacheSize)
	return v, nil
}

// Closed reports whether the verifier trusts any authority: then a peer
// must present a valid certificate.
func (v *Verifier) Closed() bool { return len(v.authorities) > 0 }

// Authorities returns the trusted authority keys. The caller must not
// modify them.
func (v *Verifier) Authorities() []ed25519.PublicKey { return v.authorities }

// Trusts reports whether authority is one of the trusted keys.
func (v *Verifier) Trusts(authority ed25519.PublicKey) bool {
	return slices.ContainsFunc(v.authorities, func(a ed25519.PublicKey) bool { return bytes.Equal(a, authority) })
}

// Check decodes the certificate raw that a peer which authenticated with
// key presented, and checks it at now: cheap checks first (structure,
// trusted authority, key, validity window, revocation), the signature
// last, and only once per certificate. It returns the certificate, or the
// reason it is refused.
func (v *Verifier) Check(raw []byte, key ed25519.PublicKey, now time.Time) (*identity.Certificate, Reason) {
	if len(raw) == 0 {
		return nil, ReasonNoCertificate
	}
	c, err := identity.DecodeCertificate(raw)
	if err != nil {
		return nil, ReasonInvalid
	}
	return c, v.check(c, raw, key, now)
}

// CheckCertificate is Check for a decoded certificate.
func (v *Verifier) CheckCertificate(c *identity.Certificate, key ed25519.PublicKey, now time.Time) Reason {
	if c == nil {
		return ReasonNoCertificate
	}
	raw, err := c.MarshalBinary()
	if err != nil {
		return ReasonInvalid
	}
	return v.check(c, raw, key, now)
}

func (v *Verifier) check(c *identity.Certificate, raw []byte, key ed25519.PublicKey, now time.Time) Reason {
	if err := c.Validate(now, key, v.authorities); err != nil {
		return ReasonOf(err)
	}
	if v.Revoked(c) {
		return ReasonRevoked
	}
	d := sha256.Sum256(raw)
	if v.verified.has(d) {
		v.hits.Add(1)
		return ReasonNone
	}
	v.signatures.Add(1)
	if err := c.VerifySignature(); err != nil {
		return ReasonOf(err)
	}
	v.verified.add(d)
	return ReasonNone
}

// VerifierStats counts a Verifier's work.
type VerifierStats struct {
	// Signatures counts certificate signatures checked; CacheHits the
	// checks of a certificate verified before, which cost no signature.
	Signatures, CacheHits uint64
	// Revocations is the number of revocations held.
	Revocations int
}

// Stats returns the verifier's counters.
func (v *Verifier) Stats() VerifierStats {
	v.mu.RLock()
	n := len(v.revs)
	v.mu.RUnlock()
	return VerifierStats{Signatures: v.signatures.Load(), CacheHits: v.hits.Load(), Revocations: n}
}

// Revoked reports whether a revocation this verifier holds covers c.
func (v *Verifier) Revoked(c *identity.Certificate) bool {
	v.mu.RLock()
	r := v.revs[keyOf(c.Authority, c.NodeKey)]
	v.mu.RUnlock()
	return r != nil && r.Covers(c)
}

// AddRevocation checks r (a trusted authority, its signature) and keeps
// it. It reports whether r was new: not one it holds already, nor older
// than one it holds for the same authority and node key (a newer one
// covers more). A revocation that has expired at now is not kept. When
// MaxRevocations are held, the one that expires first is forgotten.
// Errors wrap ErrUntrustedRevocation or identity.ErrRevocation....
func (v *Verifier) AddRevocation(r *identity.Revocation, now time.Time) (bool, error) {
	if !v.Trusts(r.Authority) {
		return false, fmt.Errorf("%w: %s", ErrUntrustedRevocation, identity.KeyFingerprint(r.Authority))
	}
	k := keyOf(r.Authority, r.NodeKey)
	if !v.isNew(k, r) || !now.Before(r.Expires()) {
		return false, nil
	}
	if err := r.VerifySignature(); err != nil {
		return false, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if old := v.revs[k]; old != nil && !r.RevokedAt.After(old.RevokedAt) {
		return false, nil // another goroutine added it meanwhile
	}
	if _, ok := v.revs[k]; !ok && len(v.revs) >= v.maxRevs {
		var first revKey
		var firstAt time.Time
		for k, old := range v.revs {
			if firstAt.IsZero() || old.RevokedAt.Before(firstAt) {
				first, firstAt = k, old.RevokedAt
			}
		}
		delete(v.revs, first)
	}
	v.revs[k] = r
	return true, nil
}

// isNew reports whether r would replace what is held for k.
func (v *Verifier) isNew(k revKey, r *identity.Revocation) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	old := v.revs[k]
	return old == nil || r.RevokedAt.After(old.RevokedAt)
}

// Revocations returns the revocations held, oldest first.
func (v *Verifier) Revocations() []*identity.Revocation {
	v.mu.RLock()
	rs := make([]*identity.Revocation, 0, len(v.revs))
	for _, r := range v.revs {
		rs = append(rs, r)
	}
	v.mu.RUnlock()
	slices.SortFunc(rs, func(a, b *identity.Revocation) int {
		if c := a.RevokedAt.Compare(b.RevokedAt); c != 0 {
			return c
		}
		return cmp.Or(bytes.Compare(a.Authority, b.Authority), bytes.Compare(a.NodeKey, b.NodeKey))
	})
	return rs
}

// Prune forgets the revocations that have expired at now and returns how
// many.
func (v *Verifier) Prune(now time.Time) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for k, r := range v.revs {
		if !now.Before(r.Expires()) {
			delete(v.revs, k)
			n++
		}
	}
	return n
}

// digestSet is a set of SHA-256 digests holding at most max, safe for
// concurrent use. Full, it forgets a random entry (Go's map order): O(1),
// and a working set larger than the set still hits sometimes.
type digestSet struct {
	mu  sync.Mutex
	m   map[[sha256.Size]byte]struct{}
	max int
}

func (s *digestSet) init(max int) {
	s.m = make(map[[sha256.Size]byte]struct{})
	s.max = max
}

func (s *digestSet) has(d [sha256.Size]byte) bool {
	s.mu.Lock()
	_, ok := s.m[d]
	s.mu.Unlock()
	return ok
}

func (s *digestSet) add(d [sha256.Size]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.max {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[d] = struct{}{}
}
