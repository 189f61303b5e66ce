package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// Deliver sends event to daemon id, wherever it runs, and returns its
// receipt once the daemon has applied it.
//
// Events from one caller that waits for each Deliver before the next are
// applied in that order; concurrent Delivers to one daemon from this
// node travel in batches, one batch in flight at a time, in the order
// they were called. The daemon is found where this runtime last saw it,
// or by asking the runtimes of the mesh; a node it left tells where it
// went, and the batch follows it. A resend after a failure is recognised
// by the daemon (see Receipt.Duplicate), so an event is never applied
// twice.
//
// A full inbox refuses the event with BACKPRESSURE: it was not applied.
// When the callers of every event of a batch have given up, the batch is
// abandoned: its events may or may not be applied, and are not sent
// again.
// So does this node when InboxSize events for the daemon wait here for
// the batch in flight.
// If ctx ends before the event left this node, it was not applied and
// the error is ctx's (TIMEOUT or ABORTED); once it left, it may have
// been. Other errors: LIMIT_EXCEEDED (event larger than MaxEventSize),
// NOT_FOUND, UNREACHABLE, SHUTTING_DOWN, HANDLER_ERROR (applied: the
// receipt has its sequence number).
func (rt *Runtime) Deliver(ctx context.Context, id ID, event []byte) (Receipt, error) {
	if len(event) > rt.cfg.MaxEventSize {
		return Receipt{}, &Error{Code: CodeLimitExceeded, Daemon: id, Message: fmt.Sprintf("event of %d bytes, at most %d", len(event), rt.cfg.MaxEventSize)}
	}
	if rt.isClosed() {
		return Receipt{}, ErrClosed
	}
	r := rt.routes.get(id)
	o := &outgoing{ctx: ctx, data: slices.Clone(event), done: make(chan struct{})}
	r.mu.Lock()
	if n := len(r.queue); n >= rt.cfg.InboxSize {
		r.mu.Unlock()
		return Receipt{}, &Error{Code: CodeBackpressure, Daemon: id, Message: fmt.Sprintf("%d events wait to be sent", n)}
	}
	o.ctr = rt.ctr.Add(1)
	r.queue = append(r.queue, o)
	start := !r.busy
	r.busy = true
	r.mu.Unlock()
	if start {
		r.lead(o)
	}
	select {
	case <-o.done:
		return o.receipt, o.err
	case <-ctx.Done():
	}
	r.mu.Lock()
	if i := slices.Index(r.queue, o); i >= 0 {
		r.queue = slices.Delete(r.queue, i, i+1)
		r.mu.Unlock()
		return Receipt{}, ctxError(ctx).with(id, identity.NodeID{})
	}
	r.mu.Unlock()
	e := ctxError(ctx).with(id, identity.NodeID{})
	e.Message = "the event was sent and may have been applied"
	return Receipt{}, e
}

// router keeps, per daemon this node sends to, where it was last seen and
// the events waiting to go.
type router struct {
	rt     *Runtime
	mu     sync.Mutex
	routes map[ID]*route
}

// route is the way to one daemon: its node, and a queue of events sent
// one batch at a time (the order of the queue is the order of the
// counters, which is what lets the daemon recognise resends).
type route struct {
	rt *Runtime
	id ID

	mu    sync.Mutex // guards the fields below
	node  identity.NodeID
	queue []*outgoing
	busy  bool // a flush goroutine runs
	used  time.Time
}

// outgoing is one event on its way.
type outgoing struct {
	ctx     context.Context // the caller's: when every caller of a batch gave up, it is abandoned
	ctr     uint64
	data    []byte
	done    chan struct{}
	receipt Receipt
	err     error
}

func (o *outgoing) finish(r Receipt, err error) {
	o.receipt, o.err = r, err
	close(o.done)
}

func (rr *router) init(rt *Runtime) {
	rr.rt = rt
	rr.routes = make(map[ID]*route)
}

// get returns the route to id, making it; when the table is full it
// first forgets the idle routes used longest ago.
func (rr *router) get(id ID) *route {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if r := rr.routes[id]; r != nil {
		return r
	}
	if len(rr.routes) >= maxRoutes {
		rr.evictLocked()
	}
	r := &route{rt: rr.rt, id: id, used: time.Now()}
	rr.routes[id] = r
	return r
}

