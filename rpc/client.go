package rpc

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/stream"
)

// ClientOptions configures a Client. The zero value of every field is a
// documented default.
type ClientOptions struct {
	// Codec encodes and decodes the values of typed calls (CallTyped,
	// CallServiceTyped, StreamTyped). Nil means JSON. Both ends of a
	// service must use the same codec.
	Codec Codec
	// MaxMessageSize bounds a request frame this client sends (larger
	// requests fail with KindInvalidRequest) and a reply frame it accepts
	// (a larger one resets the stream: KindTransport). 0 means
	// DefaultMaxMessageSize; at most 32 MiB (the stream limit).
	MaxMessageSize int
	// MaxAttempts bounds the nodes CallService tries for one call. 0 means
	// DefaultMaxAttempts.
	MaxAttempts int
	// Breaker configures the circuit breaker the client keeps per node.
	Breaker BreakerConfig
}

// ClientStats is a snapshot of a Client's counters.
type ClientStats struct {
	// Calls counts calls started (each CallService attempt is one).
	Calls uint64
	// Failures counts calls that ended with an error, Timeouts and
	// Cancelled those of KindTimeout and KindCancelled.
	Failures, Timeouts, Cancelled uint64
	// Failovers counts CallService attempts after a failed one.
	Failovers uint64
	// Outstanding is the number of calls in flight.
	Outstanding int
	// Nodes is the number of nodes the client keeps state for (see
	// Client): at most 4096, or twice the nodes its last sweep had to
	// keep if that is more.
	Nodes int
}

// Client makes rpc calls from one mesh. It keeps, per node called, the
// number of outstanding calls and a circuit breaker, which CallService and
// Pick use to choose among the nodes of a service. It starts no goroutines
// and needs no Close. Its methods are safe for concurrent use.
//
// The per-node table is bounded. A node is idle when no call to it is in
// flight and its breaker holds no failure, or only failures and probes
// older than the breaker's Cooldown plus one minute (an open breaker is
// kept at least that long). A new node first sweeps the idle ones out
// when the table holds 4096 nodes, or twice what the previous sweep kept
// if that is more: sweeping costs O(1) amortised per node added, and the
// table holds at most twice the nodes that must be remembered. A node
// forgotten and called again starts fresh: nothing outstanding, a closed
// breaker (see Breaker for a pointer kept meanwhile).
type Client struct {
	m     *mesh.Mesh
	opts  ClientOptions
	clock Clock // opts.Breaker.Clock, or the system clock

	mu      sync.Mutex // guards nodes, sweepAt and the increments of nodeState.outstanding
	nodes   map[identity.NodeID]*nodeState
	sweepAt int // len(nodes) at which the next new node sweeps the table first

	calls, failures, timeouts, cancelled, failovers atomic.Uint64
	outstanding                                     atomic.Int64
}

// nodeState is what a client knows of one node's health.
type nodeState struct {
	// outstanding counts the node's calls in flight. It is raised only
	// under Client.mu (acquire), so that a sweep, which holds Client.mu,
	// never forgets a node a call is about to use; it may drop at any time.
	outstanding atomic.Int64
	breaker     *CircuitBreaker
}

// NewClient returns a client that calls from m.
func NewClient(m *mesh.Mesh, opts ClientOptions) *Client {
	if opts.Codec == nil {
		opts.Codec = JSON{}
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	clock := opts.Breaker.Clock
	if clock == nil {
		clock = systemClock{}
	}
	return &Client{m: m, opts: opts, clock: clock, nodes: make(map[identity.NodeID]*nodeState), sweepAt: nodeTableMin}
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	nodes := len(c.nodes)
	c.mu.Unlock()
	return ClientStats{
		Nodes:       nodes,
		Calls:       c.calls.Load(),
		Failures:    c.failures.Load(),
		Timeouts:    c.timeouts.Load(),
		Cancelled:   c.cancelled.Load(),
		Failovers:   c.failovers.Load(),
		Outstanding: int(c.outstanding.Load()),
	}
}

// Breaker returns the circuit breaker the client keeps for node, starting
// a closed one if it keeps none. The pointer stays the node's breaker,
// which the client's calls consult and report to, for as long as the
// client remembers the node: while calls to it are in flight, and while
// the breaker holds failures (open, half-open, or closed with failures
// counted) until its Cooldown plus a minute have passed since its last
// failure or probe. Once the node is idle the client may forget it (see
// Client); a later call, or Breaker, then starts a fresh closed breaker,
// and the old one is detached: it no longer sees the client's calls, and
// what is reported to it affects none. To observe or steer a node's
// breaker over time, call Breaker again rather than keep the pointer.
func (c *Client) Breaker(node identity.NodeID) *CircuitBreaker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entry(node).breaker
}

