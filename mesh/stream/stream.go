package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"sync"
	"time"
)

// Stream is one multiplexed stream of messages to a peer. Its methods are
// safe for concurrent use.
//
// State, reliable mode. The send side is open until Close queues a FIN
// after the data; it is done when the peer has acknowledged everything
// including the FIN. The receive side is open until the peer's FIN
// arrives in order; Recv then returns io.EOF once every message was read.
// Reset ends both sides at once, on both ends. When both sides are done
// the Mux forgets the stream, keeping a tombstone that re-acknowledges a
// FIN whose ACK was lost; the Stream value stays readable.
//
// State, unreliable mode. Close ends the stream on both ends (the peer
// reads io.EOF after the messages it holds); Reset ends it with a code.
type Stream struct {
	m          *Mux
	key        uint32 // local key: bit 0 set when the peer opened the stream
	cfg        Config
	unreliable bool

	// Everything below is guarded by m.mu.

	// The wake-ups of a waiting reader and writer, made by wakeLocked when
	// one first waits: most streams never do.
	readable chan struct{} // cap 1: a message, EOF or reset may be ready
	writable chan struct{} // cap 1: window space freed, FIN acked or reset

	// Reliable send side: fragments [una, nxt) are held in frags; those
	// below sent were transmitted at least once.
	frags          deque[sendFrag]
	una, nxt, sent uint64
	lost           deque[uint64] // seqs declared lost, to retransmit first
	buffered       int           // bytes charged to SendWindow
	bufferedMsgs   int
	inflight       int    // fragments in flight
	peerLimit      uint64 // the peer accepts fragments below this seq
	txCount        uint64 // transmissions so far: the packet numbers of loss detection
	largestAckedTx uint64 // 1 + the largest transmission number acknowledged; 0 for none
	rtoDeadline    int64
	lossDue        int64 // the loss timer: a fragment comes of age for the time threshold
	rtoBackoff     int   // consecutive timeouts: the RTO back-off
	probesOut      int   // zero-window probes in flight
	probe          bool  // send one fragment beyond the peer's window (zero-window probe)
	finQueued      bool
	finSeq         uint64
	finAcked       bool

	// Reliable receive side.
	rcvNext    uint64         // next in-order seq
	ooo        deque[*chunk]  // out-of-order fragments; index 0 is rcvNext
	held       deque[*chunk]  // in-order fragments not parsed yet, while the reader is behind (see mayParseLocked)
	heldOff    int            // bytes of held's first chunk parsed already
	rxChunk    int            // chunk capacity of the largest fragment received (at least chunkSize): the window's unit
	rxPayload  int            // the largest fragment payload received
	promised   int            // bytes of window promised beyond what arrived (see budget.go)
	chunkBytes int            // capacity of ooo and held chunks
	rcvLimit   uint64         // highest limit advertised (or assumed) so far
	advLimit   uint64         // limit in the last ACK sent
	ready      deque[*msgBuf] // complete messages for Recv
	readyBytes int            // capacity of ready buffers
	cur        *msgBuf        // message being reassembled; nil while reading a length prefix
	curN       int            // bytes of cur filled
	curLen     int            // length of the message in cur (cur grows toward it)
	res        int            // bytes of the Mux's budget reserved for cur's message
	resOK      bool           // that reservation fit the budget: the window may open for it
	frozen     bool           // in Mux.frozen: its window waits for the budget
	pre        uint64         // length prefix being decoded
	preShift   uint           // bits of pre decoded
	peerFin    bool           // reliable: FIN received at peerFinSeq; unreliable: graceful end received
	peerFinSeq uint64         //
	ackElicit  int            // data fragments since the last ACK
	quickAcks  int            // fragments still to acknowledge one by one after one arrived out of order
	ackDue     int64          // delayed ACK deadline; 0 when none
	partials   []partial      // unreliable: maxUnreliablePartials reassembly slots; nil when reliable
	lastMsgID  uint64         // unreliable: last delivered message id; 0 for none
	nextMsgID  uint64         // unreliable: next id to send

	// Lifecycle.
	closedLocal bool        // Close called
	resetErr    *ResetError // set once the stream is reset
	rstPending  bool        // a locally sent RESET awaits the peer's echo
	rstFlags    uint8
	rstCode     uint32
	rstRetries  int
	rstDue      int64
	echoed      bool          // we echoed the peer's RESET (or unreliable end)
	done        chan struct{} // Done's channel, made on demand; closedChan once ended
	afterEnd    []endHook     // AfterEnd's functions, run when the stream ends
	firstHook   [1]endHook    // afterEnd's array until a second one comes
	lastHookID  uint64        // the id of the last AfterEnd
	onEnd       func()        // OnEnd's function
	removed     bool          // the Mux forgot the stream
	released    bool          // Release called: its owner is done with it
	inReady     bool
	inCorked    bool  // in m.corked
	heapPos     int   // position in Mux.timers, 1-based; 0 when not in it
	wakeAt      int64 // the deadline Mux.timers files the stream under
	lastActive  int64 // when a frame for the stream arrived or the application sent on it last
	budgetNeed  int   // in Mux.blocked, waiting for this many bytes of send budget; 0 when not

	st streamCounters
}

