package stream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Link is one peer's encrypted session as the stream engine sees it. The
// mesh implements it for each peer; tests implement it in memory.
type Link interface {
	// SendFrame sends one unreliable, authenticated frame body, head
	// followed by data, to the peer; the mesh adds its own headers and
	// encrypts. The engine passes a DATA frame's payload as data, straight
	// from its send buffer, so a Link that copies the frame into a packet
	// copies the payload once. data may be empty. SendFrame must not block
	// and must not retain head or data after returning. When the socket queue is full
	// it returns an error wrapping ErrBackpressure and the engine retries
	// after MuxConfig.LinkRetry; any other error is treated as a lost
	// frame, which loss recovery resends with back-off. The engine calls
	// it with its own lock held, so it must not call back into the Mux.
	SendFrame(head, data []byte) error
	// MaxFrameSize is the largest body SendFrame accepts, in bytes. The
	// engine reads it when a stream is opened and sizes the stream's
	// fragments by it (capped at 9216 bytes of payload), so it must be at
	// least 512 and must not shrink during the Mux's life: fragments are
	// retransmitted at the size they were cut.
	MaxFrameSize() int
}

// An AcceptLink is a Link that takes the streams the peer opens itself,
// instead of queueing them for Mux.Accept: no goroutine stands between
// the arrival of a stream's first frame and its handler.
type AcceptLink interface {
	Link
	// AcceptStream is called when the peer opens a stream, before the
	// frame that opened it is processed, with the Mux's lock held: it must
	// not block and must not call the Mux or the stream (a goroutine it
	// starts may). It returns false to refuse the stream, which is then
	// reset with CodeRefused.
	AcceptStream(*Stream) bool
}

// Mux multiplexes the streams of one peer over its Link. Create it with
// NewMux when the peer's session comes up, feed it every stream frame
// with HandleFrame, and Close it when the peer goes away. Streams the
// peer opens are returned by Accept, or given to the Link if it is an
// AcceptLink.
//
// Stream ids: each side numbers the streams it opens; a stream's local
// key has bit 0 set when the peer opened it. On the wire bit 0 is set when
// the frame's sender opened the stream, so a sender writes key^1 and a
// receiver reads the key as is. No roles need to be agreed on.
//
// Locking: mu guards the Mux and the state of all its streams. Methods
// named ...Locked must be called with mu held. The hot paths hold mu once
// per frame or per Send; Link.SendFrame is called under mu.
type Mux struct {
	link   Link
	accept AcceptLink // link, if it takes streams itself; else acceptCh does
	cork   CorkLink   // link, if it tells when it wrote a frame; else nil
	cfg    MuxConfig
	epoch  time.Time

	acceptCh chan *Stream
	wake     chan struct{} // cap 1: the timer goroutine re-reads nextWake
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup
	// uncork is set by an Uncork that found the Mux busy: the next
	// flush, or the timer goroutine, sends what was held (cork.go).
	uncork atomic.Bool

	mu          sync.Mutex
	closed      bool
	streams     map[uint32]*Stream
	last        *Stream // cache of the last stream a frame named: bulk transfers skip the map
	nextLocal   uint32  // next local key
	highestPeer uint32  // highest peer key seen; 1 before the first (peer keys are 3, 5, ...)
	skipped     map[uint32]struct{}
	tombs       tombs // how recently forgotten streams ended
	peerOpen    int   // live peer-initiated streams

	ready    deque[*Stream] // round-robin order of streams with data to send
	owed     []owedAck      // ACKs forgotten streams still owe (see owed.go)
	held     int            // bytes held for received data (see budget.go)
	parked   int            // of held, the chunks of messages whose reservations wait
	promised int            // bytes of receive window promised beyond the initial windows (see budget.go)
	sendHeld int            // bytes held for sending: the streams' send buffers (see SendBudget)
	blocked  []*Stream      // SendBlocking streams refused for the send budget, first come first served
	frozen   []*Stream      // streams whose window waits for the budget
	waiting  []*Stream      // streams whose reservation waits, oldest first
	updates  []*Stream      // streams owed a window update (see holdLocked)
	owedDue  int64          // when the first owed ACK falls due; 0 with none
	timers   timerHeap      // streams with an armed deadline, earliest first
	due      []*Stream      // scratch for onTimersLocked
	// nextWake is the deadline the timer goroutine sleeps toward (ns since
	// epoch), 0 when it sleeps without one.
	nextWake    int64
	linkBlocked int64     // when non-zero, the Link refused a frame; retry at this time
	corked      []*Stream // streams whose last fragment waits for the Link (see cork.go)
	corkSince   int64     // when the first of corked was held; 0 with none
	txTicket    uint64    // the CorkLink's ticket of the latest DATA frame sent
	pack        []byte    // DATA frames of several streams for one frame body (see pack.go)
	packed      []packRef // the frames in pack

	rtt rttEstimator
	cc  newReno
	// ackedSentMax is when the latest fragment acknowledged so far was
	// sent; pcStart and pcEnd span the fragments declared lost since, for
	// persistent congestion (see persistentLossLocked); pcStart is 0 when
	// none are.
	ackedSentMax, pcStart, pcEnd int64
	pmtu                         pmtuState
	tx                           []byte // frame scratch buffer, MaxFrameSize bytes
	rxf                          frame  // decode scratch

	stats muxCounters
}