// lookup returns the client's state for node, nil when it keeps none (a
// node it would treat as fresh: breaker closed, nothing outstanding).
func (c *Client) lookup(node identity.NodeID) *nodeState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[node]
}

// acquire returns the client's state for node, created if need be, with
// one more call outstanding: the caller must end it with release.
func (c *Client) acquire(node identity.NodeID) *nodeState {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := c.entry(node)
	ns.outstanding.Add(1)
	return ns
}

// release ends a call that acquire counted.
func (c *Client) release(ns *nodeState) { ns.outstanding.Add(-1) }

// entry returns the state for node, creating it, after sweeping the table
// if it is full. c.mu must be held.
func (c *Client) entry(node identity.NodeID) *nodeState {
	ns := c.nodes[node]
	if ns == nil {
		if len(c.nodes) >= c.sweepAt {
			c.sweep()
		}
		ns = &nodeState{breaker: NewCircuitBreaker(c.opts.Breaker)}
		c.nodes[node] = ns
	}
	return ns
}

// sweep forgets the idle nodes: no call in flight, and a breaker that
// holds no failure or only old ones (CircuitBreaker.forgettable). The next
// sweep comes when the table has doubled what this one kept (or reaches
// nodeTableMin), so each node added pays for O(1) of sweeping. c.mu must
// be held; as outstanding is raised only under it, a node whose count is 0
// here has no call that could still start on its state.
func (c *Client) sweep() {
	now := c.clock.Now()
	before := len(c.nodes)
	for id, ns := range c.nodes {
		if ns.outstanding.Load() == 0 && ns.breaker.forgettable(now) {
			delete(c.nodes, id)
		}
	}
	if n := len(c.nodes); n < before/4 {
		// A map keeps its peak size: copy what is left to a small one.
		m := make(map[identity.NodeID]*nodeState, n)
		for id, ns := range c.nodes {
			m[id] = ns
		}
		c.nodes = m
	}
	c.sweepAt = max(nodeTableMin, 2*len(c.nodes))
}

// Call calls service on node with request body req and returns the reply
// body. The call ends at ctx's deadline, which travels with the request:
// the handler's context ends then too. Cancelling ctx cancels the
// handler's context within about half a round trip. Every error is an
// *Error.
func (c *Client) Call(ctx context.Context, node identity.NodeID, service string, req []byte) ([]byte, error) {
	var cl call // nothing keeps it past the call: it stays on the stack
	if err := c.start(ctx, &cl, node, service, req, false, 0); err != nil {
		return nil, err
	}
	f, ferr := cl.next(ctx)
	if ferr != nil {
		return nil, cl.finish(ferr)
	}
	switch f.Type {
	case FrameResponse:
		cl.end()
		return f.Body, cl.finish(nil)
	case FrameError:
		cl.end()
		return nil, cl.finish(cl.fail(KindServer, nil, &f))
	}
	cl.st.Reset(resetProtocol)
	return nil, cl.finish(cl.fail(KindTransport, fmt.Errorf("%w: frame %#x in a unary reply", ErrMalformed, f.Type), nil))
}

