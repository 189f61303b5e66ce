package capability

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Transport is what the engine needs from the node it runs in. Its methods
// must be safe for concurrent use; the engine never calls them while holding
// its own locks, so they may call back into the engine.
type Transport interface {
	// Peers returns the peers with an established, authenticated session:
	// the direct neighbours that gossip goes to.
	Peers() []identity.NodeID
	// Send delivers msg to peer to, best effort, without blocking (drop and
	// count when a queue is full). The engine never modifies msg after
	// passing it and may pass the same slice to several peers, so Send may
	// keep msg without copying; Send must not modify it.
	Send(to identity.NodeID, msg []byte) error
}

// Config configures an Engine. The zero value is valid: signed
// announcements required, DefaultTTL, DefaultMinAnnounceInterval,
// DefaultMaxNodes, no telemetry, no route callback.
type Config struct {
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// TTL of this node's announcements: whole seconds in [MinTTL, MaxTTL],
	// at least 3*MinAnnounceInterval (the node re-announces every TTL/3).
	// Zero means DefaultTTL.
	TTL time.Duration
	// MinAnnounceInterval is the shortest time between two broadcasts of
	// this node's announcement; Announce calls in between are coalesced into
	// one broadcast at the end of the interval. Zero means
	// DefaultMinAnnounceInterval.
	MinAnnounceInterval time.Duration
	// Name is this node's name, 3 to 64 letters, digits, '-' and '_',
	// announced under metadata key NameKey so others can find it by name
	// (Index.LookupName). A name is a label, not an identity: other nodes
	// may claim the same one. Empty means no name.
	Name string
	// AllowUnsigned accepts announcements with an all-zero signature. They
	// can claim any origin whose public key is known, so enable this only in
	// closed test networks. False (the default) rejects them: signed
	// announcements are required.
	AllowUnsigned bool
	// MaxNodes bounds the origins remembered, live or offline. When full,
	// a new origin displaces an offline one (see MaxOriginsPerPeer for
	// which) or is rejected with ErrIndexFull. Zero means DefaultMaxNodes.
	MaxNodes int
	// MaxOriginsPerPeer bounds the origins one neighbour can have
	// introduced (the remembered origins first learned from it, live or
	// offline). At the limit a new origin from it displaces the oldest of
	// its own offline ones or is rejected with ErrPeerOriginLimit; when
	// MaxNodes is reached it displaces an offline origin of its own
	// neighbour, else of the neighbour that introduced the most origins if
	// that is more than its own did. A mesh larger than this where a node
	// may learn most origins through one neighbour must raise it. Zero
	// means DefaultMaxOriginsPerPeer.
	MaxOriginsPerPeer int
	// OriginRate and OriginBurst are each neighbour's budget for
	// introducing new origins: a token bucket of OriginBurst tokens
	// refilled at OriginRate per second; a new origin beyond it is
	// rejected with ErrOriginRate (and arrives again with its next
	// refresh). Zero means DefaultOriginRate and DefaultOriginBurst.
	OriginRate  float64
	OriginBurst int
	// DegradedAfter is the age of a node's newest announcement (since its
	// origin sent it) at which this node shows it Degraded: it missed a
	// refresh. Zero means half the announcement's TTL (45 s with
	// DefaultTTL, when a refresh expected every 30 s is 15 s late).
	// Values above the TTL act as the TTL.
	DegradedAfter time.Duration
	// OfflineAfter is the age of a node's newest announcement at which
	// this node drops it from the index (NodeOffline). Zero means the
	// announcement's TTL (90 s with DefaultTTL): it cannot live longer
	// than its origin said. An announcement already this old when it
	// arrives is rejected as expired and not forwarded.
	OfflineAfter time.Duration
	// HeartbeatEvents makes subscriptions also receive NodeHeartbeat: a
	// node refreshed its announcement without changing it. Every node
	// does so every TTL/3, so it is off by default.
	HeartbeatEvents bool
	// OnRoute, if set, is called for every accepted announcement and for a
	// copy of the current version that arrived over fewer hops: origin is
	// reachable via neighbour via at hops links until expires. It runs on
	// the goroutine that called HandleMessage, without engine locks held,
	// and must not block. Calls from concurrent HandleMessage calls may
	// arrive out of order: keep the fewest hops among unexpired routes.
	OnRoute func(origin, via identity.NodeID, hops int, expires time.Time)
	// Telemetry, if set, is sampled every TelemetryInterval from Tick and
	// its Metadata is merged into this node's announced set (opt-in).
	Telemetry Sampler
	// TelemetryInterval is how often Telemetry is sampled. Zero means
	// DefaultTelemetryInterval.
	TelemetryInterval time.Duration
	// Logger receives debug logs of rejected announcements and telemetry
	// failures; nil discards them.
	Logger *slog.Logger
}