type muxCounters struct {
	accepted, refused, malformed, stale, linkBackpressure, budgetDrops uint64
	idleResets, sendBudgetFull, corked                                 uint64
}

// NewMux returns a Mux for one peer's link and starts its timer
// goroutine, which Close stops. If link also implements ProbeLink, the
// Mux discovers the path MTU above link.MaxFrameSize(). It panics if
// link.MaxFrameSize() is below 512: a programming error, not input.
func NewMux(link Link, cfg MuxConfig) *Mux {
	cfg = cfg.withDefaults()
	mss := link.MaxFrameSize()
	if mss < minFrameSize {
		panic(fmt.Sprintf("stream: Link.MaxFrameSize %d is below %d", mss, minFrameSize))
	}
	m := &Mux{
		link:        link,
		cfg:         cfg,
		epoch:       time.Now(),
		acceptCh:    make(chan *Stream, cfg.AcceptBacklog),
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		streams:     make(map[uint32]*Stream),
		skipped:     make(map[uint32]struct{}),
		nextLocal:   2,
		highestPeer: 1,
		rtt:         newRTTEstimator(cfg.InitialRTT, cfg.MinRTO, cfg.MaxRTO, cfg.MaxAckDelay),
		cc:          newNewReno(mss),
		pmtu:        newPMTU(link),
	}
	// m.tx holds headers, ACKs and probes (payloads go straight from
	// chunks); a ProbeLink's ceiling may rise when the path changes.
	txSize := max(mss, maxAckFrameSize)
	if _, ok := link.(ProbeLink); ok {
		txSize = max(txSize, maxProbeSize)
	}
	m.tx = make([]byte, txSize)
	m.pack = make([]byte, 0, txSize)
	m.accept, _ = link.(AcceptLink)
	m.cork, _ = link.(CorkLink)
	m.wg.Add(1)
	go m.run()
	return m
}

// now is the Mux clock: nanoseconds since NewMux, monotonic.
func (m *Mux) now() int64 { return int64(time.Since(m.epoch)) }

// Open opens a stream to the peer. It sends nothing: the peer's Accept
// returns the stream when its first message (or its Close) arrives. ctx
// is checked once; opening never waits.
func (m *Mux) Open(ctx context.Context, cfg Config) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrMuxClosed
	}
	if m.nextLocal == 0 { // wrapped after 2^31 streams
		return nil, fmt.Errorf("%w: stream ids exhausted", ErrMuxClosed)
	}
	m.clearTombLocked(m.nextLocal)
	s := m.newStreamLocked(m.nextLocal, cfg.withDefaults(), cfg.Reliability == Unreliable)
	m.nextLocal += 2
	m.streams[s.key] = s
	return s, nil
}

