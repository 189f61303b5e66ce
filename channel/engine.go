package channel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// Transport is what the engine needs from the node it runs in. Its methods
// must be safe for concurrent use; the engine never calls them while
// holding its own locks, so they may call back into the engine.
type Transport interface {
	// Send delivers msg to peer to over its authenticated session, best
	// effort, without blocking for long (drop or return an error when a
	// queue is full). Control messages are at most MaxControlMessageSize
	// bytes; a publish is up to MaxMessageSize. The engine never modifies
	// msg after passing it and passes the same slice to every subscriber
	// of one publish, so Send may keep msg without copying; Send must not
	// modify it.
	Send(to identity.NodeID, msg []byte) error
	// PeerInfo returns what the node knows of peer id: the newest
	// capability announcement it holds (a Node with only ID set if none),
	// and the ed25519 key id authenticated with (NodeIDFromKey(key) == id).
	// ok is false when the node knows no key for id. For the node's own id
	// it returns the node's own announcement and key.
	PeerInfo(id identity.NodeID) (node capability.Node, key ed25519.PublicKey, ok bool)
}

// A Waiter is a Transport whose sends can wait for room. Publish hands a
// message that a subscriber's Send refused to SendWait, which waits while
// that subscriber's queue is full, until ctx ends; it returns at once
// for any other failure. See Config.PublishWait.
type Waiter interface {
	SendWait(ctx context.Context, to identity.NodeID, msg []byte) error
}

// Reacher is implemented by a Transport that can set up a session with a
// node by itself. The engine calls Reach for a publisher it lost, each
// time it retries the subscription, so that a subscription comes back
// even when nothing else reconnects to the publisher. Reach must not
// block; PeerUp follows when the session is up.
type Reacher interface {
	Reach(id identity.NodeID)
}

// Engine runs channels for one node: as a publisher it keeps its registered
// channels and their subscribers and fans out Publish; as a subscriber it
// keeps its subscriptions and queues what arrives. It does no I/O of its
// own and starts no goroutines: the node calls HandleMessage for every
// channel message and Tick every TickInterval. All methods are safe for
// concurrent use.
type Engine struct {
	id      *identity.Identity
	self    identity.NodeID
	selfKey []ed25519.PublicKey // this node's key, as a trusted-issuer list
	tr      Transport
	opt     Options
	log     *slog.Logger
	lim     *limiter
	revoked atomic.Pointer[revocations]
	st      counters

	// mu guards the fields below; methods named ...Locked require it. Lock
	// order: mu, then a Subscription's mu. Transport calls happen with no
	// lock held.
	mu        sync.RWMutex
	channels  map[string]*pubChannel
	subs      map[identity.NodeID]map[string]*Subscription // by publisher, then name
	waiters   map[uint64]*Subscription                     // awaiting an ack, by request id
	nextReq   uint64
	nextSweep time.Time
}

// pubChannel is a registered channel. cfg and subs are replaced, never
// modified, so Publish can use them after releasing the lock.
type pubChannel struct {
	name   string
	cfg    Config
	gen    uint64 // bumped by every Register of the name
	subs   []*subscriber
	byPeer map[identity.NodeID]*subscriber
	seq    atomic.Uint64
}

// New returns an engine for identity id that talks through tr.
func New(id *identity.Identity, tr Transport, opt Options) (*Engine, error) {
	if id == nil || tr == nil {
		return nil, fmt.Errorf("%w: identity and transport are required", ErrInvalidConfig)
	}
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	var r [8]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand panics instead)
	return &Engine{
		id:        id,
		self:      id.NodeID(),
		selfKey:   []ed25519.PublicKey{id.PublicKey()},
		tr:        tr,
		opt:       opt,
		log:       opt.Logger,
		lim:       newLimiter(opt),
		channels:  make(map[string]*pubChannel),
		subs:      make(map[identity.NodeID]map[string]*Subscription),
		waiters:   make(map[uint64]*Subscription),
		nextReq:   binary.BigEndian.Uint64(r[:]), // a restart does not reuse recent ids
		nextSweep: opt.Now().Add(opt.SweepInterval),
	}, nil
}