// Engine runs capability discovery for one node: it announces the node's
// set, verifies, indexes and forwards the announcements of others, and
// tracks their liveness. It does no I/O of its own and starts no
// goroutines: the node calls HandleMessage, PeerUp and PeerDown as things
// happen and Tick every TickInterval. All methods are safe for concurrent
// use.
type Engine struct {
	id  *identity.Identity
	tr  Transport
	cfg Config
	log *slog.Logger
	ix  *Index
	st  counters

	// seed keys the digests that tell a copy of a version from a tampered
	// one.
	seed maphash.Seed

	// partMu serialises changes to this node's own set (Announce,
	// AnnounceLayer, Update), so a read-modify-write by Update is atomic;
	// it is taken before mu.
	partMu sync.Mutex

	// mu guards the fields below. Methods named ...Locked require it. Lock
	// order: partMu, mu, then ix.mu.
	mu       sync.Mutex
	records  map[identity.NodeID]*record
	sponsors map[identity.NodeID]*sponsor // see budget.go
	tombSeq  uint64                       // numbers tombstones
	local    localState
	subs     map[*Subscription]struct{}
	// due is the earliest time a live record turns Degraded or goes
	// Offline: Tick walks the records only once it has come, so a node
	// whose index is large but settled does not walk it every tick. Zero
	// means at the next Tick.
	due time.Time
}

// record is what the engine remembers about one origin, live or not: the
// pinned key and the newest version survive the announcement's expiry so
// that neither can be undone by a replay. The announcement itself is not
// kept: its set is in the index, and the engine encodes it again (the
// encoding is canonical, so the signature still holds) when it hands it to
// a peer that comes up.
type record struct {
	key      ed25519.PublicKey // pinned on first sight (TOFU)
	version  uint64
	digest   uint64             // of version's signed bytes: a copy with other bytes is tampered
	sig      [signatureLen]byte // version's signature
	hops     int                // fewest hops seen for version
	sentHops uint8              // hop count of the copy that brought version; handed on as one more
	via      identity.NodeID
	ttl      time.Duration
	degraded bool
	expires  time.Time       // receipt + the remaining lifetime the sender reported (at most ttl)
	sent     time.Time       // when the origin sent version, as far as the remaining lifetime tells
	gone     time.Time       // when it goes offline here: sent + OfflineAfter, at most expires
	live     bool            // in the index
	left     bool            // version is a withdrawal
	tomb     uint64          // while offline: the seq of its current tombstone
	sponsor  identity.NodeID // the neighbour whose message created the record
}