// Accept waits for the next stream the peer opened. Streams the peer opens
// while AcceptBacklog streams are waiting are refused. If the Link is an
// AcceptLink, streams go to it instead and Accept waits until ctx ends or
// the Mux closes.
func (m *Mux) Accept(ctx context.Context) (*Stream, error) {
	select {
	case s := <-m.acceptCh:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-m.done:
		return nil, ErrMuxClosed
	}
}

// Close resets every stream with CodeMuxClosed (telling the peer, best
// effort), fails pending and future calls with ErrMuxClosed or the reset
// error, and stops the timer goroutine. It is idempotent.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	for _, s := range m.streams {
		if !s.finished() {
			s.resetLocked(CodeMuxClosed, false, m.now())
		}
		s.notifyAll()
	}
	clear(m.streams)
	clear(m.timers)
	m.timers = nil
	clear(m.corked)
	m.corked = nil
	m.owed = nil
	m.last = nil
	m.closed = true
	close(m.done)
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// HandleFrame processes one frame body received from the peer. The mesh
// calls it on its socket reader goroutine: it never blocks (it takes the
// Mux lock, held only for bounded work) and does not retain body.
// Malformed input is dropped and counted.
func (m *Mux) HandleFrame(body []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	now := m.now()
	f := &m.rxf
	for len(body) > 0 {
		n, err := decodeFrame(body, f)
		if err != nil {
			m.stats.malformed++
			break
		}
		body = body[n:]
		switch f.Type {
		case frameData:
			m.handleDataLocked(f, now)
		case frameAck:
			if s := m.lookupLocked(f.Stream); s != nil {
				s.lastActive = now
				s.handleAckLocked(f, now)
			}
		case frameReset:
			if s := m.findLocked(f.Stream); s != nil {
				s.lastActive = now
				s.handleResetLocked(f, now)
			} else {
				m.handleUnknownResetLocked(f)
			}
		case framePing:
			var b [pingFrameSize]byte
			putPing(b[:], framePong, f.Token)
			_ = m.link.SendFrame(b[:], nil) // a lost PONG is a lost probe
		case framePong:
			m.onPongLocked(f.Token, now)
		case framePadding:
		}
	}
	m.flushLocked(now)
}

// lookupLocked returns the live stream a frame's wire id names, or nil
// (counted as stale).
func (m *Mux) lookupLocked(wireID uint32) *Stream {
	s := m.findLocked(wireID)
	if s == nil {
		m.stats.stale++
	}
	return s
}

// findLocked returns the live stream a frame's wire id names, or nil.
func (m *Mux) findLocked(wireID uint32) *Stream {
	if s := m.last; s != nil && s.key == wireID {
		return s
	}
	s := m.streams[wireID]
	if s != nil {
		m.last = s
	}
	return s
}

// handleUnknownResetLocked processes a RESET for a stream the Mux does
// not hold. A RESET for a peer key never seen (above the highest, or
// skipped) ends a stream none of whose frames arrived: the peer opened it
// and ended it (its messages were lost, or overtaken, or it sent none).
// It is treated as a stream that opened and ended at once: the key is
// used up, echoed, and remembered by a tombstone that echoes a resent
// RESET, so the peer's Close or Reset completes after one round trip. It
// costs no stream, no MaxStreams slot and no Accept. A RESET for a
// forgotten stream whose end we echoed is echoed again; any other (one of
// our own keys, a peer key seen before, or too far ahead) is stale and
// ignored. Only the side that did not send a stream's first RESET ever
// echoes, so RESETs never ping-pong: our echo names one of the peer's own
// keys, and a Mux never echoes a RESET for its own keys.
func (m *Mux) handleUnknownResetLocked(f *frame) {
	key := f.Stream
	switch {
	case m.tombLocked(key) == tombEcho:
		m.stats.stale++ // our echo was lost
	case key&1 == 1:
		switch m.claimPeerKeyLocked(key) {
		case claimNew:
			m.setTombLocked(key, tombEcho)
		case claimSeen:
			m.stats.stale++
			return
		default:
			return // too far ahead: counted as malformed
		}
	default:
		m.stats.stale++
		return
	}
	m.sendResetLocked(key, f.Flags, f.Code)
}