// send encodes m and sends it to peer to.
func (e *Engine) send(to identity.NodeID, m *message) error {
	if err := e.tr.Send(to, m.appendTo(make([]byte, 0, m.encodedLen()))); err != nil {
		e.st.sendErrors.Add(1)
		return err
	}
	e.st.messagesSent.Add(1)
	return nil
}

// Register creates channel name with cfg, or replaces the config of an
// existing one. On replacement the current subscribers are checked against
// the new config at once and those that no longer pass are removed and
// told why. It fails with ErrInvalidName, ErrInvalidConfig, or
// ErrUnauthorized when cfg.PublishToken does not let this node publish.
func (e *Engine) Register(name string, cfg Config) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	cfg.TokenIssuers = slices.Clone(cfg.TokenIssuers)
	if t := cfg.PublishToken; t != nil {
		err := e.opt.TokenCache.Authorize(t, e.opt.Now(), identity.TokenRequest{
			Subject: e.id.PublicKey(), Channel: name, Perm: identity.PermPublish, Issuers: e.issuers(cfg),
		})
		if err != nil {
			return fmt.Errorf("%w: publish token: %w", ErrUnauthorized, err)
		}
	}
	e.mu.Lock()
	ch := e.channels[name]
	if ch == nil {
		ch = &pubChannel{name: name, byPeer: make(map[identity.NodeID]*subscriber)}
		e.channels[name] = ch
	}
	ch.cfg = cfg
	ch.gen++
	subs := ch.subs
	e.mu.Unlock()
	e.recheck(ch, subs)
	return nil
}

// Unregister removes channel name; its subscribers are told it is gone
// (ReasonUnknownChannel). Unregistering an unknown name does nothing.
func (e *Engine) Unregister(name string) {
	e.mu.Lock()
	ch := e.channels[name]
	delete(e.channels, name)
	e.mu.Unlock()
	if ch == nil {
		return
	}
	for _, s := range ch.subs {
		e.st.evicted.Add(1)
		_ = e.send(s.peer, &message{typ: msgEnd, name: []byte(name), reason: ReasonUnknownChannel})
	}
}

// Subscribers returns the current subscribers of channel name, in order of
// admission.
func (e *Engine) Subscribers(name string) []identity.NodeID {
	e.mu.RLock()
	defer e.mu.RUnlock()
	ch := e.channels[name]
	if ch == nil {
		return nil
	}
	ids := make([]identity.NodeID, len(ch.subs))
	for i, s := range ch.subs {
		ids[i] = s.peer
	}
	return ids
}

// Revoke revokes the token with id: a subscriber admitted with it stops
// receiving from the next Publish, and it admits no one any more. until
// is when the token expires anyway; the engine forgets the revocation
// then. It fails with ErrInvalidConfig when DefaultMaxRevoked unexpired
// revocations are already held.
func (e *Engine) Revoke(id [identity.TokenIDSize]byte, until time.Time) error {
	now := e.opt.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.revoked.Load()
	if old != nil && len(old.ids) >= DefaultMaxRevoked {
		old = old.with(nil, now)
		if len(old.ids) >= DefaultMaxRevoked {
			return fmt.Errorf("%w: %d revocations held", ErrInvalidConfig, len(old.ids))
		}
	}
	e.revoked.Store(old.with(map[[identity.TokenIDSize]byte]time.Time{id: until}, now))
	return nil
}

// issuers returns the token issuers cfg trusts: this node and TokenIssuers.
func (e *Engine) issuers(cfg Config) []ed25519.PublicKey {
	if len(cfg.TokenIssuers) == 0 {
		return e.selfKey
	}
	return append(slices.Clone(e.selfKey), cfg.TokenIssuers...)
}

