//go:build nat

package nat

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Transport is what the engine needs from the node it runs in. Its methods
// must be safe for concurrent use and must not block; the engine never
// calls them while holding its own lock.
type Transport interface {
	// SendRaw sends b, a STUN message, from the node's socket to addr.
	SendRaw(addr netip.AddrPort, b []byte) error
	// Send sends msg as one NAT frame to peer on its session.
	Send(peer identity.NodeID, msg []byte) error
	// Path reports whether peer has an established session and, when its
	// path is direct, the address its packets arrive from (invalid when
	// relayed).
	Path(peer identity.NodeID) (direct netip.AddrPort, up bool)
	// DirectPeers returns the peers with a session on a direct path.
	DirectPeers() []identity.NodeID
	// Probe sends an authenticated probe to peer at addr on its existing
	// session. If the peer is there, its answer arrives directly and the
	// node moves the path (the engine never does).
	Probe(peer identity.NodeID, addr netip.AddrPort) error
	// LocalAddrs returns the node's socket addresses, with an unspecified
	// address replaced by the host's interface addresses.
	LocalAddrs() []netip.AddrPort
	// SetPathReason records why peer's path stays relayed; the node shows
	// it in its stats. It is ignored while the path is direct.
	SetPathReason(peer identity.NodeID, why string)
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.ReflexTimeout, DefaultReflexTimeout)
	def(&c.PunchTimeout, DefaultPunchTimeout)
	def(&c.ProbeInterval, DefaultProbeInterval)
	def(&c.RetryAfter, DefaultRetryAfter)
	def(&c.ReclassifyInterval, DefaultReclassifyInterval)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// counters are the engine's atomic counters.
type counters struct {
	attempted, succeeded, skipped, fallbacks atomic.Uint64
	introductions, queries, answers          atomic.Uint64
	classifications                          atomic.Uint64
}

// txKey names an introduction: the requester and its transaction id.
type txKey struct {
	from identity.NodeID
	id   uint64
}

// introWait is a ConnectDirect call waiting for its coordinator's go
// signal.
type introWait struct {
	coord, target identity.NodeID
	res           chan introResult
}

type introResult struct {
	run    *run
	status Status
}

// acceptWait is an Accept this node (the target) sent, waiting for the
// coordinator's go signal.
type acceptWait struct {
	peer    identity.NodeID
	expires time.Time
}

// coordWait is an introduction this node coordinates, waiting for the
// target's Accept.
type coordWait struct {
	to      identity.NodeID
	nat     Type
	cands   []netip.AddrPort
	expires time.Time
}

// stunWait is a STUN transaction in flight.
type stunWait struct {
	dst netip.AddrPort
	ch  chan netip.AddrPort
}

// reflexWait is a peer reflex request in flight.
type reflexWait struct {
	peer identity.NodeID
	ch   chan Message
}

// retryState follows a peer this node punched to (as requester): it
// schedules retries with backoff and notices fallbacks to the relay.
type retryState struct {
	coord    identity.NodeID
	failures int
	next     time.Time // zero: no retry scheduled
	direct   bool      // the path was direct at the last look
	inflight bool
	lastSeen time.Time
}

// Engine runs NAT traversal for one node. Create it with New, start its
// housekeeping with Start, and stop it with Close. All methods are safe
// for concurrent use.
type Engine struct {
	tr     Transport
	cfg    Config
	log    *slog.Logger
	st     counters
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	classifyMu sync.Mutex // serialises classifications

	// mu guards the fields below. Methods named ...Locked need it.
	mu           sync.Mutex
	typ          Type
	reflex       netip.AddrPort
	override     netip.AddrPort
	locals       []netip.AddrPort
	lastClassify time.Time
	classifying  bool
	closed       bool // Close was called: start no goroutine
	stunTx       map[[12]byte]stunWait
	reflexTx     map[uint64]reflexWait
	introTx      map[uint64]*introWait
	acceptTx     map[txKey]acceptWait
	coordTx      map[txKey]*coordWait
	runs         map[identity.NodeID]*run
	retries      map[identity.NodeID]*retryState
	// asked holds the peers whose request for a punch failed here, with
	// the coordinator of the request: the peer's side retries them, but
	// only this node hears at once when its own address changes.
	asked map[identity.NodeID]identity.NodeID
	pm    portMapper // port mapping (Config.PortMap); nil when off
}