// claim is what claimPeerKeyLocked made of a peer key.
type claim uint8

const (
	claimNew    claim = iota // never seen: now in use
	claimSeen                // seen before (or skipped beyond skippedIDLimit): stale
	claimTooFar              // beyond maxStreamIDJump: malformed
)

// claimPeerKeyLocked takes the peer key key (odd) into use, once: a key
// above the highest seen, remembering the keys skipped on the way (up to
// skippedIDLimit in all, because their first frames may simply be late)
// and clearing the tombstones of the keys coming into use, or a key
// remembered as skipped. The work and memory are bounded by
// maxStreamIDJump and skippedIDLimit, whatever key the peer names.
func (m *Mux) claimPeerKeyLocked(key uint32) claim {
	if key <= m.highestPeer {
		if _, ok := m.skipped[key]; !ok {
			return claimSeen
		}
		delete(m.skipped, key)
		return claimNew
	}
	jump := (key - m.highestPeer) / 2
	if jump > maxStreamIDJump {
		m.stats.malformed++
		return claimTooFar
	}
	if len(m.skipped)+int(jump) <= skippedIDLimit {
		for k := m.highestPeer + 2; k < key; k += 2 {
			m.skipped[k] = struct{}{}
		}
	}
	for k := m.highestPeer + 2; m.tombs.ack != nil; k += 2 { // the ids coming into use
		m.clearTombLocked(k)
		if k == key { // not k <= key: k wraps after 0xFFFFFFFF
			break
		}
	}
	m.highestPeer = key
	return claimNew
}

func (m *Mux) handleDataLocked(f *frame, now int64) {
	key := f.Stream
	s := m.last
	if s == nil || s.key != key {
		s = m.streams[key]
	}
	if s == nil {
		switch m.tombLocked(key) {
		case tombAck:
			// Everything up to its FIN was received: acknowledge.
			_ = m.sendLocked(putAck(m.tx, key^1, f.Seq+1, 0, nil)) // the peer asks again
			return
		case tombEcho:
			// The peer ended the stream itself and we echoed its RESET:
			// this is a late copy of a fragment sent before (its RESET
			// may have overtaken it). It needs no answer; a refusal would
			// turn the graceful end of an unreliable stream whose echo was
			// lost into a CodeRefused reset.
			m.stats.stale++
			return
		}
		var refuse bool
		s, refuse = m.peerStreamLocked(f, key)
		if s == nil {
			if refuse {
				m.sendResetLocked(key, 0, CodeRefused)
			}
			return
		}
	}
	m.last = s
	s.lastActive = now
	if (f.Flags&flagUnreliable != 0) != s.unreliable {
		s.resetLocked(CodeProtocol, false, now)
		return
	}
	if s.unreliable {
		s.handleUnreliableDataLocked(f, now)
	} else {
		s.handleDataLocked(f, now)
	}
}