// ownSubnet returns this node's subnet: the pinned one, or the policy's
// verdict on its own announcement.
func (e *Engine) ownSubnet() SubnetID {
	if !e.opt.Subnet.IsZero() {
		return e.opt.Subnet
	}
	n, _, _ := e.tr.PeerInfo(e.self)
	return e.opt.Policy.Subnet(n.Set)
}

// admit decides whether peer may subscribe to ch's channel under cfg with
// tok (nil for none). It runs without locks; it verifies the token's
// signature through the token cache.
func (e *Engine) admit(name string, cfg Config, peer identity.NodeID, tok *identity.PermissionToken, now time.Time) (Reason, TokenProblem) {
	node, key, ok := e.tr.PeerInfo(peer)
	if !ok {
		return ReasonCapabilities, TokenOK
	}
	if cfg.Visibility != Global && !cfg.Visibility.Visible(e.ownSubnet(), e.opt.Policy.Subnet(node.Set)) {
		return ReasonSubnet, TokenOK
	}
	if !cfg.SubscribeCaps.Match(node) {
		return ReasonCapabilities, TokenOK
	}
	if len(cfg.SubscribeGroups) > 0 && !e.inGroup(peer, cfg.SubscribeGroups) {
		return ReasonGroups, TokenOK
	}
	if !cfg.RequireToken {
		return 0, TokenOK
	}
	if tok == nil {
		return ReasonToken, TokenMissing
	}
	if e.revoked.Load().has(bloomBits(tok.ID), tok.ID) {
		return ReasonToken, TokenRevoked
	}
	err := e.opt.TokenCache.Authorize(tok, now, identity.TokenRequest{
		Subject: key, Channel: name, Perm: identity.PermSubscribe, Issuers: e.issuers(cfg),
	})
	if err != nil {
		return ReasonToken, tokenProblemOf(err)
	}
	return 0, TokenOK
}

// inGroup reports whether node id holds a certificate naming any of
// groups.
func (e *Engine) inGroup(id identity.NodeID, groups []string) bool {
	return e.opt.InGroup != nil && e.opt.InGroup(id, groups...)
}

// handleSubscribe answers a subscribe request: RateLimited for a throttled
// peer before anything else, then the checks of admit, then the
// subscriber limit.
func (e *Engine) handleSubscribe(from identity.NodeID, m *message) {
	now := e.opt.Now()
	reject := func(r Reason, p TokenProblem) {
		e.st.rejected[r].Add(1)
		if r != ReasonRateLimited && r != ReasonTooManySubscribers {
			e.lim.fail(from, now)
		}
		if e.log.Enabled(context.Background(), slog.LevelDebug) {
			e.log.Debug("channel: subscribe rejected", "peer", from.Short(), "channel", string(m.name), "reason", r.String(), "token", p.Err())
		}
		_ = e.send(from, &message{typ: msgReject, reqID: m.reqID, reason: r, problem: p})
	}
	if e.lim.throttled(from, now) {
		reject(ReasonRateLimited, TokenOK)
		return
	}
	name := string(m.name)
	var tok *identity.PermissionToken
	var tokErr error
	if len(m.token) > 0 {
		tok, tokErr = identity.DecodeToken(m.token)
	}
	// A concurrent Register may replace the config while admit runs;
	// admit again under the new config (Register is rare, so this ends).
	for {
		e.mu.RLock()
		ch := e.channels[name]
		var cfg Config
		var gen uint64
		if ch != nil {
			cfg, gen = ch.cfg, ch.gen
		}
		e.mu.RUnlock()
		if ch == nil {
			reject(ReasonUnknownChannel, TokenOK)
			return
		}
		if tokErr != nil && cfg.RequireToken {
			reject(ReasonToken, TokenMalformed)
			return
		}
		t := tok
		if !cfg.RequireToken {
			t = nil // not needed: not checked, not kept
		}
		if r, p := e.admit(name, cfg, from, t, now); r != 0 {
			reject(r, p)
			return
		}
		e.mu.Lock()
		if e.channels[name] != ch || ch.gen != gen {
			e.mu.Unlock()
			continue
		}
		if ch.byPeer[from] == nil && len(ch.subs) >= cfg.MaxSubscribers {
			e.mu.Unlock()
			reject(ReasonTooManySubscribers, TokenOK)
			return
		}
		e.putSubscriberLocked(ch, newSubscriber(from, t))
		e.mu.Unlock()
		e.st.acks.Add(1)
		_ = e.send(from, &message{typ: msgAck, reqID: m.reqID, pending: uint32(cfg.PendingLimit)})
		return
	}
}

