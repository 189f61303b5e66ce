package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/stream"
)

// Handler answers a unary call: it gets the request body and returns the
// reply body, or an error. An *Error of kind KindServer (see Errorf) sets
// the status the caller sees; any other error is sent as
// StatusHandlerError with err.Error() as the message, so do not put
// secrets in it. ctx ends when the caller's deadline passes, the caller
// cancels, or the server closes; CallerID(ctx) names the caller. req is
// the handler's to keep.
type Handler func(ctx context.Context, req []byte) ([]byte, error)

// StreamHandler answers a streaming call: it sends any number of chunks
// through w and returns nil to end the stream successfully, or an error
// (as for Handler) to end it with a status.
type StreamHandler func(ctx context.Context, req []byte, w *ResponseWriter) error

// ServerOptions configures a Server. The zero value of every field is a
// documented default.
type ServerOptions struct {
	// MaxRequestSize bounds the request body given to a handler, in bytes;
	// larger requests are answered with StatusTooLarge. 0 means
	// DefaultMaxRequestSize. The mesh's stream MaxMessageSize
	// (mesh.Config.Streams.Accept, 16 MiB by default) bounds what is
	// buffered before this check.
	MaxRequestSize int
	// RequestTimeout bounds the wait for a request to arrive whole once
	// its first fragment did (the stream appears then); a caller that
	// stalls longer is reset (abandoned) and counted in Refused. 0 means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxConcurrent bounds the handlers running at once; calls beyond it
	// are answered with StatusUnavailable at once. 0 means
	// DefaultMaxConcurrent.
	MaxConcurrent int
	// Codec encodes and decodes the values of typed handlers
	// (HandleTyped, HandleTypedStream). Nil means JSON.
	Codec Codec
	// Logger receives handler panics and advertisement failures. Nil
	// discards them.
	Logger *slog.Logger
}

// ServerStats is a snapshot of a Server's counters.
type ServerStats struct {
	// Calls counts requests that reached a handler.
	Calls uint64
	// Active is the number of handlers running now.
	Active int
	// Refused counts requests answered without running a handler: unknown
	// service, malformed, too large, wrong mode, overloaded, closed, or
	// not received whole within RequestTimeout.
	Refused uint64
	// Errors counts handler runs answered with an error status.
	Errors uint64
	// Cancelled counts handler runs the caller cancelled (or whose stream
	// broke) before the reply.
	Cancelled uint64
	// LateReplies counts handler runs that ended after the caller's
	// deadline: their reply was dropped.
	LateReplies uint64
	// Panics counts handlers that panicked (answered StatusInternal).
	Panics uint64
}

// Server serves rpc calls on one mesh: it owns the mesh's stream listener
// for the rpc protocol (so there is at most one Server per Mesh), dispatches
// each call to the handler of its service, and advertises the services as
// capability tags "rpc:<service>". Its methods are safe for concurrent use.
//
// Each call runs on its own goroutine; a streaming call has another that
// reads the caller's credit and cancellation (a unary call's request ends
// the caller's side, and its cancellation is watched without one); at
// most MaxConcurrent handlers run at once. A unary call's goroutine ends
// with its handler: the stream delivers the final frame, and its end
// ends the call.
type Server struct {
	m      *mesh.Mesh
	l      *mesh.StreamListener
	opts   ServerOptions
	log    *slog.Logger
	ctx    context.Context // ends when the handlers are cancelled (Close)
	cancel context.CancelFunc
	noWait context.Context // ended: a read with it takes only what is ready
	// lingered bounds the waits for callers to take their calls' final
	// frames; it ends closeLinger after the handlers were cancelled.
	lingered  context.Context
	endCancel context.CancelFunc
	sem       chan struct{} // one slot per running handler

	// mu guards handlers, closed, active and ending, and orders wg.Add
	// before Close's wg.Wait. The stream's lock may be held when it is
	// taken (callOver), never the other way round.
	mu       sync.RWMutex
	handlers map[string]entry
	closed   bool
	active   map[*callCtx]struct{} // the contexts of the calls being served
	// ending holds the streams of the unary calls whose final frame
	// waits for the caller's acknowledgement (see end).
	ending map[*mesh.Stream]struct{}
	wg     sync.WaitGroup // calls being served

	calls, refused, errors, cancelled, late, panics atomic.Uint64
	running                                         atomic.Int64
}