// peerStreamLocked creates the stream for a DATA frame naming an unknown
// key, or returns nil and whether to refuse it with a RESET.
func (m *Mux) peerStreamLocked(f *frame, key uint32) (*Stream, bool) {
	if key&1 == 0 {
		if !m.openedLocked(key) {
			// Not a stream we ever opened: no honest peer names it, and a
			// refusal would name, to the peer, a stream of its peer that
			// does not exist yet, which it would take as opened and ended.
			m.stats.malformed++
			return nil, false
		}
		m.stats.stale++ // one of ours that we forgot
		return nil, true
	}
	switch m.claimPeerKeyLocked(key) {
	case claimTooFar:
		return nil, false
	case claimSeen:
		m.stats.stale++
		return nil, true
	}
	if m.peerOpen >= m.cfg.MaxStreams || (m.accept == nil && len(m.acceptCh) >= cap(m.acceptCh)) {
		m.stats.refused++
		return nil, true
	}
	cfg := m.cfg.Accept
	unrel := f.Flags&flagUnreliable != 0
	cfg.Reliability = Reliable
	if unrel {
		cfg.Reliability = Unreliable
	}
	s := m.newStreamLocked(key, cfg, unrel)
	if m.accept != nil && !m.accept.AcceptStream(s) {
		m.stats.refused++
		return nil, true
	}
	m.streams[key] = s
	m.armIdleLocked(s)
	m.peerOpen++
	m.stats.accepted++
	if m.accept == nil {
		m.acceptCh <- s // cannot block: checked above, and only this goroutine sends
	}
	return s, false
}

// openedLocked reports whether our key key (even) was ever opened.
func (m *Mux) openedLocked(key uint32) bool {
	return key >= 2 && (m.nextLocal == 0 || key < m.nextLocal) // nextLocal wraps to 0 once all are used
}

// removeLocked forgets s, leaving a tombstone: frames naming it get the
// answer its ending calls for, or are stale.
func (m *Mux) removeLocked(s *Stream) {
	if s.removed {
		return
	}
	waiting := s.waitingLocked()
	if waiting {
		m.parked -= s.chunkBytes
	}
	m.holdLocked(-s.rxHeldLocked())
	s.removed = true
	s.resOK = s.resOK || waiting // a stream the Mux forgot counts nothing: its message may go on
	s.repromiseLocked()
	s.endLocked()
	delete(m.streams, s.key)
	m.timers.remove(s)
	if m.last == s {
		m.last = nil
	}
	if s.key&1 == 1 {
		m.peerOpen--
	}
	m.buryLocked(s)
}

// sendResetLocked sends a RESET for a stream the Mux does not hold.
func (m *Mux) sendResetLocked(key uint32, flags uint8, code uint32) {
	_ = m.sendLocked(putReset(m.tx, flags, key^1, code)) // the peer resends and gets another
}

// readyLocked queues s for the round-robin scheduler.
func (m *Mux) readyLocked(s *Stream) {
	if !s.inReady {
		s.inReady = true
		m.ready.push(s)
	}
}

// flushLocked sends the window updates owed, then queued fragments while
// the congestion window and the Link allow, one fragment per stream in
// turn, so streams with data share the window fairly.
func (m *Mux) flushLocked(now int64) {
	if m.uncork.Load() && m.uncork.Swap(false) {
		m.corkSince = 0
		m.releaseCorkedLocked()
	}
	if m.linkBlocked != 0 {
		if now < m.linkBlocked {
			return
		}
		m.linkBlocked = 0
	}
	if len(m.updates) > 0 {
		if m.sendUpdatesLocked(); m.linkBlocked != 0 {
			return
		}
	}
	if m.ready.len() > 0 {
		m.maybeProbeLocked(now)
	}
	// The streams whose frames went in a pack are ready again once it
	// went, if they have more: send until neither is left.
	for m.sendReadyLocked(now) && len(m.packed) > 0 {
		if !m.sendPackLocked(now) {
			return
		}
	}
}

// sendReadyLocked sends the ready streams' fragments, one per stream in
// turn, small ones into the pack (pack.go), while the congestion window
// allows. It reports false when the Link refused a frame.
func (m *Mux) sendReadyLocked(now int64) bool {
	for m.ready.len() > 0 {
		s := *m.ready.at(0)
		size, ok := s.nextFrameSizeLocked()
		if !ok || s.removed {
			m.ready.pop()
			s.inReady = false
			continue
		}
		if m.corkedLocked(s, size, now) {
			m.ready.pop()
			s.inReady = false
			m.corkLocked(s, now)
			continue
		}
		if !m.cc.canSend(len(m.pack) + size) {
			return true // an ACK or timeout calls flush again
		}
		if m.packableLocked(size) {
			if !m.packRoomLocked(size) {
				if !m.sendPackLocked(now) {
					return false
				}
				continue // the pack is empty now: look at s again
			}
			m.ready.pop()
			s.inReady = false
			m.packLocked(s) // sendPackLocked readies it again if it has more
			continue
		}
		if err := s.sendOneLocked(now); err != nil {
			m.linkBlockedLocked(now)
			m.unpackLocked()
			return false
		}
		m.ready.pop()
		s.inReady = false
		if _, more := s.nextFrameSizeLocked(); more {
			m.readyLocked(s)
		}
	}
	return true
}