// New returns an engine for identity id that talks through tr.
func New(id *identity.Identity, tr Transport, cfg Config) (*Engine, error) {
	if id == nil || tr == nil {
		return nil, fmt.Errorf("%w: identity and transport are required", ErrInvalidConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	orDefault(&cfg.TTL, DefaultTTL)
	orDefault(&cfg.MinAnnounceInterval, DefaultMinAnnounceInterval)
	orDefault(&cfg.MaxNodes, DefaultMaxNodes)
	orDefault(&cfg.MaxOriginsPerPeer, DefaultMaxOriginsPerPeer)
	orDefault(&cfg.OriginRate, DefaultOriginRate)
	orDefault(&cfg.OriginBurst, DefaultOriginBurst)
	orDefault(&cfg.TelemetryInterval, DefaultTelemetryInterval)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name != "" {
		if err := ValidateName(cfg.Name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	switch {
	case cfg.TTL < MinTTL || cfg.TTL > MaxTTL || cfg.TTL%time.Second != 0:
		return nil, fmt.Errorf("%w: TTL %v is not whole seconds in [%v, %v]", ErrInvalidConfig, cfg.TTL, MinTTL, MaxTTL)
	case cfg.MinAnnounceInterval < 0 || cfg.MinAnnounceInterval > cfg.TTL/refreshDivisor:
		return nil, fmt.Errorf("%w: MinAnnounceInterval %v must be positive and at most TTL/%d", ErrInvalidConfig, cfg.MinAnnounceInterval, refreshDivisor)
	case cfg.MaxNodes < 0 || cfg.TelemetryInterval < 0:
		return nil, fmt.Errorf("%w: negative MaxNodes or TelemetryInterval", ErrInvalidConfig)
	case cfg.MaxOriginsPerPeer < 0 || cfg.OriginBurst < 0 || !(cfg.OriginRate > 0):
		return nil, fmt.Errorf("%w: negative MaxOriginsPerPeer, OriginRate or OriginBurst", ErrInvalidConfig)
	case cfg.DegradedAfter < 0 || cfg.OfflineAfter < 0 || cfg.OfflineAfter > 0 && cfg.DegradedAfter >= cfg.OfflineAfter:
		return nil, fmt.Errorf("%w: DegradedAfter %v and OfflineAfter %v must be positive, DegradedAfter the shorter", ErrInvalidConfig, cfg.DegradedAfter, cfg.OfflineAfter)
	}
	return &Engine{
		id:       id,
		tr:       tr,
		cfg:      cfg,
		log:      cfg.Logger,
		ix:       newIndex(),
		seed:     maphash.MakeSeed(),
		records:  make(map[identity.NodeID]*record),
		sponsors: make(map[identity.NodeID]*sponsor),
		subs:     make(map[*Subscription]struct{}),
	}, nil
}

// orDefault sets *v to def if it is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Index returns the engine's index, for queries.
func (e *Engine) Index() *Index { return e.ix }

// outbox collects what a locked section wants to send and report; flush
// does it after the lock is released.
type outbox struct {
	msgs   []outMsg
	routes []route
}

type outMsg struct {
	msg  []byte
	to   identity.NodeID    // zero: every peer except skip
	skip [2]identity.NodeID // split horizon: the sender and the origin
}

type route struct {
	origin, via identity.NodeID
	hops        int
	expires     time.Time
}

// flush sends and reports what o holds. It runs without e.mu held.
func (e *Engine) flush(o *outbox) {
	var peers []identity.NodeID
	for _, m := range o.msgs {
		if !m.to.IsZero() {
			e.send(m.to, m.msg)
			continue
		}
		if peers == nil {
			peers = e.tr.Peers()
		}
		for _, p := range peers {
			if p != m.skip[0] && p != m.skip[1] && p != e.id.NodeID() {
				e.send(p, m.msg)
			}
		}
	}
	if e.cfg.OnRoute != nil {
		for _, r := range o.routes {
			e.cfg.OnRoute(r.origin, r.via, r.hops, r.expires)
		}
	}
}

func (e *Engine) send(to identity.NodeID, msg []byte) {
	if err := e.tr.Send(to, msg); err != nil {
		e.st.sendErrors.Add(1)
		return
	}
	e.st.messagesSent.Add(1)
	e.st.bytesSent.Add(uint64(len(msg)))
}

// indexLocked puts n in the index and emits the events it implies.
func (e *Engine) indexLocked(n *Node) {
	e.ix.mu.Lock()
	var old *Node
	if s, ok := e.ix.slotOf[n.ID]; ok {
		old = e.ix.nodes[s]
	}
	e.ix.putLocked(n)
	e.ix.mu.Unlock()
	switch {
	case old == nil:
		e.emitLocked(Event{Kind: NodeRegistered, Node: *n, Previous: StatusOffline})
		return
	case old.Version == n.Version:
	case !old.Set.Equal(n.Set):
		e.emitLocked(Event{Kind: NodeUpdated, Node: *n, Previous: old.Status})
	case e.cfg.HeartbeatEvents:
		e.emitLocked(Event{Kind: NodeHeartbeat, Node: *n, Previous: old.Status})
	}
	switch {
	case old.Status == StatusOnline && n.Status == StatusDegraded:
		e.emitLocked(Event{Kind: NodeDegraded, Node: *n, Previous: old.Status})
	case old.Status == StatusDegraded && n.Status == StatusOnline:
		e.emitLocked(Event{Kind: NodeRecovered, Node: *n, Previous: old.Status})
	}
}

// dropLocked takes live record rec of origin id out of the index, keeps
// its pin and version, and emits kind (NodeOffline or NodeLeft).
func (e *Engine) dropLocked(id identity.NodeID, rec *record, kind EventKind) {
	e.buryLocked(id, rec)
	e.unindexLocked(id, kind)
}

// unindexLocked takes node id out of the index and emits kind.
func (e *Engine) unindexLocked(id identity.NodeID, kind EventKind) {
	e.ix.mu.Lock()
	s, ok := e.ix.slotOf[id]
	if !ok {
		e.ix.mu.Unlock()
		return
	}
	n := e.ix.nodes[s]
	e.ix.removeLocked(id)
	e.ix.mu.Unlock()
	gone := *n
	gone.Status = StatusOffline
	e.emitLocked(Event{Kind: kind, Node: gone, Previous: n.Status})
}

// HandleMessage processes one capability message received from peer from
// over an authenticated session. msg is not retained: the caller may reuse
// it after HandleMessage returns. It returns nil for accepted messages and
// harmless duplicates, and an error wrapping one of ErrMalformed,
// ErrOversized, ErrHopLimit, ErrExpired, ErrBadSignature, ErrTampered,
// ErrRebinding, ErrOldVersion, ErrUnsigned, ErrOriginRate,
// ErrPeerOriginLimit or ErrIndexFull for rejected ones (each is counted in
// Stats). The signature check, the costly part, runs without engine locks,
// so several goroutines may call HandleMessage at once.
func (e *Engine) HandleMessage(from identity.NodeID, msg []byte) error {
	e.st.received.Add(1)
	a, err := DecodeAnnouncement(msg)
	switch {
	case err != nil:
	case a.Hops == 0:
		err = fmt.Errorf("%w: hop count 0", ErrMalformed)
	case a.Hops > MaxHops:
		err = fmt.Errorf("%w: %d hops", ErrHopLimit, a.Hops)
	case a.Origin == e.id.NodeID():
		e.st.duplicates.Add(1) // our own announcement, come back around
		return nil
	case identity.NodeIDFromKey(a.Key) != a.Origin:
		err = fmt.Errorf("%w: key does not hash to origin %s", ErrRebinding, a.Origin.Short())
	case a.Remaining <= 0 || a.TTL-a.Remaining >= e.offlineAfter(a.TTL):
		// Rejected before any state changes, so a relay that zeroes the
		// field cannot stop a good copy from another neighbour.
		err = fmt.Errorf("%w: version %d of %s, %v left of %v", ErrExpired, a.Version, a.Origin.Short(), a.Remaining, a.TTL)
	}
	if err != nil {
		return e.reject(from, err)
	}

	digest := e.digest(msg)
	var o outbox
	e.mu.Lock()
	dup, err := e.checkLocked(&o, from, a, digest)
	if err == nil && !dup && e.records[a.Origin] == nil {
		if a.Withdrawn {
			// Nothing to withdraw here, and nothing to remember: the
			// withdrawal of an origin never seen is not charged to
			// anyone, and not forwarded.
			e.mu.Unlock()
			e.st.withdrawalsUnknown.Add(1)
			return nil
		}
		// A new origin costs its sponsor a token before the signature
		// check, so a flood of them costs no more checks than the budget.
		err = e.chargeLocked(from, e.cfg.Now())
	}
	e.mu.Unlock()
	if err == nil && !dup {
		switch {
		case !a.Signed() && !e.cfg.AllowUnsigned:
			err = ErrUnsigned
		case a.Signed() && !verifyEncoded(a.Key, msg):
			err = ErrBadSignature
		default:
			e.mu.Lock()
			// Check again: another goroutine may have applied it meanwhile.
			if dup, err = e.checkLocked(&o, from, a, digest); err == nil && !dup {
				err = e.applyLocked(&o, from, a, msg, digest)
			}
			e.mu.Unlock()
		}
	}
	e.flush(&o)
	if err != nil {
		return e.reject(from, err)
	}
	return nil
}

// digest hashes the signed bytes of an encoded announcement (all but the
// hop count and the remaining lifetime). It is keyed with a secret seed, so
// a peer cannot make a tampered copy that collides with a held one (and if
// one did, the copy would only be dropped as a duplicate).
func (e *Engine) digest(msg []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(e.seed)
	h.Write(msg[:offHops])
	h.Write(msg[offFlags:])
	return h.Sum64()
}

// checkLocked compares a with what is known of its origin: dup is true for
// a copy of the version held (and then a better route is queued to o). A
// duplicate never extends the expiry: only the first copy of a version
// sets it, so a relay cannot keep a node alive by resending it.
func (e *Engine) checkLocked(o *outbox, from identity.NodeID, a *Announcement, digest uint64) (dup bool, err error) {
	rec := e.records[a.Origin]
	switch {
	case rec == nil:
		return false, nil
	case !bytes.Equal(rec.key, a.Key):
		return false, fmt.Errorf("%w: %s is pinned to another key", ErrRebinding, a.Origin.Short())
	case a.Version < rec.version:
		return false, fmt.Errorf("%w: %d < %d", ErrOldVersion, a.Version, rec.version)
	case a.Version > rec.version:
		return false, nil
	case digest != rec.digest:
		return false, fmt.Errorf("%w: version %d of %s differs from the copy held", ErrTampered, a.Version, a.Origin.Short())
	}
	e.st.duplicates.Add(1)
	if rec.live && int(a.Hops) < rec.hops {
		rec.hops, rec.via = int(a.Hops), from
		o.routes = append(o.routes, route{a.Origin, from, int(a.Hops), rec.expires})
	}
	return true, nil
}

// applyLocked indexes a newer verified announcement and queues its
// forwarding and its route.
func (e *Engine) applyLocked(o *outbox, from identity.NodeID, a *Announcement, msg []byte, digest uint64) error {
	now := e.cfg.Now()
	rec := e.records[a.Origin]
	if rec == nil {
		if a.Withdrawn { // the origin was forgotten since the first check
			e.st.withdrawalsUnknown.Add(1)
			return nil
		}
		sp := e.sponsorLocked(from, now)
		if err := e.makeRoomLocked(sp); err != nil {
			return err
		}
		rec = &record{key: a.Key, sponsor: from}
		e.records[a.Origin] = rec
		sp.origins++
	}
	// The announcement lives as long as the sender said it had left (never
	// longer than the signed TTL; decoding checks that too), not a fresh
	// TTL from its late arrival here.
	expires := now.Add(min(a.Remaining, a.TTL))
	rec.version, rec.digest, rec.hops, rec.sentHops, rec.via = a.Version, digest, int(a.Hops), a.Hops, from
	copy(rec.sig[:], msg[len(msg)-signatureLen:])
	rec.ttl, rec.degraded, rec.expires, rec.left = a.TTL, a.Degraded, expires, a.Withdrawn
	rec.sent = expires.Add(-a.TTL)
	rec.gone = rec.sent.Add(e.offlineAfter(a.TTL)) // at most expires: offlineAfter caps at the TTL
	switch {
	case a.Withdrawn && rec.live:
		e.dropLocked(a.Origin, rec, NodeLeft)
		e.st.withdrawals.Add(1)
	case a.Withdrawn: // it had gone offline here already
		e.st.withdrawals.Add(1)
	default:
		rec.live = true
		if next := e.nextChange(rec, now); next.Before(e.due) {
			e.due = next
		}
		e.indexLocked(&Node{
			ID: a.Origin, Key: rec.key, Version: a.Version, Set: a.Set,
			Status: e.statusLocked(rec, now), Hops: int(a.Hops), Via: from, Updated: now, Expires: rec.gone,
		})
		o.routes = append(o.routes, route{a.Origin, from, int(a.Hops), rec.expires})
	}
	e.st.accepted.Add(1)
	if a.Hops < MaxHops {
		// Forwarded with what is left at now, the same clock reading: no
		// second is lost per hop to rounding.
		wire := bytes.Clone(msg)
		wire[offHops] = a.Hops + 1
		putRemaining(wire, remainingAt(expires, now, a.TTL))
		o.msgs = append(o.msgs, outMsg{msg: wire, skip: [2]identity.NodeID{from, a.Origin}})
		e.st.forwarded.Add(1)
	}
	return nil
}

// statusLocked is the liveness of live record r at now.
func (e *Engine) statusLocked(r *record, now time.Time) Status {
	if r.degraded || !now.Before(r.sent.Add(e.degradedAfter(r.ttl))) {
		return StatusDegraded
	}
	return StatusOnline
}

// degradedAfter and offlineAfter are the ages at which a node whose
// announcement has TTL ttl shows Degraded and goes Offline here.
func (e *Engine) degradedAfter(ttl time.Duration) time.Duration {
	if e.cfg.DegradedAfter > 0 {
		return min(e.cfg.DegradedAfter, ttl)
	}
	return ttl / degradedDivisor
}

func (e *Engine) offlineAfter(ttl time.Duration) time.Duration {
	if e.cfg.OfflineAfter > 0 {
		return min(e.cfg.OfflineAfter, ttl)
	}
	return ttl
}

func (e *Engine) reject(from identity.NodeID, err error) error {
	c := &e.st.malformed
	switch {
	case errors.Is(err, ErrOversized):
		c = &e.st.oversized
	case errors.Is(err, ErrHopLimit):
		c = &e.st.hopLimit
	case errors.Is(err, ErrBadSignature):
		c = &e.st.badSignature
	case errors.Is(err, ErrTampered):
		c = &e.st.tampered
	case errors.Is(err, ErrRebinding):
		c = &e.st.rebinding
	case errors.Is(err, ErrOldVersion):
		c = &e.st.oldVersion
	case errors.Is(err, ErrUnsigned):
		c = &e.st.unsigned
	case errors.Is(err, ErrIndexFull):
		c = &e.st.indexFull
	case errors.Is(err, ErrPeerOriginLimit):
		c = &e.st.peerOrigins
	case errors.Is(err, ErrOriginRate):
		c = &e.st.originRate
	case errors.Is(err, ErrExpired):
		c = &e.st.expired
	}
	c.Add(1)
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug("capability: rejected announcement", "from", from.Short(), "err", err)
	}
	return err
}

// PeerUp tells the engine that a session with peer id is established. The
// engine sends it every live announcement it holds (this node's included),
// except those learned from id, so a late joiner learns the index at once.
// Each carries the lifetime it has left here, so the joiner expires it when
// this node does (or up to a second earlier), not a full TTL later.
func (e *Engine) PeerUp(id identity.NodeID) {
	var o outbox
	var held []Announcement
	e.mu.Lock()
	now := e.cfg.Now()
	switch {
	case e.local.pending:
		// The newest version waits for its rate-limited broadcast; a
		// joining peer gets it now. Signing is deterministic, so the
		// broadcast later sends the same message and the peer drops it
		// as a duplicate.
		o.msgs = append(o.msgs, outMsg{msg: e.signLocalLocked(), to: id})
	case e.local.wire != nil:
		o.msgs = append(o.msgs, outMsg{msg: e.local.wire, to: id})
	}
	for origin, rec := range e.records {
		// Less than a second left would go out as expired: skip.
		r := remainingAt(rec.expires, now, rec.ttl)
		if rec.live && r > 0 && rec.sentHops < MaxHops && rec.via != id && origin != id {
			held = append(held, Announcement{
				Origin: origin, Key: rec.key, Version: rec.version, TTL: rec.ttl, Degraded: rec.degraded,
				Set: e.ix.get(origin).Set, Signature: bytes.Clone(rec.sig[:]), Hops: rec.sentHops + 1, Remaining: r,
			})
		}
	}
	e.mu.Unlock()
	// Encoded without the lock: the encoding of a decoded announcement is
	// the bytes it was decoded from, so the origin's signature holds.
	for i := range held {
		wire, err := held[i].MarshalBinary()
		if err != nil { // unreachable: the set was validated when decoded
			e.log.Debug("capability: re-encoding a held announcement", "origin", held[i].Origin.Short(), "err", err)
			continue
		}
		o.msgs = append(o.msgs, outMsg{msg: wire, to: id})
	}
	e.flush(&o)
}

// PeerDown tells the engine that the session with peer id is gone. Routes
// learned through id are forgotten, so the next copy of those origins'
// announcements from another neighbour is reported to OnRoute even if it
// travelled more hops.
func (e *Engine) PeerDown(id identity.NodeID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rec := range e.records {
		if rec.via == id {
			rec.hops = MaxHops + 1
		}
	}
}

// Tick runs the engine's timers; the node calls it every TickInterval (any
// period works, timing is only as precise as the period). It samples
// telemetry when due, broadcasts a rate-limited pending announcement,
// re-announces this node every TTL/3, moves remote nodes between Online,
// Degraded and Offline, and drops expired ones from the index.
func (e *Engine) Tick() {
	telemetry := e.sampleTelemetry()
	var o outbox
	e.mu.Lock()
	now := e.cfg.Now()
	l := &e.local
	switch {
	case telemetry != nil && l.announced:
		if err := e.setLocalLocked(&o, telemetry, l.degraded); err != nil {
			e.st.telemetryErrors.Add(1)
			e.log.Debug("capability: telemetry not announced", "err", err)
		}
	case telemetry != nil:
		l.telemetry = telemetry
	case !l.announced:
	case l.pending && now.Sub(l.lastBroadcast) >= e.cfg.MinAnnounceInterval:
		e.broadcastLocked(&o, now)
	case !l.pending && now.Sub(l.lastBroadcast) >= e.cfg.TTL/refreshDivisor:
		if err := e.setLocalLocked(&o, l.telemetry, l.degraded); err != nil {
			panic("capability: refreshing a validated set: " + err.Error()) // unreachable
		}
	}
	if !now.Before(e.due) {
		e.due = e.sweepLocked(now)
	}
	e.pruneSponsorsLocked(now)
	e.mu.Unlock()
	e.flush(&o)
}

// sweepLocked moves the live records whose time has come to Degraded or
// Offline, and returns when the next one is due (zero if none is live).
func (e *Engine) sweepLocked(now time.Time) (due time.Time) {
	for id, rec := range e.records {
		if !rec.live {
			continue
		}
		if !now.Before(rec.gone) {
			e.dropLocked(id, rec, NodeOffline)
			continue
		}
		n := e.ix.get(id)
		if st := e.statusLocked(rec, now); st != n.Status {
			m := *n
			m.Status = st
			e.indexLocked(&m)
		}
		if next := e.nextChange(rec, now); due.IsZero() || next.Before(due) {
			due = next
		}
	}
	return due
}

// nextChange is when live record r's status changes next by itself, as
// seen at now: when it turns Degraded, or else when it goes Offline.
func (e *Engine) nextChange(r *record, now time.Time) time.Time {
	if d := r.sent.Add(e.degradedAfter(r.ttl)); !r.degraded && now.Before(d) && d.Before(r.gone) {
		return d
	}
	return r.gone
}

// sampleTelemetry samples the configured Sampler when it is due and returns
// its metadata, or nil.
func (e *Engine) sampleTelemetry() map[string]string {
	if e.cfg.Telemetry == nil {
		return nil
	}
	e.mu.Lock()
	now := e.cfg.Now()
	due := !now.Before(e.local.nextTelemetry)
	if due {
		e.local.nextTelemetry = now.Add(e.cfg.TelemetryInterval)
	}
	e.mu.Unlock()
	if !due {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), telemetryTimeout)
	defer cancel()
	t, err := e.cfg.Telemetry.Sample(ctx)
	if err != nil {
		e.st.telemetryErrors.Add(1)
		e.log.Debug("capability: telemetry sample failed", "err", err)
		return nil
	}
	return t.Metadata()
}

// Health is a summary of the index for status pages.
type Health struct {
	Known    int // live nodes in the index, this node included
	Online   int
	Degraded int
	Offline  int // remembered origins whose announcements expired
	Left     int // remembered origins that withdrew their announcements
	// DuplicateNames counts the names more than one live node claims
	// (Index.DuplicateNames lists them).
	DuplicateNames int
}

// Health returns a summary of the nodes known.
func (e *Engine) Health() Health {
	var h Health
	e.ix.mu.RLock()
	for _, slots := range e.ix.byName {
		if len(slots) > 1 {
			h.DuplicateNames++
		}
	}
	for _, s := range e.ix.slotOf {
		switch e.ix.nodes[s].Status {
		case StatusOnline:
			h.Online++
		case StatusDegraded:
			h.Degraded++
		}
		h.Known++
	}
	e.ix.mu.RUnlock()
	e.mu.Lock()
	for _, rec := range e.records {
		switch {
		case rec.left:
			h.Left++
		case !rec.live:
			h.Offline++
		}
	}
	e.mu.Unlock()
	return h
}