// entry is one service's handler: exactly one of the two is set.
type entry struct {
	service string
	unary   Handler
	stream  StreamHandler
}

// NewServer starts serving rpc calls on m. It takes m's listener for
// the rpc protocol, so a second NewServer on the same mesh fails with an
// error wrapping mesh.ErrProtoInUse. m need not be started yet.
func NewServer(m *mesh.Mesh, opts ServerOptions) (*Server, error) {
	if opts.MaxRequestSize <= 0 {
		opts.MaxRequestSize = DefaultMaxRequestSize
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.Codec == nil {
		opts.Codec = JSON{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lingered, endCancel := context.WithCancel(context.Background())
	noWait, ended := context.WithCancel(context.Background())
	ended()
	s := &Server{
		m: m, opts: opts, log: log, ctx: ctx, cancel: cancel, lingered: lingered, endCancel: endCancel, noWait: noWait,
		sem:      make(chan struct{}, opts.MaxConcurrent),
		handlers: make(map[string]entry),
		active:   make(map[*callCtx]struct{}),
		ending:   make(map[*mesh.Stream]struct{}),
	}
	l, err := m.HandleStreams(protocol, s.accept)
	if err != nil {
		cancel()
		endCancel()
		return nil, fmt.Errorf("rpc: %w", err)
	}
	s.l = l
	return s, nil
}

// Handle serves service with h and advertises it (see Tags). It fails
// with ErrInvalidService, ErrServiceExists, ErrServerClosed, or the error
// of announcing the new capability set.
func (s *Server) Handle(service string, h Handler) error {
	return s.add(entry{service: service, unary: h})
}

// HandleStream serves service with the streaming handler h and advertises
// it, like Handle. Callers read it with Client.Stream.
func (s *Server) HandleStream(service string, h StreamHandler) error {
	return s.add(entry{service: service, stream: h})
}

func (s *Server) add(e entry) error {
	service := e.service
	if err := ValidService(service); err != nil {
		return err
	}
	if e.unary == nil && e.stream == nil {
		return fmt.Errorf("rpc: nil handler for %s", service)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if _, ok := s.handlers[service]; ok {
		return fmt.Errorf("%w: %s", ErrServiceExists, service)
	}
	s.handlers[service] = e
	if err := s.advertiseLocked(); err != nil {
		delete(s.handlers, service)
		return fmt.Errorf("rpc: advertise %s: %w", service, err)
	}
	return nil
}

// Tags returns the capability tags the server advertises, "rpc:<service>"
// for each service, sorted. They are announced as the node's "rpc" layer,
// which the application's own announcements (mesh.AnnounceCapabilities)
// leave alone.
func (s *Server) Tags() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tagsLocked()
}

func (s *Server) tagsLocked() []string {
	if s.closed {
		return nil
	}
	tags := make([]string, 0, len(s.handlers))
	for svc := range s.handlers {
		tags = append(tags, TagPrefix+svc)
	}
	slices.Sort(tags)
	return tags
}

// advertiseLocked announces the server's tags as the node's "rpc" layer
// (see mesh.AnnounceLayerCapabilities): the application's announcements
// cannot drop them.
func (s *Server) advertiseLocked() error {
	return s.m.AnnounceLayerCapabilities(capabilityLayer, capability.Set{Tags: s.tagsLocked()})
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Calls:       s.calls.Load(),
		Active:      int(s.running.Load()),
		Refused:     s.refused.Load(),
		Errors:      s.errors.Load(),
		Cancelled:   s.cancelled.Load(),
		LateReplies: s.late.Load(),
		Panics:      s.panics.Load(),
	}
}

// Close stops serving at once: it withdraws the "rpc:" tags from the
// node's capabilities, cancels the context of every running handler (a
// handler that then fails is answered StatusUnavailable, so CallService
// fails over), and waits for the calls to end: a call ends when the
// caller has acknowledged its final frame, or at most 1 s after the
// handlers were cancelled, when calls still waiting for a caller (one
// that went away, say) are reset. Calls arriving later are refused with
// StatusUnavailable (the server keeps the mesh's rpc protocol, so callers
// learn at once instead of waiting for their deadlines). Close is
// idempotent.
func (s *Server) Close() error {
	return s.stop(context.Background(), true)
}

// Shutdown stops serving gracefully: like Close it withdraws the "rpc:"
// tags and refuses new calls (StatusUnavailable) at once, but it lets the
// running calls finish until ctx ends; then it cancels those still
// running and ends as Close does. It returns ctx's error if it had to
// cancel calls. After Close or Shutdown it returns at once.
func (s *Server) Shutdown(ctx context.Context) error { return s.stop(ctx, false) }

// stop refuses new calls, waits for the running ones until ctx ends (not
// at all when now), then cancels them and gives the calls closeLinger to
// end before it resets those still waiting for their callers.
func (s *Server) stop(ctx context.Context, now bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.advertiseLocked()
	s.mu.Unlock()
	if errors.Is(err, mesh.ErrClosed) {
		err = nil
	}
	calls := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(calls)
	}()
	if !now {
		select {
		case <-calls:
			return err
		case <-ctx.Done():
			err = errors.Join(err, ctx.Err())
		}
	}
	s.cancelCalls()
	linger := time.NewTimer(closeLinger)
	defer linger.Stop()
	select {
	case <-calls:
	case <-linger.C:
		s.endCancel() // calls still waiting for their callers are reset
		s.resetEnding()
		<-calls
	}
	s.endCancel()
	return err
}

// resetEnding resets the streams of the unary calls whose final frame
// still waits for the caller (see end); their ends end the calls.
func (s *Server) resetEnding() {
	s.mu.Lock()
	sts := make([]*mesh.Stream, 0, len(s.ending))
	for st := range s.ending {
		sts = append(sts, st)
	}
	s.mu.Unlock() // a reset ends the call: callOver takes s.mu
	for _, st := range sts {
		st.Reset(resetAbandoned)
	}
}

// cancelCalls cancels the context of every running handler.
func (s *Server) cancelCalls() {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for cc := range s.active {
		cc.cancel(context.Canceled)
	}
}

// accept runs one call on the stream a peer opened, in the goroutine the
// mesh started for it. After Close it refuses the stream unread.
func (s *Server) accept(st *mesh.Stream, p *mesh.Peer) {
	cc := &callCtx{caller: Caller{ID: p.ID()}}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.refused.Add(1)
		st.Reset(resetUnavailable)
		return
	}
	s.active[cc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	cw := startCallWatch(s, st, cc, s.opts.RequestTimeout)
	if s.serve(st, cc, cw) {
		return // the stream's end ends the call (see end)
	}
	cw.release()
	s.done(cc)
}

// done ends a call that accept admitted: its context ends (a handler that
// kept it sees it done), and Close no longer waits for it.
func (s *Server) done(cc *callCtx) {
	cc.cancel(context.Canceled)
	s.mu.Lock()
	delete(s.active, cc)
	s.mu.Unlock()
	s.wg.Done()
}

// Causes of a handler context's end besides its own deadline and Close.
var (
	// errCallerReset: the caller cancelled, or its stream broke.
	errCallerReset = errors.New("rpc: caller cancelled or went away")
	// errCallerDeadline: the caller's deadline passed (its reset arrived
	// before the server's own timer fired).
	errCallerDeadline = fmt.Errorf("rpc: caller's deadline passed: %w", context.DeadlineExceeded)
	// errServerDeadline, on the caller's side: the server's copy of the
	// deadline passed first.
	errServerDeadline = fmt.Errorf("rpc: the call's deadline passed at the server: %w", context.DeadlineExceeded)
)

// serve runs one call, watched by cw: read the request, admit it, run
// the handler, and deliver the final frame. It reports whether the call
// goes on after it returns (see end); if not, the call is over.
func (s *Server) serve(st *mesh.Stream, cc *callCtx, cw *callWatch) (ending bool) {
	// Until the handler runs, only Close cancels the call.
	msg, err := st.Recv(s.ctx)
	cw.disarm() // rearmed for the handler's deadline and the final frame
	if err != nil {
		var re *stream.ResetError
		if errors.As(err, &re) && !re.Remote && re.Code == resetAbandoned {
			s.refused.Add(1) // the request's first fragments came, the rest did not
			return false
		}
		st.Reset(resetUnavailable)
		return false
	}
	f, e, status, reason := s.admit(msg)
	var w *ResponseWriter
	if status == StatusOK && e.stream != nil {
		w = &ResponseWriter{st: st, credit: uint64(f.Credit), wake: make(chan struct{}, 1)}
	}
	stop := s.watchUnary(st, e, cc, cw)
	if stop != nil {
		defer stop()
	} else {
		watched := make(chan struct{})
		go s.watch(cc, st, w, watched)
		defer func() {
			cc.cancel(context.Canceled) // the call is over: watch returns
			<-watched
		}()
	}

	if status != StatusOK {
		s.refused.Add(1)
		s.end(st, cw, &Frame{Type: FrameError, Status: status, Message: reason}, false)
		return false
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.refused.Add(1)
		s.end(st, cw, &Frame{Type: FrameError, Status: StatusUnavailable, Message: "server at its concurrency limit"}, false)
		return false
	}
	s.calls.Add(1)
	s.running.Add(1)
	if f.Timeout > 0 {
		cc.setDeadline(cw.arm(phaseHandler, f.Timeout))
	}
	cc.caller.Certificate = s.m.PeerCertificate(cc.caller.ID)
	resp, herr := s.run(cc, e, f.Body, w)
	cw.disarm()
	if stop != nil {
		// The handler is done: a reset from now on only ends the wait in
		// end, which sees it. Unwatched now, the stream's end (when the
		// caller acknowledges the final frame) starts no goroutine.
		stop()
	}
	s.running.Add(-1)
	<-s.sem

	var final Frame
	switch cause := cc.causeErr(); {
	case errors.Is(cause, context.DeadlineExceeded):
		s.late.Add(1)
		st.Reset(resetDeadline)
		return false
	case errors.Is(cause, errCallerReset):
		s.cancelled.Add(1)
		st.Reset(resetCancelled)
		return false
	case herr != nil:
		s.errors.Add(1)
		final = errorFrame(herr)
		if s.ctx.Err() != nil {
			final = Frame{Type: FrameError, Status: StatusUnavailable, Message: "server closed"}
		}
	case w != nil:
		final = Frame{Type: FrameEnd}
	default:
		final = Frame{Type: FrameResponse, Body: resp}
	}
	return s.end(st, cw, &final, stop != nil) // stop: a unary call, watched without a goroutine
}

// admit parses a request and finds its handler, or says why not.
func (s *Server) admit(msg []byte) (Frame, entry, Status, string) {
	f, service, err := parseFrame(msg) // f.Service stays empty: e.service names it
	if err != nil {
		return f, entry{}, StatusMalformed, err.Error()
	}
	if f.Type != FrameRequest {
		return f, entry{}, StatusMalformed, fmt.Sprintf("first frame has type %#x, want a request", f.Type)
	}
	if len(f.Body) > s.opts.MaxRequestSize {
		return f, entry{}, StatusTooLarge, fmt.Sprintf("request of %d bytes exceeds %d", len(f.Body), s.opts.MaxRequestSize)
	}
	s.mu.RLock()
	e, ok := s.handlers[string(service)]
	s.mu.RUnlock()
	switch {
	case !ok:
		return f, e, StatusUnknownService, "no service " + string(service)
	case f.Stream != (e.stream != nil):
		return f, e, StatusWrongMode, fmt.Sprintf("service %s is streaming: %v, the call is: %v", e.service, e.stream != nil, f.Stream)
	}
	return f, e, StatusOK, ""
}

// run calls the handler, turning a panic into StatusInternal.
func (s *Server) run(ctx context.Context, e entry, req []byte, w *ResponseWriter) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.panics.Add(1)
			s.log.Error("rpc: handler panicked", "service", e.service, "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, &Error{Kind: KindServer, Status: StatusInternal, Message: "handler panicked"}
		}
	}()
	if e.stream != nil {
		return nil, e.stream(ctx, req, w)
	}
	return e.unary(ctx, req)
}