// sendFrag is one fragment of a reliable stream's send side.
type sendFrag struct {
	c      *chunk // payload in c.b[:n]; nil for an empty FIN fragment
	n      int
	charge int // bytes charged to the send window
	ends   int // messages ending in this fragment
	state  uint8
	retx   bool // retransmitted at least once (Karn: no RTT sample)
	probe  bool // last sent beyond the peer's window: a zero-window probe
	inCC   bool // in flight and counted in the congestion controller's bytes in flight
	fin    bool
	sentAt int64
	txNum  uint64
}

// sendFrag states.
const (
	fragUnsent uint8 = iota
	fragInflight
	fragLost
	fragAcked
)

type streamCounters struct {
	txMsgs, txBytes, rxMsgs, rxBytes          uint64
	retransmits, backpressure, dups, overflow uint64
	splits                                    uint64
	dropped, stale, linkErrors                uint64
}

// streamPool holds the memory of released streams (see Release) with
// their wake-up channels, drained.
var streamPool = sync.Pool{New: func() any { return new(Stream) }}

func (m *Mux) newStreamLocked(key uint32, cfg Config, unreliable bool) *Stream {
	s := streamPool.Get().(*Stream)
	*s = Stream{
		readable:   s.readable,
		writable:   s.writable,
		m:          m,
		key:        key,
		cfg:        cfg,
		unreliable: unreliable,
		peerLimit:  initialWindowFragments,
		rcvLimit:   initialWindowFragments,
		advLimit:   initialWindowFragments,
		nextMsgID:  1,
		rxChunk:    chunkSize,
	}
	if unreliable {
		s.partials = make([]partial, maxUnreliablePartials)
	}
	return s
}

// fragCapLocked is the payload of a new fragment: what the current path
// MTU carries, at most a chunk.
func (s *Stream) fragCapLocked() int {
	h := dataHeaderSize
	if s.unreliable {
		h = unreliableDataHeaderSize
	}
	return min(s.m.pmtu.cur-h, jumboChunkSize)
}

// ID returns the stream's local id: unique within its Mux, odd when the
// peer opened the stream.
func (s *Stream) ID() uint32 { return s.key }

// Reliability returns the stream's delivery mode.
func (s *Stream) Reliability() Reliability { return s.cfg.Reliability }

// Send sends msg as one message. It copies msg (the caller may reuse it)
// and returns at once: nil when the message was queued (reliable) or
// handed to the Link (unreliable); ErrBackpressure when the send window
// (reliable) or the Link's socket queue (unreliable) is full, with
// nothing queued; ErrTooLarge beyond MaxMessageSize; ErrClosed after
// Close; a *ResetError after a reset. ctx is checked once; Send never
// waits (see SendBlocking and SendWithRetry).
func (s *Stream) Send(ctx context.Context, msg []byte) error {
	return s.send(ctx, msg, false, false)
}

// SendAndClose sends msg as the stream's last message: Send and Close in
// one step, without waiting for the acknowledgement. On a reliable stream
// the FIN rides on the message's last fragment, so a one-fragment request
// and its end cost one packet; Recv keeps working until the peer closes
// too. It returns what Send would; on any error nothing was queued and
// the stream is still open. Use CloseContext or Done to wait for the
// peer's acknowledgement.
func (s *Stream) SendAndClose(ctx context.Context, msg []byte) error {
	return s.send(ctx, msg, true, false)
}