// CallService calls service on one of the nodes that advertise it (see
// Pick). If the call fails in a way that shows the node unhealthy (no
// route, transport, circuit open, StatusUnavailable) it is sent to another
// node, at most MaxAttempts nodes in all, while ctx lasts. A failed-over
// call may have run on the first node too (its stream broke after the
// request arrived): handlers of services called this way should be
// idempotent. With no node to call it returns KindNoResponders.
func (c *Client) CallService(ctx context.Context, service string, req []byte) ([]byte, error) {
	var tried []identity.NodeID
	var last error
	for range c.opts.MaxAttempts {
		node, err := c.pick(service, tried)
		if err != nil {
			if last != nil {
				return nil, last
			}
			return nil, err
		}
		if last != nil {
			c.failovers.Add(1)
		}
		resp, err := c.Call(ctx, node, service, req)
		if err == nil || !failsOver(err) || ctx.Err() != nil {
			return resp, err
		}
		tried = append(tried, node)
		last = err
	}
	return nil, last
}

// failsOver reports whether CallService tries another node after err.
func failsOver(err error) bool {
	var re *Error
	if !errors.As(err, &re) {
		return false
	}
	switch re.Kind {
	case KindNoRoute, KindTransport, KindCircuitOpen:
		return true
	case KindServer:
		return re.Status == StatusUnavailable
	}
	return false
}

// Pick chooses the node CallService would call for service: among the
// other nodes whose capabilities carry "rpc:<service>" and whose breaker
// lets a call through, the one with the fewest outstanding calls from
// this client; before that it prefers nodes whose session is not known to
// be down, then online over degraded nodes, and after it direct over
// relayed (or not yet connected) paths; ties are broken at random. It
// returns KindNoResponders when no node qualifies.
func (c *Client) Pick(service string) (identity.NodeID, error) {
	return c.pick(service, nil)
}

// candidate is the ordering of Pick: smaller is better, field by field.
type candidate struct {
	down        bool // this node had a session with it, and it is down
	degraded    bool
	outstanding int64
	relayed     bool
}

func (a candidate) less(b candidate) bool {
	if a.down != b.down {
		return !a.down
	}
	if a.degraded != b.degraded {
		return !a.degraded
	}
	if a.outstanding != b.outstanding {
		return a.outstanding < b.outstanding
	}
	return !a.relayed && b.relayed
}

func (c *Client) pick(service string, skip []identity.NodeID) (identity.NodeID, error) {
	if err := ValidService(service); err != nil {
		return identity.NodeID{}, &Error{Kind: KindInvalidRequest, Service: service, Err: err}
	}
	var (
		best              identity.NodeID
		bestScore         candidate
		ties              int
		blocked, eligible int
	)
	for _, n := range c.m.FindNodes(capability.HasTag(TagPrefix + service)) {
		if n.Self || slices.Contains(skip, n.ID) {
			continue
		}
		var outstanding int64
		if ns := c.lookup(n.ID); ns != nil { // none: a fresh node, never called or forgotten
			if !ns.breaker.ready() {
				blocked++
				continue
			}
			outstanding = ns.outstanding.Load()
		}
		p := c.m.Peer(n.ID)
		sc := candidate{
			down:        p != nil && !p.IsUp(),
			degraded:    n.Status != capability.StatusOnline,
			outstanding: outstanding,
			relayed:     p == nil || !p.IsUp() || !p.Via().IsZero(),
		}
		switch {
		case eligible == 0 || sc.less(bestScore):
			best, bestScore, ties = n.ID, sc, 1
		case !bestScore.less(sc): // a tie: keep each with equal chance
			ties++
			if rand.IntN(ties) == 0 {
				best = n.ID
			}
		}
		eligible++
	}
	if eligible == 0 {
		err := &Error{Kind: KindNoResponders, Service: service}
		if blocked > 0 {
			err.Err = ErrCircuitOpen
		}
		return identity.NodeID{}, err
	}
	return best, nil
}

// call is one call in flight.
type call struct {
	c       *Client
	node    identity.NodeID
	service string
	ns      *nodeState
	st      *mesh.Stream
	done    atomic.Bool
}