// --- port mapping hook (build tag portmap, see portmap.go) ---

// portMapper is a running port mapper; Close deletes its mapping, Summary
// says in a line what it holds or why it holds nothing.
type portMapper interface {
	Close()
	Summary() string
}

// newPortMapper starts port mapping for an engine, or returns nil. The
// portmap build tag sets it; without the tag it is nil.
var newPortMapper func(*Engine) portMapper

// --- end port mapping hook ---

// New returns an engine that talks through tr. It starts nothing; Start
// does.
func New(tr Transport, cfg Config) *Engine {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{
		tr:       tr,
		cfg:      cfg,
		log:      cfg.Logger,
		ctx:      ctx,
		cancel:   cancel,
		stunTx:   make(map[[12]byte]stunWait),
		reflexTx: make(map[uint64]reflexWait),
		introTx:  make(map[uint64]*introWait),
		acceptTx: make(map[txKey]acceptWait),
		coordTx:  make(map[txKey]*coordWait),
		runs:     make(map[identity.NodeID]*run),
		retries:  make(map[identity.NodeID]*retryState),
		asked:    make(map[identity.NodeID]identity.NodeID),
	}
}

// Start starts the housekeeping goroutine (retries, expiry,
// reclassification on address change). With STUN servers configured it
// classifies at once.
func (e *Engine) Start() {
	e.mu.Lock()
	e.locals = e.tr.LocalAddrs()
	e.mu.Unlock()
	e.wg.Add(1)
	go e.loop()
	if len(e.cfg.STUNServers) > 0 {
		e.classifyAsync()
	}
	// Port mapping hook: start the mapper (build tag portmap).
	if e.cfg.PortMap && newPortMapper == nil {
		e.log.Warn("port mapping requested but not compiled in (build with -tags portmap)")
	} else if e.cfg.PortMap {
		if pm := newPortMapper(e); pm != nil {
			e.mu.Lock()
			e.pm = pm
			e.mu.Unlock()
		}
	}
}

// Close stops the engine: pending calls return, punches stop, the port
// mapping is deleted from the router, and every goroutine has ended when
// it returns.
func (e *Engine) Close() {
	// Port mapping hook: stop the mapper, deleting its mapping.
	e.mu.Lock()
	pm := e.pm
	e.closed = true // from here on no goroutine starts (the wg.Adds under mu happen before the Wait)
	e.mu.Unlock()
	if pm != nil {
		pm.Close()
	}
	e.cancel()
	e.wg.Wait()
}

// Type returns the current NAT classification.
func (e *Engine) Type() Type {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.typ
}

// ReflexAddr returns the address peers should use to reach this node: the
// override if set, else the measured reflex (invalid until measured).
func (e *Engine) ReflexAddr() netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reflexLocked()
}

func (e *Engine) reflexLocked() netip.AddrPort {
	if e.override.IsValid() {
		return e.override
	}
	return e.reflex
}

// reach is what peers learn of how to reach this node: the address it
// advertises (ReflexAddr) and the NAT type it claims in introductions.
type reach struct {
	addr netip.AddrPort
	typ  Type
}

func (e *Engine) reachLocked() reach { return reach{e.reflexLocked(), e.selfTypeLocked()} }