// evictLocked forgets the idle eighth of the routes used longest ago.
func (rr *router) evictLocked() {
	type ru struct {
		id   ID
		used time.Time
	}
	var idle []ru
	for id, r := range rr.routes {
		r.mu.Lock()
		if !r.busy && len(r.queue) == 0 {
			idle = append(idle, ru{id, r.used})
		}
		r.mu.Unlock()
	}
	slices.SortFunc(idle, func(a, b ru) int { return a.used.Compare(b.used) })
	for _, x := range idle[:min(len(idle), max(len(rr.routes)/8, 1))] {
		delete(rr.routes, x.id)
	}
}

// cached returns where id was last seen, or zero.
func (rr *router) cached(id ID) identity.NodeID {
	rr.mu.Lock()
	r := rr.routes[id]
	rr.mu.Unlock()
	if r == nil {
		return identity.NodeID{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.node
}

// learn records that id lives on node (zero: unknown).
func (rr *router) learn(id ID, node identity.NodeID) {
	r := rr.get(id)
	r.mu.Lock()
	r.node = node
	r.mu.Unlock()
}

// lead starts sending the route's queue, which o just made busy. When o
// is alone in it (one sender, the common case) the caller's goroutine
// sends it: one call, no hand-off. What else waits, then or meanwhile,
// a flush goroutine sends.
func (r *route) lead(o *outgoing) {
	r.mu.Lock()
	alone := len(r.queue) == 1 && r.queue[0] == o
	if alone {
		r.queue[0] = nil
		r.queue = r.queue[:0]
	}
	r.mu.Unlock()
	if alone {
		r.send([]*outgoing{o})
	}
	r.mu.Lock()
	if len(r.queue) == 0 {
		r.busy = false
		r.used = time.Now()
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	if !r.rt.spawn(r.flush) {
		r.mu.Lock()
		rest := r.queue
		r.queue, r.busy = nil, false
		r.mu.Unlock()
		for _, x := range rest {
			x.finish(Receipt{}, ErrClosed)
		}
	}
}

// flush sends the route's queue, one batch at a time, until it is empty.
func (r *route) flush() {
	for {
		r.mu.Lock()
		n, size := 0, 0
		for n < len(r.queue) && n < maxBatchEvents && (n == 0 || size+len(r.queue[n].data) <= maxBatchBytes) {
			size += len(r.queue[n].data)
			n++
		}
		if n == 0 {
			r.busy = false
			r.used = time.Now()
			r.mu.Unlock()
			return
		}
		batch := slices.Clone(r.queue[:n])
		r.queue = slices.Delete(r.queue, 0, n)
		r.mu.Unlock()
		r.send(batch)
	}
}

// send delivers one batch, following the daemon when it moved, finding it
// again when its node does not have it or cannot be reached, and
// resending the same counters (the daemon skips what it applied).
func (r *route) send(batch []*outgoing) {
	rt := r.rt
	ctx, cancel := context.WithTimeout(rt.ctx, rt.cfg.CallTimeout)
	defer cancel()
	// Once every caller gave up, the batch is abandoned: a call to a
	// node that died holds the route no longer than its callers wait.
	var waiting atomic.Int32
	waiting.Store(int32(len(batch)))
	for _, o := range batch {
		stop := context.AfterFunc(o.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	req := &deliverReq{Daemon: r.id, Inc: rt.inc, Ctrs: make([]uint64, len(batch)), Data: make([][]byte, len(batch))}
	for i, o := range batch {
		req.Ctrs[i], req.Data[i] = o.ctr, o.data
	}
	fail := func(e *Error) {
		for _, o := range batch {
			o.finish(Receipt{}, e.with(r.id, identity.NodeID{}))
		}
	}
	r.mu.Lock()
	node := r.node
	r.mu.Unlock()
	var last *Error
	for attempts := 0; attempts < maxRouteAttempts; {
		if node.IsZero() {
			var err error
			if node, err = rt.locate(ctx, r.id); err != nil {
				if last != nil && errors.Is(err, ErrNotFound) {
					err = last
				}
				fail(asError(err))
				return
			}
		}
		reply, err := rt.deliverTo(ctx, node, req)
		if err != nil {
			last = asError(err)
			if ctx.Err() != nil || (last.Code != CodeUnreachable && last.Code != CodeTimeout) {
				fail(last)
				return
			}
			// The node may be gone (a standby may have taken over):
			// find the daemon again and resend.
			attempts++
			node = identity.NodeID{}
			continue
		}
		switch reply.Status {
		case statusOK:
			r.mu.Lock()
			r.node = node
			r.mu.Unlock()
			for i, o := range batch {
				o.finish(receiptOf(r.id, node, reply.Receipts[i]))
			}
			return
		case statusMoved:
			attempts++
			node = reply.Node
		case statusNotFound:
			attempts++
			last = &Error{Code: CodeNotFound, Node: node}
			node = identity.NodeID{}
		case statusNotReady:
			// Arriving: the source confirms within a round trip.
			select {
			case <-ctx.Done():
				fail(ctxError(ctx))
				return
			case <-time.After(notReadyRetry):
			}
		case statusStopping:
			fail(&Error{Code: CodeShuttingDown, Node: node})
			return
		}
	}
	if last == nil {
		last = &Error{Code: CodeUnreachable, Message: fmt.Sprintf("the daemon moved %d times during one delivery", maxRouteAttempts)}
	}
	fail(last)
}

// receiptOf turns a wire receipt into what Deliver returns.
func receiptOf(id ID, node identity.NodeID, w wireReceipt) (Receipt, error) {
	r := Receipt{Daemon: id, Seq: w.Seq, Node: node, Outputs: w.Outputs, Duplicate: w.Duplicate}
	if w.Code != "" {
		return r, &Error{Code: w.Code, Message: w.Message, Daemon: id, Node: node}
	}
	return r, nil
}

// asError returns err as an *Error.
func asError(err error) *Error {
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	return &Error{Code: CodeInvalid, Err: err}
}

// deliverTo sends a batch to node: through the rpc client, or straight
// to the local handler when node is this one.
func (rt *Runtime) deliverTo(ctx context.Context, node identity.NodeID, req *deliverReq) (deliverReply, error) {
	if node == rt.self {
		return rt.handleDeliver(ctx, rt.self, req)
	}
	resp, err := rt.cli.Call(ctx, node, HostService, appendDeliver(nil, req)) // ctx ends within CallTimeout
	if err != nil {
		return deliverReply{}, callError(err, node)
	}
	reply, err := parseDeliverReply(resp)
	if err == nil && reply.Status == statusOK && len(reply.Receipts) != len(req.Data) {
		err = fmt.Errorf("%w: %d receipts for %d events", ErrMalformed, len(reply.Receipts), len(req.Data))
	}
	if err != nil {
		return deliverReply{}, &Error{Code: CodeInvalid, Node: node, Err: err}
	}
	return reply, nil
}

// handleDeliver puts a sender's batch into the daemon's inbox and waits
// for the receipts: the host's side of a delivery.
func (rt *Runtime) handleDeliver(ctx context.Context, from identity.NodeID, req *deliverReq) (deliverReply, error) {
	in := rt.hosted(req.Daemon)
	if in == nil {
		if t, ok := rt.tombFor(req.Daemon); ok {
			return deliverReply{Status: statusMoved, Node: t.to}, nil
		}
		if rt.isClosed() {
			return deliverReply{Status: statusStopping}, nil
		}
		return deliverReply{Status: statusNotFound}, nil
	}
	es := make([]entry, len(req.Data))
	for i, data := range req.Data {
		if len(data) > rt.cfg.MaxEventSize {
			return deliverReply{}, &Error{Code: CodeLimitExceeded, Message: fmt.Sprintf("event of %d bytes, at most %d", len(data), rt.cfg.MaxEventSize)}
		}
		es[i] = entry{Origin: from, Inc: req.Inc, Ctr: req.Ctrs[i], Data: data}
	}
	w := newWaiter(len(es))
	if status, node := in.enqueue(es, w, true); status != statusOK {
		return deliverReply{Status: status, Node: node}, nil
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return deliverReply{}, ctxError(ctx)
	}
	return deliverReply{Status: statusOK, Receipts: w.receipts}, nil
}

// runtimeFilter matches the nodes that run a daemon runtime: they all
// announce their load.
var runtimeFilter = capability.AtLeast(LoadPrefix+".limit", 0)

// locate finds the node hosting id: this one; or the end of the chain of
// tombstones that starts here; or one of the nodes running a runtime
// (asked locateFanout at a time, at most maxLocate), following where the
// ones that only know where it went point.
func (rt *Runtime) locate(ctx context.Context, id ID) (identity.NodeID, error) {
	if rt.hosted(id) != nil {
		return rt.self, nil
	}
	if t, ok := rt.tombFor(id); ok {
		if node, ok := rt.follow(ctx, id, t.to); ok {
			return node, nil
		}
	}
	var nodes []identity.NodeID
	for _, n := range rt.m.FindNodes(runtimeFilter) {
		if n.ID != rt.self {
			nodes = append(nodes, n.ID)
		}
	}
	rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	nodes = nodes[:min(len(nodes), maxLocate)]
	askCtx, cancel := context.WithCancel(ctx) // ends the questions still out
	defer cancel()
	var hint identity.NodeID
	for len(nodes) > 0 {
		wave := nodes[:min(len(nodes), locateFanout)]
		nodes = nodes[len(wave):]
		// The first node that has it answers; the others' answers go to
		// the buffered channel and are dropped.
		answers := make(chan deliverReply, len(wave))
		for _, n := range wave {
			go func() { answers <- rt.askLocate(askCtx, n, id) }()
		}
		for range wave {
			a := <-answers
			switch {
			case a.Status == statusOK:
				rt.routes.learn(id, a.Node)
				return a.Node, nil
			case a.Status == statusMoved && a.Node != rt.self:
				hint = a.Node
			}
		}
	}
	if !hint.IsZero() {
		if node, ok := rt.follow(ctx, id, hint); ok {
			return node, nil
		}
	}
	if ctx.Err() != nil {
		return identity.NodeID{}, ctxError(ctx).with(id, identity.NodeID{})
	}
	return identity.NodeID{}, &Error{Code: CodeNotFound, Daemon: id, Message: "no runtime in the mesh has it"}
}

// askLocate asks node about id; the answer's Node is node itself when it
// has it.
func (rt *Runtime) askLocate(ctx context.Context, node identity.NodeID, id ID) deliverReply {
	resp, err := rt.call(ctx, node, appendRequest(nil, opLocate, id))
	var r deliverReply
	if err == nil {
		r, err = parseDeliverReply(resp)
	}
	if err != nil {
		return deliverReply{Status: statusNotFound}
	}
	if r.Status == statusOK {
		r.Node = node
	}
	return r
}

// follow asks node, and the nodes it says id moved to, until one has it,
// at most maxRouteAttempts hops.
func (rt *Runtime) follow(ctx context.Context, id ID, node identity.NodeID) (identity.NodeID, bool) {
	for range maxRouteAttempts {
		if node == rt.self {
			return node, rt.hosted(id) != nil
		}
		r := rt.askLocate(ctx, node, id)
		switch r.Status {
		case statusOK:
			rt.routes.learn(id, node)
			return node, true
		case statusMoved:
			node = r.Node
		default:
			return identity.NodeID{}, false
		}
	}
	return identity.NodeID{}, false
}

// handleLocate answers opLocate.
func (rt *Runtime) handleLocate(id ID) []byte {
	if in := rt.hosted(id); in != nil {
		in.mu.Lock()
		st, to := in.state, in.movedTo
		in.mu.Unlock()
		switch st {
		case stMoved:
			return appendLocateReply(nil, statusMoved, to)
		case stRunning, stFrozen, stArriving:
			return appendLocateReply(nil, statusOK, identity.NodeID{})
		}
	}
	if t, ok := rt.tombFor(id); ok {
		return appendLocateReply(nil, statusMoved, t.to)
	}
	return appendLocateReply(nil, statusNotFound, identity.NodeID{})
}

// onHost runs f with the node hosting id, finding it first; if f says
// the daemon is not there, it is found again once.
func (rt *Runtime) onHost(ctx context.Context, id ID, f func(node identity.NodeID) error) error {
	node := rt.routes.cached(id)
	for attempt := 0; ; attempt++ {
		if node.IsZero() || node == rt.self && rt.hosted(id) == nil { // a stale route
			var err error
			if node, err = rt.locate(ctx, id); err != nil {
				return err
			}
		}
		err := f(node)
		if attempt == 0 && errors.Is(err, ErrNotFound) {
			rt.routes.learn(id, identity.NodeID{})
			node = identity.NodeID{}
			continue
		}
		if err == nil {
			rt.routes.learn(id, node)
		}
		return err
	}
}