// start sets cl up for a call, opens its stream and sends the request.
// On error the call is already finished.
func (c *Client) start(ctx context.Context, cl *call, node identity.NodeID, service string, req []byte, streaming bool, credit uint32) error {
	*cl = call{c: c, node: node, service: service}
	if err := ValidService(service); err != nil {
		return cl.fail(KindInvalidRequest, err, nil)
	}
	if size := requestHeaderSize + len(service) + len(req); size > c.opts.MaxMessageSize {
		return cl.fail(KindInvalidRequest, fmt.Errorf("%w: %d-byte request frame exceeds %d", ErrTooLarge, size, c.opts.MaxMessageSize), nil)
	}
	if node == c.m.ID() {
		return cl.fail(KindNoRoute, errors.New("rpc: a node cannot call itself"), nil)
	}
	if err := ctx.Err(); err != nil {
		return cl.ctxError(ctx)
	}
	cl.ns = c.acquire(node) // counted before Allow: a sweep must not forget the node meanwhile
	if err := cl.ns.breaker.Allow(); err != nil {
		c.release(cl.ns)
		cl.ns = nil // no outcome to record: the breaker refused
		return cl.fail(KindCircuitOpen, err, nil)
	}
	c.calls.Add(1)
	c.outstanding.Add(1)

	p := c.m.Peer(node)
	if p == nil || !p.IsUp() {
		var key ed25519.PublicKey
		if n, ok := c.m.Capabilities().Index().Lookup(node); ok {
			key = n.Key
		}
		var err error
		if p, err = c.m.ConnectNode(ctx, node, key); err != nil {
			if ctx.Err() != nil {
				return cl.finish(cl.ctxError(ctx))
			}
			return cl.finish(cl.fail(KindNoRoute, err, nil))
		}
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return cl.finish(cl.fail(KindTimeout, context.DeadlineExceeded, nil))
		}
	}
	st, err := c.m.OpenStreamOn(ctx, p, protocol, mesh.StreamConfig{MaxMessageSize: c.opts.MaxMessageSize})
	if err != nil {
		kind := KindTransport
		if errors.Is(err, mesh.ErrNoSession) {
			kind = KindNoRoute
		}
		return cl.finish(cl.fail(kind, err, nil))
	}
	cl.st = st
	f := Frame{Type: FrameRequest, Stream: streaming, Timeout: timeout, Credit: credit, Service: service, Body: req}
	buf := getFrameBuf()
	defer putFrameBuf(buf)
	msg := AppendFrame(*buf, &f)
	*buf = msg
	if streaming {
		err = st.SendBlocking(ctx, msg) // credit frames follow
	} else {
		// A unary caller sends nothing more: the request ends its side,
		// in the same packet when it fits. A fresh stream has room for one
		// message unless the peer's send budget is full (calls with large
		// requests outstanding): then the request waits for room, and the
		// end of the caller's side for its acknowledgement.
		err = st.SendAndClose(ctx, msg)
		if errors.Is(err, stream.ErrBackpressure) {
			if err = st.SendBlocking(ctx, msg); err == nil {
				err = st.CloseContext(ctx)
			}
		}
	}
	if err != nil {
		return cl.finish(cl.streamError(ctx, err))
	}
	return nil
}

// end closes a unary call's stream after its final frame, and releases
// it. The frame came with the server's end of the stream and, usually in
// the same packet, the acknowledgement of the request, which ended the
// stream; if that acknowledgement is still on its way, a reset ends the
// stream now.
func (cl *call) end() {
	select {
	case <-cl.st.Done():
	default:
		cl.st.Reset(resetDone)
	}
	cl.st.Release() // the reply's bytes are the caller's: nothing uses the stream now
}