// reachChangedLocked follows a change of the reflex, the override or the
// classification, given the reach before. If peers would now learn
// something else, the punches that failed are tried again at the next
// tick instead of after their backoff, those this node asked for and
// those a peer asked for alike: the change may be what they lacked (a
// port mapping that completed after a punch failed makes this node
// reachable, even at the address it had). If the address changed, the
// returned function tells Config.OnReflexChange; the caller calls it once
// it has unlocked.
func (e *Engine) reachChangedLocked(before reach) (notify func()) {
	now := e.reachLocked()
	if now == before {
		return func() {}
	}
	t := time.Now()
	for _, r := range e.retries {
		if !r.direct && !r.next.IsZero() {
			r.next = t
		}
	}
	for peer, coord := range e.asked {
		delete(e.asked, peer)
		if r := e.retries[peer]; r != nil {
			if !r.direct {
				r.next = t
			}
			continue
		}
		if len(e.retries) < maxRemembered {
			e.retries[peer] = &retryState{coord: coord, next: t, lastSeen: t}
		}
	}
	if f := e.cfg.OnReflexChange; f != nil && now.addr != before.addr {
		return func() { f(now.addr) }
	}
	return func() {}
}

// SetReflexOverride makes addr the node's advertised reflex: it is the
// first candidate in introductions, and the pair matrix treats the node as
// Open. Use it for a known public address or port forward.
func (e *Engine) SetReflexOverride(addr netip.AddrPort) error {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !validAddr(addr) {
		return &Error{Kind: KindUnsupported, Reason: "override " + addr.String() + " is not a usable address"}
	}
	e.mu.Lock()
	before := e.reachLocked()
	e.override = addr
	notify := e.reachChangedLocked(before)
	e.mu.Unlock()
	notify()
	return nil
}

// ClearReflexOverride removes the override; the measured reflex is used
// again.
func (e *Engine) ClearReflexOverride() {
	e.mu.Lock()
	before := e.reachLocked()
	e.override = netip.AddrPort{}
	notify := e.reachChangedLocked(before)
	e.mu.Unlock()
	notify()
}

// Stats returns a snapshot of the engine's state and counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	st := Stats{Enabled: true, Type: e.typ, Reflex: e.reflex, Override: e.override}
	pm := e.pm
	e.mu.Unlock()
	if pm != nil {
		st.PortMap = pm.Summary()
	}
	st.PunchesAttempted = e.st.attempted.Load()
	st.PunchesSucceeded = e.st.succeeded.Load()
	st.PunchesSkipped = e.st.skipped.Load()
	st.RelayFallbacks = e.st.fallbacks.Load()
	st.Introductions = e.st.introductions.Load()
	st.ReflexQueries = e.st.queries.Load()
	st.ReflexAnswers = e.st.answers.Load()
	st.Classifications = e.st.classifications.Load()
	return st
}

// selfTypeLocked is the type the pair matrix uses for this node: Open
// with an override (a known public address or port mapping), else the
// classification.
func (e *Engine) selfTypeLocked() Type {
	if e.override.IsValid() {
		return Open
	}
	return e.typ
}

// candidatesLocked lists the addresses peers may reach this node at, best
// first: override, reflex, local addresses.
func (e *Engine) candidatesLocked() []netip.AddrPort {
	var out []netip.AddrPort
	add := func(a netip.AddrPort) {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		if validAddr(a) && !slices.Contains(out, a) && len(out) < MaxCandidates {
			out = append(out, a)
		}
	}
	add(e.override)
	add(e.reflex)
	for _, l := range e.locals {
		add(l)
	}
	return out
}

// newTxID returns a random transaction id.
func newTxID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// send encodes m and sends it to peer.
func (e *Engine) send(peer identity.NodeID, m Message) *Error {
	b, err := m.Append(make([]byte, 0, MaxMessageSize))
	if err != nil {
		return &Error{Kind: KindTransport, Peer: peer, Err: err}
	}
	if err := e.tr.Send(peer, b); err != nil {
		return &Error{Kind: KindTransport, Peer: peer, Err: err}
	}
	return nil
}

// loop is the housekeeping goroutine.
func (e *Engine) loop() {
	defer e.wg.Done()
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			e.tick(now)
		case <-e.ctx.Done():
			return
		}
	}
}