// putSubscriberLocked inserts s, or replaces the record of the same peer
// (a re-subscription, perhaps with a new token), keeping its position.
func (e *Engine) putSubscriberLocked(ch *pubChannel, s *subscriber) {
	subs := slices.Clone(ch.subs)
	if old := ch.byPeer[s.peer]; old != nil {
		subs[slices.Index(subs, old)] = s
	} else {
		subs = append(subs, s)
	}
	ch.subs = subs
	ch.byPeer[s.peer] = s
}

// removeSubscriberLocked removes s if it is still the peer's record.
func (e *Engine) removeSubscriberLocked(ch *pubChannel, s *subscriber) bool {
	if ch.byPeer[s.peer] != s {
		return false
	}
	delete(ch.byPeer, s.peer)
	i := slices.Index(ch.subs, s)
	ch.subs = slices.Delete(slices.Clone(ch.subs), i, i+1)
	return true
}

// evict removes subscribers of ch and tells each why. problems[i] is the
// token problem of reasons[i].
func (e *Engine) evict(ch *pubChannel, subs []*subscriber, reasons []Reason, problems []TokenProblem) {
	if len(subs) == 0 {
		return
	}
	removed := make([]bool, len(subs))
	e.mu.Lock()
	live := e.channels[ch.name] == ch
	for i, s := range subs {
		removed[i] = live && e.removeSubscriberLocked(ch, s)
	}
	e.mu.Unlock()
	for i, s := range subs {
		if removed[i] {
			e.st.evicted.Add(1)
			_ = e.send(s.peer, &message{typ: msgEnd, name: []byte(ch.name), reason: reasons[i], problem: problems[i]})
		}
	}
}

// recheck re-runs the admission checks (capabilities, subnet, token: its
// signature from the cache) for subs of ch under ch's current config and
// evicts those that fail.
func (e *Engine) recheck(ch *pubChannel, subs []*subscriber) {
	e.mu.RLock()
	cfg := ch.cfg
	e.mu.RUnlock()
	now := e.opt.Now()
	var out []*subscriber
	var reasons []Reason
	var problems []TokenProblem
	for _, s := range subs {
		if r, p := e.admit(ch.name, cfg, s.peer, s.token, now); r != 0 {
			out, reasons, problems = append(out, s), append(reasons, r), append(problems, p)
		}
	}
	e.evict(ch, out, reasons, problems)
}

// handleUnsubscribe removes the sender from the channel, if subscribed.
func (e *Engine) handleUnsubscribe(from identity.NodeID, m *message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch := e.channels[string(m.name)]; ch != nil {
		if s := ch.byPeer[from]; s != nil && e.removeSubscriberLocked(ch, s) {
			e.st.unsubscribes.Add(1)
		}
	}
}

// PublishReport says what one Publish did.
type PublishReport struct {
	Seq       uint64 // the message's sequence number in the channel (from 1)
	Attempted int    // subscribers the message was meant for
	Delivered int    // subscribers whose session accepted it (Transport.Send succeeded)
	Failures  []PublishFailure
}

// PublishFailure is one subscriber a message did not reach.
type PublishFailure struct {
	Peer identity.NodeID
	// Err is the Transport's error, or a *RejectError (Evicted) for a
	// subscriber whose token expired or was revoked, who was removed.
	Err error
}