// send is Send, or SendAndClose when last is set. When wait is set
// (SendBlocking) a message refused for the Mux's send budget queues s to
// be woken when it fits.
func (s *Stream) send(ctx context.Context, msg []byte, last, wait bool) error {
	if len(msg) > s.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(msg), s.cfg.MaxMessageSize)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := s.sendableErrLocked(); err != nil {
		return err
	}
	now := m.now()
	if s.unreliable {
		s.lastActive = now
		err := s.sendUnreliableLocked(msg)
		if err == nil && last {
			s.closeLocked(now)
			m.sendUpdatesLocked() // the stream may have ended, freeing memory
		}
		return err
	}
	if !s.fitsLocked(len(msg), wait) {
		s.st.backpressure++
		if wait {
			wakeLocked(&s.writable) // SendBlocking waits on it
		}
		return ErrBackpressure
	}
	s.lastActive = now
	s.appendMsgLocked(msg)
	if last {
		s.closeLocked(now)
	}
	m.readyLocked(s)
	m.flushLocked(now)
	return nil
}

// sendableErrLocked is why Send cannot proceed, or nil.
func (s *Stream) sendableErrLocked() error {
	switch {
	case s.resetErr != nil:
		return s.resetErr
	case s.m.closed:
		return ErrMuxClosed
	case s.closedLocal || (s.unreliable && s.peerFin):
		return ErrClosed
	}
	return nil
}

// Recv returns the next whole message, waiting until one arrives or ctx
// ends. The caller owns the returned slice. After the peer's graceful
// close it returns io.EOF once every message was read; after a reset, a
// *ResetError. See ReadMessage for an allocation-free variant.
func (s *Stream) Recv(ctx context.Context) ([]byte, error) {
	mb, err := s.next(ctx)
	if err != nil {
		return nil, err
	}
	if len(mb.b) <= cap(mb.b)/4 {
		// A small message in a larger pooled buffer (256 bytes at least):
		// the caller gets a copy of its own size, and the buffer goes
		// back to the pool instead of being made again for the next.
		b := bytes.Clone(mb.b)
		putMsg(mb)
		return b, nil
	}
	return giveMsg(mb), nil // the buffer goes to the caller, not back to the pool
}

// ReadMessage is Recv into a caller buffer: it appends the next message
// to buf[:0] and returns the result, growing it only when the message
// does not fit. It allocates nothing when buf is large enough.
func (s *Stream) ReadMessage(ctx context.Context, buf []byte) ([]byte, error) {
	mb, err := s.next(ctx)
	if err != nil {
		return buf[:0], err
	}
	buf = append(buf[:0], mb.b...)
	putMsg(mb)
	return buf, nil
}

// Messages returns an iterator over the stream's messages. It ends after
// io.EOF (not yielded) or after yielding another error. Each yielded slice
// is valid only until the next iteration: it is the buffer the message
// was reassembled in, lent without a copy and recycled afterwards.
func (s *Stream) Messages(ctx context.Context) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		for {
			mb, err := s.next(ctx)
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			more := yield(mb.b, nil)
			putMsg(mb)
			if !more {
				return
			}
		}
	}
}

// next pops the next message, waiting for one.
func (s *Stream) next(ctx context.Context) (*msgBuf, error) {
	m := s.m
	for {
		m.mu.Lock()
		if s.resetErr != nil {
			m.mu.Unlock()
			return nil, s.resetErr
		}
		if s.ready.len() == 0 && s.held.len() > 0 && s.removed {
			s.parseLocked(m.now()) // what a finished stream's waiting message needs, it takes now
		}
		if s.ready.len() > 0 {
			mb := s.ready.pop()
			s.readyBytes -= cap(mb.b)
			s.holdLocked(-cap(mb.b))
			if s.held.len() > 0 {
				s.parseLocked(m.now())
			}
			if s.ready.len() > 0 {
				notify(s.readable) // another reader may take the next
			}
			s.onReadLocked()
			if len(m.updates) > 0 {
				m.sendUpdatesLocked()
			}
			m.mu.Unlock()
			return mb, nil
		}
		if s.peerFin && (s.unreliable || s.rcvNext > s.peerFinSeq && s.held.len() == 0) {
			m.mu.Unlock()
			return nil, io.EOF
		}
		if m.closed {
			m.mu.Unlock()
			return nil, ErrMuxClosed
		}
		readable := wakeLocked(&s.readable)
		m.mu.Unlock()
		select {
		case <-readable:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.done:
		}
	}
}