// watch reads what the caller sends after the request: credit for w, or
// the reset that cancels the call (errCallerDeadline for the caller's
// deadline, errCallerReset for any other). Anything else is a protocol
// violation: the stream is reset. It returns when the stream ends or cc,
// the call's context, does, closing done.
func (s *Server) watch(cc *callCtx, st *mesh.Stream, w *ResponseWriter, done chan<- struct{}) {
	defer close(done)
	var buf []byte
	for {
		msg, err := st.ReadMessage(cc, buf)
		if errors.Is(err, io.EOF) {
			// The caller closed its side (a unary request comes with its
			// end): no more credit, but it may still cancel.
			select {
			case <-st.Done():
			case <-cc.Done():
			}
			if err = st.Err(); err == nil {
				return
			}
		}
		if cc.Err() != nil {
			return
		}
		if err != nil {
			cc.cancel(resetCause(err))
			return
		}
		buf = msg
		f, err := ParseFrame(msg)
		if err != nil || f.Type != FrameCredit {
			st.Reset(resetProtocol)
			cc.cancel(errCallerReset)
			return
		}
		if w != nil {
			w.grant(f.Credit)
		}
	}
}

// watchUnary watches a unary call whose request came with the caller's
// end of stream (as a unary request does) without a goroutine: the
// stream's end, if it is a reset, cancels the handler (cw.ended). It
// returns the function that stops watching, or nil when the call needs
// watch.
func (s *Server) watchUnary(st *mesh.Stream, e entry, cc *callCtx, cw *callWatch) (stop func() bool) {
	if e.stream != nil {
		return nil
	}
	msg, err := st.ReadMessage(s.noWait, nil)
	if err == nil { // a frame after a unary request: only credit is allowed
		if f, perr := ParseFrame(msg); perr != nil || f.Type != FrameCredit {
			st.Reset(resetProtocol)
			cc.cancel(errCallerReset)
		}
	}
	if !errors.Is(err, io.EOF) {
		return nil // more to read, or not yet the end: watch reads on
	}
	return st.AfterEnd(cw.ended)
}