// Publish sends payload to every current subscriber of channel name that
// is still authorised, and reports who it reached. Delivery is handed to
// the Transport: a subscriber counted as Delivered can still lose the
// message to a slow consumer queue or, on an unreliable path, to the
// network. With a Transport that is a Waiter, Publish waits up to
// Config.PublishWait (and while ctx allows) for subscribers whose queue
// is full, after sending to the others; one it waited for in vain fails
// with ErrSlowSubscriber and is not waited for again until it catches
// up. Publish fails with ErrUnknownChannel, ErrTooLarge, the context's
// error, or ErrUnauthorized when this node fails the channel's
// PublishCaps or its PublishToken has expired; then nothing is sent.
func (e *Engine) Publish(ctx context.Context, name string, payload []byte) (PublishReport, error) {
	p := [1][]byte{payload}
	var r [1]PublishReport
	if err := e.publish(ctx, name, p[:], r[:]); err != nil {
		return PublishReport{}, err
	}
	return r[0], nil
}

// PublishMany publishes payloads in order on channel name, like Publish
// for each but checking the channel and this node's authorisation once.
// It returns one report per payload sent; on an error from ctx it returns
// the reports of the payloads sent before it.
func (e *Engine) PublishMany(ctx context.Context, name string, payloads [][]byte) ([]PublishReport, error) {
	r := make([]PublishReport, len(payloads))
	err := e.publish(ctx, name, payloads, r)
	n := 0
	for n < len(r) && r[n].Seq != 0 {
		n++
	}
	return r[:n], err
}

func (e *Engine) publish(ctx context.Context, name string, payloads [][]byte, reports []PublishReport) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, p := range payloads {
		if len(p) > MaxPayloadSize {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(p), MaxPayloadSize)
		}
	}
	e.mu.RLock()
	ch := e.channels[name]
	var cfg Config
	var subs []*subscriber
	if ch != nil {
		cfg, subs = ch.cfg, ch.subs
	}
	e.mu.RUnlock()
	if ch == nil {
		return fmt.Errorf("%w: %q", ErrUnknownChannel, name)
	}
	nowT := e.opt.Now()
	if self, _, _ := e.tr.PeerInfo(e.self); !cfg.PublishCaps.Match(self) {
		return fmt.Errorf("%w: this node's capabilities fail %q's PublishCaps %s", ErrUnauthorized, name, cfg.PublishCaps)
	}
	if len(cfg.PublishGroups) > 0 && !e.inGroup(e.self, cfg.PublishGroups) {
		return fmt.Errorf("%w: this node's certificate names none of %q's PublishGroups %v", ErrUnauthorized, name, cfg.PublishGroups)
	}
	if t := cfg.PublishToken; t != nil && !nowT.Before(t.Expiry) {
		return fmt.Errorf("%w: publish token for %q expired at %v", ErrUnauthorized, name, t.Expiry.UTC())
	}
	// The fast path: expiry and revocation of every subscriber, checked
	// once for all payloads. Those that fail are reported and evicted.
	now, rv := nowT.UnixNano(), e.revoked.Load()
	live := subs
	var gone []*subscriber
	var goneFail []PublishFailure
	for _, s := range subs {
		if !s.authorized(now, rv) {
			gone = append(gone, s)
			goneFail = append(goneFail, PublishFailure{Peer: s.peer, Err: e.endError(name, s, now)})
		}
	}
	if len(gone) > 0 {
		live = make([]*subscriber, 0, len(subs)-len(gone))
		for _, s := range subs {
			if !slices.Contains(gone, s) {
				live = append(live, s)
			}
		}
		// Evicted first, so that a ctx ending between payloads does
		// not skip it.
		reasons := make([]Reason, len(gone))
		problems := make([]TokenProblem, len(gone))
		for i, f := range goneFail {
			re := f.Err.(*RejectError)
			reasons[i], problems[i] = re.Reason, re.Token
		}
		e.evict(ch, gone, reasons, problems)
	}
	// Subscribers the Transport refused wait for room together, for at
	// most cfg.PublishWait per call (waitCtx, made when first needed).
	wait, _ := e.tr.(Waiter)
	if cfg.PublishWait < 0 {
		wait = nil
	}
	var waitCtx context.Context
	var waiting []*subscriber
	for i, p := range payloads {
		if i > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		m := message{typ: msgPublish, name: []byte(name), seq: ch.seq.Add(1), payload: p}
		b := m.appendTo(make([]byte, 0, m.encodedLen()))
		r := &reports[i]
		r.Seq, r.Attempted = m.seq, len(subs)
		if len(goneFail) > 0 {
			r.Failures = slices.Clone(goneFail)
		}
		waiting = waiting[:0]
		for _, s := range live {
			if err := e.tr.Send(s.peer, b); err != nil {
				if wait != nil && !s.slow.Load() {
					waiting = append(waiting, s)
					continue
				}
				e.st.sendErrors.Add(1)
				r.Failures = append(r.Failures, PublishFailure{Peer: s.peer, Err: err})
				continue
			}
			if s.slow.Load() {
				s.slow.Store(false) // it caught up
			}
			r.Delivered++
		}
		if len(waiting) > 0 {
			if waitCtx == nil {
				var cancel context.CancelFunc
				waitCtx, cancel = context.WithTimeoutCause(ctx, cfg.PublishWait, errPublishWait)
				defer cancel()
			}
			e.sendWaiting(waitCtx, wait, b, waiting, r)
		}
		e.st.published.Add(1)
		e.st.messagesSent.Add(uint64(r.Delivered))
	}
	return nil
}