// next reads and parses the next frame from the server.
func (cl *call) next(ctx context.Context) (Frame, *Error) {
	msg, err := cl.st.Recv(ctx)
	if err != nil {
		return Frame{}, cl.streamError(ctx, err)
	}
	f, err := ParseFrame(msg)
	if err != nil {
		cl.st.Reset(resetProtocol)
		return Frame{}, cl.fail(KindTransport, err, nil)
	}
	return f, nil
}

// streamError classifies a stream failure, resetting the stream when the
// caller gave up so that the server learns at once.
func (cl *call) streamError(ctx context.Context, err error) *Error {
	if ctx.Err() != nil {
		code := resetCancelled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = resetDeadline
		}
		cl.st.Reset(code)
		return cl.ctxError(ctx)
	}
	var re *stream.ResetError
	switch {
	case errors.As(err, &re) && re.Remote && re.Code == resetUnavailable:
		return cl.fail(KindServer, nil, &Frame{Status: StatusUnavailable, Message: "server closed"})
	case errors.As(err, &re) && re.Remote && re.Code == resetDeadline:
		// The server's timer, started from the deadline the request
		// carried, fired a moment before the caller's own.
		return cl.fail(KindTimeout, errServerDeadline, nil)
	case errors.As(err, &re) && !re.Remote && re.Code == resetCancelled:
		return cl.fail(KindCancelled, context.Canceled, nil) // closed by the caller
	case errors.Is(err, io.EOF):
		err = fmt.Errorf("%w: the server ended the stream without a final frame", ErrMalformed)
	}
	cl.st.Reset(resetProtocol)
	return cl.fail(KindTransport, err, nil)
}

// ctxError is the error of a call whose ctx ended.
func (cl *call) ctxError(ctx context.Context) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return cl.fail(KindTimeout, ctx.Err(), nil)
	}
	return cl.fail(KindCancelled, ctx.Err(), nil)
}

// fail builds the call's *Error; f, if not nil, gives the server's status.
func (cl *call) fail(kind Kind, err error, f *Frame) *Error {
	e := &Error{Kind: kind, Service: cl.service, Node: cl.node, Err: err}
	if f != nil {
		e.Status, e.Message = f.Status, f.Message
	}
	return e
}

// finish records the call's outcome once: the node's breaker, outstanding
// counts, stats. It returns err (nil stays a nil error).
func (cl *call) finish(err *Error) error {
	if cl.done.Swap(true) {
		if err == nil {
			return nil
		}
		return err
	}
	c := cl.c
	if cl.ns != nil {
		// The breaker first: once the count drops, a node with no other
		// call in flight may be forgotten, and the outcome must be in its
		// breaker by then, which keeps it if it was a failure.
		switch {
		case err == nil:
			cl.ns.breaker.Success()
		case err.Kind == KindNoRoute || err.Kind == KindTransport || err.Kind == KindTimeout,
			err.Kind == KindServer && err.Status == StatusUnavailable:
			cl.ns.breaker.Failure()
		case err.Kind != KindCancelled:
			cl.ns.breaker.Success() // the node answered
		}
		c.outstanding.Add(-1)
		c.release(cl.ns)
	}
	if err == nil {
		return nil
	}
	c.failures.Add(1)
	switch err.Kind {
	case KindTimeout:
		c.timeouts.Add(1)
	case KindCancelled:
		c.cancelled.Add(1)
	}
	return err
}

// StreamOption configures one streaming call.
type StreamOption func(*streamConfig)

type streamConfig struct {
	credit uint32
	manual bool
}

// WithCredit sets the initial credit of a streaming call: chunks the
// server may send before the caller consumes any (at least 1). The
// default is DefaultCredit.
func WithCredit(n int) StreamOption {
	return func(c *streamConfig) { c.credit = uint32(min(max(n, 1), 1<<30)) }
}

// ManualCredit turns off the automatic grant: after the initial credit,
// the server sends only what ResponseStream.Grant allows.
func ManualCredit() StreamOption {
	return func(c *streamConfig) { c.manual = true }
}