// resetCause is why a call's handler is cancelled when its stream fails
// with err: the caller's deadline, or the caller gone.
func resetCause(err error) error {
	var re *stream.ResetError
	if errors.As(err, &re) && re.Remote && re.Code == resetDeadline {
		return errCallerDeadline
	}
	return errCallerReset
}

// end sends the call's final frame with the end of the server's side of
// the stream, and returns once the caller has acknowledged both. The
// server has nothing more to send then, so it leaves the stream to the
// caller: a unary caller ended its side with the request, so the stream
// is over; a streaming caller resets it once it read the frame, however
// long its backlog takes (or the session ends). A caller that stops
// acknowledging before that is reset by cw (see stallTimeout), or when
// the server stops (see stop).
//
// With leave (a unary call), end does not wait when the frame is queued
// at once: the stream delivers it, cw goes on watching for a caller that
// stalls, and the stream's end ends the call (callOver). The call's
// goroutine is free a round trip sooner, and parks and wakes once less.
// end reports whether it left the call to the stream so.
func (s *Server) end(st *mesh.Stream, cw *callWatch, f *Frame, leave bool) (left bool) {
	cw.arm(phaseEnding, stallTimeout)
	buf := getFrameBuf()
	defer putFrameBuf(buf)
	msg := AppendFrame(*buf, f)
	*buf = msg
	// Queuing the frame never waits; only the waits below take ctx.
	err := st.SendAndClose(context.Background(), msg)
	if err == nil && leave {
		s.leave(st, cw)
		return true
	}
	defer cw.disarm()
	ctx := s.lingered                           // cw's reset, or the server's stop, ends every wait below
	if errors.Is(err, stream.ErrBackpressure) { // streamed chunks fill the window
		if err = st.SendBlocking(ctx, msg); err == nil {
			err = st.CloseContext(ctx)
		}
	} else if err == nil {
		err = st.CloseContext(ctx)
	}
	if err != nil {
		st.Reset(resetAbandoned)
	}
	return false
}