// sendWaiting sends b to the subscribers Send refused, waiting for room
// until ctx ends, and records the outcome in r. A subscriber still
// without room when the wait ran out is marked slow; a ctx the caller
// ended marks no one.
func (e *Engine) sendWaiting(ctx context.Context, wait Waiter, b []byte, subs []*subscriber, r *PublishReport) {
	for _, s := range subs {
		err := wait.SendWait(ctx, s.peer, b)
		if err == nil {
			e.st.publishWaits.Add(1)
			s.slow.Store(false)
			r.Delivered++
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) && context.Cause(ctx) == errPublishWait {
			s.slow.Store(true)
			err = fmt.Errorf("%w: %w", ErrSlowSubscriber, err)
		}
		e.st.sendErrors.Add(1)
		r.Failures = append(r.Failures, PublishFailure{Peer: s.peer, Err: err})
	}
}

// endError says why subscriber s failed the fast path at now.
func (e *Engine) endError(name string, s *subscriber, now int64) *RejectError {
	p := TokenRevoked
	if now >= s.expires {
		p = TokenExpired
	}
	return &RejectError{Publisher: e.self, Channel: name, Reason: ReasonToken, Token: p, Evicted: true}
}

// HandleMessage processes one channel message received from peer from
// over an authenticated session. msg is not retained: the caller may reuse
// it after HandleMessage returns. It returns an error wrapping ErrMalformed
// for bytes that do not decode, and nil otherwise (protocol-level refusals
// are answered to the peer, not returned). Several goroutines may call it
// at once; a subscribe request's token check (an ed25519 verification on a
// token cache miss) runs without engine locks.
func (e *Engine) HandleMessage(from identity.NodeID, msg []byte) error {
	e.st.received.Add(1)
	m, err := decode(msg)
	if err != nil {
		e.st.malformed.Add(1)
		return err
	}
	switch m.typ {
	case msgSubscribe:
		e.handleSubscribe(from, &m)
	case msgUnsubscribe:
		e.handleUnsubscribe(from, &m)
	case msgAck, msgReject:
		e.handleAnswer(from, &m)
	case msgPublish:
		e.handlePublish(from, &m)
	case msgEnd:
		e.handleEnd(from, &m)
	}
	return nil
}