// tick expires introductions, runs retries and reclassifies when the
// local addresses changed, the classification is old, or it is still
// unknown.
func (e *Engine) tick(now time.Time) {
	type timeout struct {
		to identity.NodeID
		m  Message
	}
	var timeouts []timeout
	var retry []*retryState
	var retryPeers []identity.NodeID
	locals := e.tr.LocalAddrs()

	e.mu.Lock()
	for k, c := range e.coordTx {
		if now.After(c.expires) {
			delete(e.coordTx, k)
			timeouts = append(timeouts, timeout{k.from, Message{Type: MsgPunch, TxID: k.id, Peer: c.to, Status: StatusTimeout}})
		}
	}
	for k, a := range e.acceptTx {
		if now.After(a.expires) {
			delete(e.acceptTx, k)
		}
	}
	reclassify := !slices.Equal(locals, e.locals) ||
		now.Sub(e.lastClassify) > e.cfg.ReclassifyInterval ||
		e.typ == Unknown && now.Sub(e.lastClassify) > unknownRetry
	e.locals = locals
	for id := range e.asked {
		if addr, up := e.tr.Path(id); !up || addr.IsValid() {
			delete(e.asked, id) // gone, or direct after all
		}
	}
	for id, r := range e.retries {
		if r.inflight || e.runs[id] != nil {
			continue
		}
		addr, up := e.tr.Path(id)
		switch {
		case !up:
			if now.Sub(r.lastSeen) > forgetRetry {
				delete(e.retries, id)
			}
			continue
		case addr.IsValid():
			r.direct, r.lastSeen = true, now
			continue
		}
		r.lastSeen = now
		if r.direct {
			// The mesh fell back to the relay: the direct path went silent.
			r.direct = false
			e.st.fallbacks.Add(1)
			r.next = now.Add(e.cfg.RetryAfter)
		}
		if e.cfg.RetryAfter > 0 && !r.next.IsZero() && !now.Before(r.next) {
			r.inflight = true
			retry = append(retry, r)
			retryPeers = append(retryPeers, id)
		}
	}
	e.mu.Unlock()

	for _, t := range timeouts {
		e.send(t.to, t.m)
	}
	for i, r := range retry {
		e.wg.Add(1)
		go func(id identity.NodeID, coord identity.NodeID) {
			defer e.wg.Done()
			e.log.Debug("retrying punch", "peer", id.Short(), "coordinator", coord.Short())
			e.ConnectDirect(e.ctx, id, coord)
		}(retryPeers[i], r.coord)
	}
	if reclassify && (len(e.cfg.STUNServers) > 0 || len(e.tr.DirectPeers()) > 0) {
		e.classifyAsync()
	}
}

// classifyAsync starts a classification in the background unless one is
// running.
func (e *Engine) classifyAsync() {
	e.mu.Lock()
	if e.classifying {
		e.mu.Unlock()
		return
	}
	e.classifying = true
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.Reclassify(e.ctx)
		e.mu.Lock()
		e.classifying = false
		e.mu.Unlock()
	}()
}