// Close closes the stream gracefully and waits, at most
// Config.CloseTimeout, for the peer to acknowledge all data. Reliable
// streams: it queues a FIN after the data; the peer reads every message,
// then io.EOF. The receive side stays open until the peer closes too, so
// Recv keeps working. Unreliable streams: it ends the stream on both
// ends. On timeout it resets the stream with CodeCloseTimeout and returns
// an error wrapping context.DeadlineExceeded.
func (s *Stream) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()
	return s.CloseContext(ctx)
}

// CloseContext is Close bounded by ctx instead of Config.CloseTimeout.
func (s *Stream) CloseContext(ctx context.Context) error {
	m := s.m
	m.mu.Lock()
	if s.resetErr != nil {
		m.mu.Unlock()
		return s.resetErr
	}
	if m.closed {
		m.mu.Unlock()
		return ErrMuxClosed
	}
	if !s.closedLocal {
		now := m.now()
		s.closeLocked(now)
		m.readyLocked(s)
		m.flushLocked(now)
	}
	m.mu.Unlock()
	for {
		m.mu.Lock()
		switch {
		case s.resetErr != nil:
			m.mu.Unlock()
			return s.resetErr
		case s.finAcked || (s.unreliable && !s.rstPending) || s.unknownToPeerLocked():
			m.mu.Unlock()
			return nil
		case m.closed:
			m.mu.Unlock()
			return ErrMuxClosed
		}
		writable := wakeLocked(&s.writable)
		m.mu.Unlock()
		select {
		case <-writable:
		case <-m.done:
		case <-ctx.Done():
			s.reset(CodeCloseTimeout)
			return fmt.Errorf("stream: close: %w", ctx.Err())
		}
	}
}

// closeLocked closes the send side: it queues the FIN of a reliable
// stream (the caller flushes) or ends an unreliable one.
func (s *Stream) closeLocked(now int64) {
	s.closedLocal = true
	s.lastActive = now
	if !s.unreliable {
		s.appendFinLocked()
		return
	}
	if !s.peerFin { // else the peer ended it already
		s.sendRstLocked(flagGraceful, 0, now)
	}
	s.maybeFinishLocked()
}

// unknownToPeerLocked reports whether the peer cannot know s: an
// unreliable stream we opened and never sent a message on. Close does not
// wait for the echo, which can only say that the stream ended (the RESET
// is still resent until the peer, which treats it as a stream that opened
// and ended at once, echoes it).
func (s *Stream) unknownToPeerLocked() bool {
	return s.unreliable && s.key&1 == 0 && s.nextMsgID == 1
}

// Done returns a channel that is closed when the stream ends: both sides
// closed and acknowledged, or reset (Err says which). Unlike Recv it
// keeps waiting after the peer's end of stream, so it observes a reset
// that comes later.
func (s *Stream) Done() <-chan struct{} {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.done == nil {
		if s.endedLocked() {
			return closedChan
		}
		s.done = make(chan struct{})
	}
	return s.done
}

// endedLocked reports whether the stream has ended: Done's channel is
// closed, or would be at once.
func (s *Stream) endedLocked() bool {
	return s.done == closedChan || s.removed || s.resetErr != nil || s.m.closed
}

// AfterEnd arranges for f to run, in a goroutine of its own, when the
// stream ends (when Done's channel closes), or at once if it has ended.
// stop cancels that, reporting whether it stopped f from being started.
// Unlike a goroutine waiting on Done, nothing runs until the stream ends.
func (s *Stream) AfterEnd(f func()) (stop func() bool) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.endedLocked() {
		go f()
		return func() bool { return false }
	}
	if s.afterEnd == nil {
		s.afterEnd = s.firstHook[:0]
	}
	s.lastHookID++
	id := s.lastHookID
	s.afterEnd = append(s.afterEnd, endHook{id, f})
	return func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for i, h := range s.afterEnd {
			if h.id == id {
				s.afterEnd = slices.Delete(s.afterEnd, i, i+1)
				return true
			}
		}
		return false
	}
}

// endHook is a function AfterEnd registered, with the id its stop finds
// it by.
type endHook struct {
	id uint64
	f  func()
}

// OnEnd arranges for f to run once when the stream ends, just before
// Done's channel closes, on the goroutine that ends it, with the Mux's
// lock held: f must not block, and must not call the stream or its Mux.
// If the stream has ended, f runs at once. Unlike AfterEnd, it starts no
// goroutine and allocates nothing; a second OnEnd replaces the first.
func (s *Stream) OnEnd(f func()) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.endedLocked() {
		f()
		return
	}
	s.onEnd = f
}