// Tick runs the engine's timers; the node calls it every TickInterval.
// It subscribes again the lost subscriptions whose retry is due (see
// PeerDown). Every SweepInterval it re-checks every subscriber of every channel
// (token expiry and revocation, capabilities and subnet against the
// peers' current announcements, issuer trust) and evicts those that fail;
// it also forgets stale limiter entries and expired revocations.
func (e *Engine) Tick() {
	now := e.opt.Now()
	e.retryLost(now)
	e.mu.Lock()
	if now.Before(e.nextSweep) {
		e.mu.Unlock()
		return
	}
	e.nextSweep = now.Add(e.opt.SweepInterval)
	chans := make([]*pubChannel, 0, len(e.channels))
	subs := make([][]*subscriber, 0, len(e.channels))
	for _, ch := range e.channels {
		chans, subs = append(chans, ch), append(subs, ch.subs)
	}
	if rv := e.revoked.Load(); rv != nil {
		e.revoked.Store(rv.with(nil, now))
	}
	e.mu.Unlock()
	e.st.sweeps.Add(1)
	e.lim.clean(now)
	for i, ch := range chans {
		e.recheck(ch, subs[i])
	}
}

// Stats is a snapshot of an engine's counters since New.
type Stats struct {
	Received     uint64 // messages given to HandleMessage
	Malformed    uint64 // of those, messages that did not decode
	MessagesSent uint64 // messages Transport.Send accepted (a publish counts once per subscriber)
	SendErrors   uint64 // messages Transport.Send refused (and, with a Waiter, SendWait too)
	PublishWaits uint64 // of MessagesSent, those that waited for room (Config.PublishWait)

	// Publisher side.
	Acks                uint64 // subscribe requests admitted
	RejectedUnknown     uint64
	RejectedCaps        uint64
	RejectedToken       uint64
	RejectedSubnet      uint64
	RejectedRateLimited uint64
	RejectedFull        uint64
	RejectedGroups      uint64
	Evicted             uint64 // subscribers removed (expiry, revocation, config change, sweep, unregister)
	Unsubscribes        uint64 // subscribers that left
	Published           uint64 // messages published (once per message, not per subscriber)
	Sweeps              uint64

	// Subscriber side.
	Delivered uint64 // publishes queued to a subscription
	Dropped   uint64 // publishes dropped by full subscription queues
	Stray     uint64 // publishes for no current subscription (answered with an unsubscribe)
}

type counters struct {
	received, malformed, messagesSent, sendErrors  atomic.Uint64
	publishWaits                                   atomic.Uint64
	acks, evicted, unsubscribes, published, sweeps atomic.Uint64
	rejected                                       [reasonMax + 1]atomic.Uint64
	delivered, dropped, stray                      atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	c := &e.st
	return Stats{
		Received:            c.received.Load(),
		Malformed:           c.malformed.Load(),
		MessagesSent:        c.messagesSent.Load(),
		SendErrors:          c.sendErrors.Load(),
		PublishWaits:        c.publishWaits.Load(),
		Acks:                c.acks.Load(),
		RejectedUnknown:     c.rejected[ReasonUnknownChannel].Load(),
		RejectedCaps:        c.rejected[ReasonCapabilities].Load(),
		RejectedToken:       c.rejected[ReasonToken].Load(),
		RejectedSubnet:      c.rejected[ReasonSubnet].Load(),
		RejectedRateLimited: c.rejected[ReasonRateLimited].Load(),
		RejectedFull:        c.rejected[ReasonTooManySubscribers].Load(),
		RejectedGroups:      c.rejected[ReasonGroups].Load(),
		Evicted:             c.evicted.Load(),
		Unsubscribes:        c.unsubscribes.Load(),
		Published:           c.published.Load(),
		Sweeps:              c.sweeps.Load(),
		Delivered:           c.delivered.Load(),
		Dropped:             c.dropped.Load(),
		Stray:               c.stray.Load(),
	}
}