// leave leaves a unary call whose final frame is queued to its stream,
// st: its end, acknowledged or reset (by cw, or by the server's stop),
// ends the call.
func (s *Server) leave(st *mesh.Stream, cw *callWatch) {
	s.mu.Lock()
	s.ending[st] = struct{}{}
	s.mu.Unlock()
	st.OnEnd(cw.over) // cw is the stream's now: the call's goroutine leaves it
	if s.lingered.Err() != nil {
		st.Reset(resetAbandoned) // the server's stop reset the others already
	}
}

// callOver ends a call that end left to its stream, st.
func (s *Server) callOver(st *mesh.Stream, cc *callCtx) {
	s.mu.Lock()
	delete(s.ending, st)
	s.mu.Unlock()
	s.done(cc)
}

// errorFrame turns a handler's error into the error frame the caller gets.
func errorFrame(err error) Frame {
	f := Frame{Type: FrameError, Status: StatusHandlerError, Message: err.Error()}
	var re *Error
	if errors.As(err, &re) && re.Kind == KindServer && re.Status != StatusOK {
		f.Status, f.Message = re.Status, re.Message
	}
	f.Message = strings.ToValidUTF8(f.Message, "\uFFFD")
	if len(f.Message) > MaxErrorMessage {
		m := f.Message[:MaxErrorMessage]
		for !utf8.ValidString(m) { // a rune was cut: drop its first bytes
			m = m[:len(m)-1]
		}
		f.Message = m
	}
	return f
}