// endLocked runs the OnEnd function, closes the Done channel and starts
// the AfterEnd functions: the stream was reset or forgotten.
func (s *Stream) endLocked() {
	if f := s.onEnd; f != nil {
		s.onEnd = nil
		f()
	}
	if s.done != nil && s.done != closedChan {
		close(s.done)
	}
	s.done = closedChan
	for _, h := range s.afterEnd {
		go h.f()
	}
	clear(s.afterEnd)
	s.afterEnd = nil
}

// Release tells the Mux that the caller is done with s, so that a later
// stream may reuse its memory once s has ended; a stream that has not
// ended yet is left to the garbage collector. Release at most once, and
// only a stream no other goroutine holds: after it nobody may call s's
// methods, Release included (a channel Done returned stays valid).
// Release is optional; package rpc's unary caller uses it, which spares
// the collector one of the two streams a call makes.
func (s *Stream) Release() {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.released {
		return
	}
	s.released = true
	if !s.removed || m.holdsLocked(s) {
		return
	}
	for s.ready.len() > 0 {
		putMsg(s.ready.pop())
	}
	if s.cur != nil {
		putMsg(s.cur)
	}
	drain(s.readable)
	drain(s.writable)
	readable, writable := s.readable, s.writable
	*s = Stream{readable: readable, writable: writable} // nothing pinned while pooled
	streamPool.Put(s)
}

// holdsLocked reports whether one of the Mux's queues still points at s:
// its flags mirror the ready, corked, frozen and blocked queues and the
// timer heap; updates has no flag, and waiting keeps a stream that
// stopped waiting until it reaches the front. (removeLocked cleared
// m.last.)
func (m *Mux) holdsLocked(s *Stream) bool {
	return s.inReady || s.inCorked || s.frozen || s.budgetNeed > 0 || s.heapPos > 0 ||
		slices.Contains(m.updates, s) || slices.Contains(m.waiting, s)
}

// drain empties a wake-up channel; nil has nothing.
func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// Err returns the *ResetError of a reset stream, ErrMuxClosed when the
// Mux closed, and nil otherwise.
func (s *Stream) Err() error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case s.resetErr != nil:
		return s.resetErr
	case m.closed:
		return ErrMuxClosed
	}
	return nil
}

// closedChan is the Done channel of streams that already ended.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Reset ends the stream abruptly on both ends: buffered data is dropped,
// and the peer's pending and future calls fail with a *ResetError
// carrying code (Remote set). Codes from CodeReservedMin up are the
// engine's. Resetting a finished stream does nothing.
func (s *Stream) Reset(code uint32) {
	s.reset(code)
}

func (s *Stream) reset(code uint32) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.resetErr != nil || m.closed || s.finished() {
		return
	}
	s.resetLocked(code, false, m.now())
	m.sendUpdatesLocked()
}

// finished reports whether both sides ended gracefully.
func (s *Stream) finished() bool {
	if s.unreliable {
		return (s.closedLocal && !s.rstPending) || s.peerFin
	}
	return s.finAcked && s.peerFin && s.rcvNext > s.peerFinSeq
}

// wakeLocked returns *c, a stream's readable or writable channel, making
// it if there is none yet. A waiter takes it under m.mu in the same hold
// that found it must wait, so every notification after that finds it; a
// notification that finds none has no one to wake.
func wakeLocked(c *chan struct{}) chan struct{} {
	if *c == nil {
		*c = make(chan struct{}, 1)
	}
	return *c
}

// notify wakes one waiter of c without blocking; a nil c has none.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (s *Stream) notifyAll() {
	notify(s.readable)
	notify(s.writable)
}

// SendBlocking sends msg, waiting for window space while the send window
// is full, until ctx ends. It sleeps on a notification from the
// acknowledgement path, never polls. Errors other than ErrBackpressure
// return at once.
func (s *Stream) SendBlocking(ctx context.Context, msg []byte) error {
	defer s.leaveBudgetQueue()
	for {
		err := s.send(ctx, msg, false, true)
		if !errors.Is(err, ErrBackpressure) {
			return err
		}
		if s.unreliable {
			// The Link's socket queue has no notification: wait one retry
			// interval.
			t := time.NewTimer(s.m.cfg.LinkRetry)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			continue
		}
		s.m.mu.Lock()
		writable := s.writable // made by send, which refused for want of room
		s.m.mu.Unlock()
		select {
		case <-writable:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.m.done:
		}
	}
}