// linkBlockedLocked records that the Link refused a frame with
// back-pressure: sending resumes after LinkRetry.
func (m *Mux) linkBlockedLocked(now int64) {
	m.stats.linkBackpressure++
	m.linkBlocked = now + int64(m.cfg.LinkRetry)
	m.armMuxLocked(m.linkBlocked)
}

// armIdleLocked starts the idle timer of s, a stream the peer opened: s
// joins the timer heap for good (see Stream.onTimerLocked), so activity
// costs only a time stamp and the heap moves the stream at most once per
// IdleTimeout.
func (m *Mux) armIdleLocked(s *Stream) {
	s.lastActive = m.now()
	if m.cfg.IdleTimeout > 0 {
		m.armLocked(s, s.lastActive+int64(m.cfg.IdleTimeout))
	}
}

// armLocked makes sure the timer goroutine wakes for s by deadline.
func (m *Mux) armLocked(s *Stream, deadline int64) {
	if m.timers.arm(s, deadline) {
		m.armMuxLocked(deadline)
	}
}

func (m *Mux) armMuxLocked(deadline int64) {
	if m.nextWake == 0 || deadline < m.nextWake {
		m.nextWake = deadline
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// run is the Mux's one timer goroutine: retransmission timeouts, delayed
// ACKs, RESET retries and reassembly timeouts of all streams share it.
func (m *Mux) run() {
	defer m.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-m.wake:
		case <-t.C:
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return
		}
		now := m.now()
		if m.uncork.Load() {
			m.flushLocked(now) // it sends what an Uncork left
		}
		var next int64
		if m.nextWake != 0 && m.nextWake <= now {
			next = m.onTimersLocked(now)
			m.nextWake = next
		} else {
			next = m.nextWake
		}
		m.mu.Unlock()
		if next != 0 {
			t.Reset(time.Duration(next - now))
		} else {
			t.Stop()
		}
	}
}

// onTimersLocked runs every due deadline and returns the next one, or 0.
func (m *Mux) onTimersLocked(now int64) int64 {
	var next int64
	earlier := func(d int64) {
		if d != 0 && (next == 0 || d < next) {
			next = d
		}
	}
	if m.linkBlocked != 0 && m.linkBlocked <= now {
		m.linkBlocked = 0
	}
	m.nextWake = 0 // armMuxLocked during the sweep records deadlines here
	// Take the due streams out first: each is filed again under its next
	// deadline, which is later than now, so the sweep ends.
	m.due = m.timers.popDue(now, m.due[:0])
	for _, s := range m.due {
		if d := s.onTimerLocked(now); d != 0 && !s.removed {
			m.timers.arm(s, d)
		}
	}
	clear(m.due)
	if m.owedDue != 0 && m.owedDue <= now {
		m.flushOwedLocked()
	}
	earlier(m.onProbeTimerLocked(now))
	earlier(m.corkTimerLocked(now))
	m.flushLocked(now)
	if len(m.corked) == 0 {
		m.corkSince = 0 // what was held went, or goes when the window opens
	}
	earlier(m.timers.next())
	earlier(m.owedDue)
	earlier(m.linkBlocked)
	earlier(m.nextWake)
	return next
}

// isBackpressure reports whether a Link error means "queue full".
func isBackpressure(err error) bool { return errors.Is(err, ErrBackpressure) }