// Reclassify measures the reflex with every STUN server and up to three
// directly connected peers, and classifies the NAT. It fails with
// KindReflexTimeout when nobody answered; the previous classification
// then stays.
func (e *Engine) Reclassify(ctx context.Context) (Type, error) {
	e.classifyMu.Lock()
	defer e.classifyMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ReflexTimeout)
	defer cancel()
	var (
		mu  sync.Mutex
		obs []observation
		wg  sync.WaitGroup
	)
	note := func(dst, mapped netip.AddrPort) {
		mu.Lock()
		obs = append(obs, observation{dst: dst, mapped: mapped})
		mu.Unlock()
	}
	for _, s := range e.cfg.STUNServers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst, err := resolve(ctx, s)
			if err != nil {
				e.log.Debug("STUN server does not resolve", "server", s, "err", err)
				return
			}
			if mapped, err := e.stunQuery(ctx, dst); err == nil {
				note(dst, mapped)
			}
		}()
	}
	peers := e.tr.DirectPeers()
	for _, p := range peers[:min(len(peers), maxReflexPeers)] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst, up := e.tr.Path(p)
			if !up || !dst.IsValid() {
				return
			}
			if mapped, err := e.ProbeReflex(ctx, p); err == nil {
				note(dst, mapped)
			}
		}()
	}
	wg.Wait()
	locals := e.tr.LocalAddrs()
	typ, reflex := classify(obs, locals)
	e.mu.Lock()
	notify := func() {}
	defer func() {
		e.mu.Unlock()
		notify()
	}()
	e.lastClassify = time.Now()
	e.locals = locals
	if len(obs) == 0 {
		why := "no STUN server or peer answered"
		if len(e.cfg.STUNServers) == 0 && len(peers) == 0 {
			why = "no STUN servers configured and no directly connected peers"
		}
		return e.typ, &Error{Kind: KindReflexTimeout, Reason: why}
	}
	if typ != e.typ || reflex != e.reflex {
		e.log.Info("NAT classified", "type", typ, "reflex", reflex, "reports", len(obs))
	}
	before := e.reachLocked()
	e.typ, e.reflex = typ, reflex
	notify = e.reachChangedLocked(before)
	e.st.classifications.Add(1)
	return typ, nil
}

// resolve turns "host:port" into an address.
func resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(pn)), nil
}

// ProbeReflex asks peer, which must have a direct session with this node,
// what address it sees this node at.
func (e *Engine) ProbeReflex(ctx context.Context, peer identity.NodeID) (netip.AddrPort, error) {
	if _, up := e.tr.Path(peer); !up {
		return netip.AddrPort{}, &Error{Kind: KindPeerUnreachable, Peer: peer, Reason: "no session"}
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ReflexTimeout)
	defer cancel()
	id := newTxID()
	ch := make(chan Message, 1)
	e.mu.Lock()
	e.reflexTx[id] = reflexWait{peer: peer, ch: ch}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.reflexTx, id)
		e.mu.Unlock()
	}()
	t := time.NewTicker(stunRetransmit)
	defer t.Stop()
	for {
		e.st.queries.Add(1)
		if err := e.send(peer, Message{Type: MsgReflexRequest, TxID: id}); err != nil {
			return netip.AddrPort{}, err
		}
		select {
		case m := <-ch:
			if len(m.Candidates) == 0 {
				return netip.AddrPort{}, &Error{Kind: KindPeerUnreachable, Peer: peer, Reason: "the peer sees this node only through a relay"}
			}
			return m.Candidates[0], nil
		case <-t.C:
		case <-ctx.Done():
			return netip.AddrPort{}, &Error{Kind: KindReflexTimeout, Peer: peer, Err: ctx.Err()}
		}
	}
}

// HandleFrame handles a NAT frame from peer. The node calls it on its
// receive path: it never blocks. Malformed frames and answers nobody
// waits for are dropped.
func (e *Engine) HandleFrame(from identity.NodeID, body []byte) {
	m, err := ParseMessage(body)
	if err != nil {
		return
	}
	switch m.Type {
	case MsgReflexRequest:
		resp := Message{Type: MsgReflexResponse, TxID: m.TxID}
		if addr, up := e.tr.Path(from); up && validAddr(addr) {
			resp.Candidates = []netip.AddrPort{addr}
		}
		e.send(from, resp)
	case MsgReflexResponse:
		e.mu.Lock()
		w, ok := e.reflexTx[m.TxID]
		e.mu.Unlock()
		if ok && w.peer == from {
			e.st.answers.Add(1)
			select {
			case w.ch <- m:
			default:
			}
		}
	case MsgIntroduce:
		e.handleIntroduce(from, m)
	case MsgOffer:
		e.handleOffer(from, m)
	case MsgAccept:
		e.handleAccept(from, m)
	case MsgPunch:
		e.handlePunch(from, m)
	}
}