// callerKey keys the Caller in a handler's context.
type callerKey struct{}

// CallerID returns the NodeID of the node whose call ctx serves, in a
// handler's context. The mesh authenticated it: it is the peer of the
// encrypted session the request arrived on.
func CallerID(ctx context.Context) (identity.NodeID, bool) {
	c, ok := CallerInfo(ctx)
	return c.ID, ok
}

// ResponseWriter sends the chunks of a streaming call. The caller grants
// credit, one chunk each; Send waits while none is left, so a slow caller
// holds the handler instead of buffering without bound.
type ResponseWriter struct {
	st *mesh.Stream

	sendMu sync.Mutex // serializes Send; guards buf
	buf    []byte

	mu     sync.Mutex // guards credit
	credit uint64
	wake   chan struct{} // 1 slot: credit arrived
}

// Send sends chunk as the next response of the stream, waiting for credit
// and for stream window space until ctx ends (pass the handler's context).
// It returns ctx's error, or the stream's error if the caller went away.
// Concurrent calls are serialized.
func (w *ResponseWriter) Send(ctx context.Context, chunk []byte) error {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	for !w.take() {
		select {
		case <-w.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.buf = AppendFrame(w.buf[:0], &Frame{Type: FrameChunk, Body: chunk})
	return w.st.SendBlocking(ctx, w.buf)
}

// take consumes one credit if there is one.
func (w *ResponseWriter) take() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.credit == 0 {
		return false
	}
	w.credit--
	return true
}

// grant adds n credits and wakes a waiting Send.
func (w *ResponseWriter) grant(n uint32) {
	w.mu.Lock()
	w.credit = min(w.credit+uint64(n), maxCredit)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// maxCredit caps the credit a server counts: a caller cannot overflow it.
const maxCredit = 1 << 40