// Stream calls the streaming service on node and returns the stream of
// its responses once the request is sent. ctx governs the whole stream:
// its deadline travels with the request, and cancelling it (or calling
// Close) cancels the handler. By default the caller grants one credit per
// chunk it reads, sent in batches of half the initial credit, so a server
// runs at most the initial credit ahead of the reader.
func (c *Client) Stream(ctx context.Context, node identity.NodeID, service string, req []byte, opts ...StreamOption) (*ResponseStream, error) {
	cfg := streamConfig{credit: DefaultCredit}
	for _, o := range opts {
		o(&cfg)
	}
	cl := new(call)
	if err := c.start(ctx, cl, node, service, req, true, cfg.credit); err != nil {
		return nil, err
	}
	r := &ResponseStream{cl: cl, ctx: ctx, auto: !cfg.manual, batch: max(cfg.credit/2, 1)}
	r.stop = context.AfterFunc(ctx, func() {
		// Tell the server now, even if nobody is reading.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cl.st.Reset(resetDeadline)
		} else {
			cl.st.Reset(resetCancelled)
		}
	})
	return r, nil
}

// ResponseStream is the caller's side of a streaming call. Recv and All
// are for one goroutine; Grant and Close may be called from any.
type ResponseStream struct {
	cl    *call
	ctx   context.Context
	stop  func() bool
	auto  bool
	batch uint32
	owed  uint32 // chunks read but not yet granted back (auto mode)
	err   error  // sticky: io.EOF or the call's error
}

// Node returns the node serving the stream.
func (r *ResponseStream) Node() identity.NodeID { return r.cl.node }

// Recv returns the next chunk, waiting for it. It returns io.EOF after the
// handler ended the stream successfully, or the call's *Error; then the
// stream is closed. The caller owns the chunk.
func (r *ResponseStream) Recv() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	f, err := r.cl.next(r.ctx)
	if err == nil {
		switch f.Type {
		case FrameChunk:
			if r.auto {
				if r.owed++; r.owed >= r.batch {
					if err := r.Grant(int(r.owed)); err != nil {
						return nil, r.end(r.cl.streamError(r.ctx, err))
					}
					r.owed = 0
				}
			}
			return f.Body, nil
		case FrameEnd:
			r.cl.st.Reset(resetDone)
			return nil, r.end(nil)
		case FrameError:
			r.cl.st.Reset(resetDone)
			return nil, r.end(r.cl.fail(KindServer, nil, &f))
		}
		r.cl.st.Reset(resetProtocol)
		err = r.cl.fail(KindTransport, fmt.Errorf("%w: frame %#x in a stream", ErrMalformed, f.Type), nil)
	}
	return nil, r.end(err)
}

// end finishes the call with err (nil: success) and makes Recv return
// io.EOF or err from now on.
func (r *ResponseStream) end(err *Error) error {
	r.stop()
	if r.cl.finish(err) == nil {
		r.err = io.EOF
	} else {
		r.err = err
	}
	return r.err
}

// All returns an iterator over the chunks: it ends after the last one,
// or after yielding the call's error. Breaking out of the loop closes the
// stream (cancelling the handler if it was not done).
func (r *ResponseStream) All() iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for {
			b, err := r.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(b, err) || err != nil {
				r.Close()
				return
			}
		}
	}
}

// Grant allows the server n more chunks (n ≥ 1). With ManualCredit it is
// the only way the server gets credit beyond the initial one.
func (r *ResponseStream) Grant(n int) error {
	if n < 1 {
		return nil
	}
	f := Frame{Type: FrameCredit, Credit: uint32(min(n, 1<<30))}
	return r.cl.st.SendBlocking(r.ctx, AppendFrame(make([]byte, 0, creditSize), &f))
}

// Close ends the stream: if the handler has not finished, it is
// cancelled. Close is idempotent and safe to call after Recv returned an
// error.
func (r *ResponseStream) Close() {
	r.stop()
	if r.cl.done.Load() {
		return
	}
	r.cl.st.Reset(resetCancelled)
	r.cl.finish(r.cl.fail(KindCancelled, context.Canceled, nil))
}
