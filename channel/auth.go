package channel

import (
	"encoding/binary"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// subscriber is a publisher's record of one admitted subscriber: the
// verified-subscriber cache entry the fast path checks on every publish.
// It is immutable once admitted, but for slow; a re-subscription
// replaces it.
type subscriber struct {
	peer    identity.NodeID
	token   *identity.PermissionToken // nil when admitted without one
	expires int64                     // token expiry in Unix ns; MaxInt64 without a token
	bloom   [2]uint16                 // the token id's bits in a revocation bloom filter
	slow    atomic.Bool               // a publish waited Config.PublishWait for it in vain
}

func newSubscriber(peer identity.NodeID, tok *identity.PermissionToken) *subscriber {
	s := &subscriber{peer: peer, token: tok, expires: math.MaxInt64}
	if tok != nil {
		s.expires = tok.Expiry.UnixNano()
		s.bloom = bloomBits(tok.ID)
	}
	return s
}

// authorized is the per-publish check: the token has not expired and is
// not revoked. The token's signature, subject, issuer and permission were
// verified when the subscriber was admitted; capabilities and subnet are
// re-checked by the sweep. It does not allocate; with no revocations it is
// a comparison and two bit tests.
func (s *subscriber) authorized(now int64, rv *revocations) bool {
	if now >= s.expires {
		return false
	}
	return s.token == nil || !rv.has(s.bloom, s.token.ID)
}

// bloomBits is the revocation bloom filter (1024 bits, 2 probes) positions
// of a token id. Ids are 128 random bits chosen by the issuer, so their
// bytes serve as hashes.
func bloomBits(id [identity.TokenIDSize]byte) [2]uint16 {
	return [2]uint16{
		binary.LittleEndian.Uint16(id[0:]) % bloomBitsLen,
		binary.LittleEndian.Uint16(id[2:]) % bloomBitsLen,
	}
}

const bloomBitsLen = 1024

// revocations is an immutable set of revoked token ids with a bloom filter
// in front, so the common case (nothing revoked that matches) costs two
// bit tests and no map lookup. Revoke and the sweep replace it whole.
type revocations struct {
	bloom [bloomBitsLen / 64]uint64
	ids   map[[identity.TokenIDSize]byte]time.Time // id → when the token expires anyway
}

func (r *revocations) has(bits [2]uint16, id [identity.TokenIDSize]byte) bool {
	if r == nil || r.bloom[bits[0]/64]&(1<<(bits[0]%64)) == 0 || r.bloom[bits[1]/64]&(1<<(bits[1]%64)) == 0 {
		return false
	}
	_, ok := r.ids[id]
	return ok
}

// with returns a copy of r with ids added (a nil ids map is empty) and
// ids expired at now removed.
func (r *revocations) with(add map[[identity.TokenIDSize]byte]time.Time, now time.Time) *revocations {
	n := &revocations{ids: make(map[[identity.TokenIDSize]byte]time.Time)}
	if r != nil {
		for id, exp := range r.ids {
			if now.Before(exp) {
				n.ids[id] = exp
			}
		}
	}
	for id, exp := range add {
		n.ids[id] = exp
	}
	for id := range n.ids {
		b := bloomBits(id)
		n.bloom[b[0]/64] |= 1 << (b[0] % 64)
		n.bloom[b[1]/64] |= 1 << (b[1] % 64)
	}
	return n
}

// limiter throttles peers whose subscribe requests keep failing: limit
// failures within window throttle the peer for throttle, during which its
// requests are answered RateLimited before any check (so before any
// signature verification).
type limiter struct {
	limit            int // <= 0 disables the limiter
	window, throttle time.Duration
	max              int // entries tracked at most

	mu    sync.Mutex // guards peers
	peers map[identity.NodeID]*limitEntry
}

type limitEntry struct {
	start time.Time // start of the counting window
	fails int
	until time.Time // throttled before this
}

func newLimiter(o Options) *limiter {
	return &limiter{
		limit:    o.AuthFailureLimit,
		window:   o.AuthFailureWindow,
		throttle: o.AuthThrottle,
		max:      DefaultMaxTrackedPeers,
		peers:    make(map[identity.NodeID]*limitEntry),
	}
}

// throttled reports whether id is throttled at now. When the table is full
// an untracked peer is throttled too: failing closed keeps a flood of new
// identities from buying signature checks.
func (l *limiter) throttled(id identity.NodeID, now time.Time) bool {
	if l.limit <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.peers[id]
	if !ok {
		return len(l.peers) >= l.max
	}
	return now.Before(e.until)
}

// fail counts a failed request from id at now.
func (l *limiter) fail(id identity.NodeID, now time.Time) {
	if l.limit <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.peers[id]
	if !ok {
		if len(l.peers) >= l.max {
			return
		}
		e = &limitEntry{start: now}
		l.peers[id] = e
	}
	if now.Sub(e.start) >= l.window {
		e.start, e.fails = now, 0
	}
	e.fails++
	if e.fails >= l.limit {
		e.until = now.Add(l.throttle)
		e.start, e.fails = now, 0
	}
}

// clean forgets peers that are neither throttled nor inside a window.
func (l *limiter) clean(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, e := range l.peers {
		if !now.Before(e.until) && now.Sub(e.start) >= l.window {
			delete(l.peers, id)
		}
	}
}
