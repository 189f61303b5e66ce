package stream

import "math"

// handleDataLocked processes a reliable DATA fragment.
func (s *Stream) handleDataLocked(f *frame, now int64) {
	if s.resetErr != nil {
		return
	}
	split := f.Flags&flagSplit != 0
	if len(f.Data) > jumboChunkSize || (split && int(f.Total) > jumboChunkSize) {
		s.m.stats.malformed++ // no honest sender makes fragments this large
		return
	}
	seq := f.Seq
	fin := f.Flags&flagFin != 0
	switch {
	case seq < s.rcvNext:
		s.st.dups++
		s.sendAckLocked() // our ACK was probably lost
		return
	case seq >= s.rcvLimit:
		s.st.overflow++
		s.sendAckLocked() // tell the sender our window
		return
	case s.peerFin && (seq > s.peerFinSeq || (fin && seq != s.peerFinSeq)):
		s.resetLocked(CodeProtocol, false, now)
		return
	case fin && s.ooo.len() > int(seq-s.rcvNext)+1:
		s.resetLocked(CodeProtocol, false, now) // data beyond the FIN
		return
	}
	if fin {
		s.peerFin, s.peerFinSeq = true, seq
	}
	n := len(f.Data)
	if split {
		n = int(f.Total)
	}
	s.rxChunk = max(s.rxChunk, chunkCap(n))
	s.rxPayload = max(s.rxPayload, n)
	delivered := s.ready.len()
	i := int(seq - s.rcvNext)
	if i < s.ooo.len() && *s.ooo.at(i) != nil && (*s.ooo.at(i)).complete() {
		s.st.dups++
		s.sendAckLocked()
		return
	}
	switch {
	case i == 0 && !split && s.ooo.len() == 0 && s.held.len() == 0:
		// The common case, in order with nothing held: no copy into a chunk.
		k, ok := s.consumeLocked(f.Data, now)
		if !ok {
			return
		}
		if k < len(f.Data) { // the reader is behind: keep the rest
			c := getChunk(len(f.Data) - k)
			c.n = copy(c.b, f.Data[k:])
			s.held.push(c)
			s.chunksLocked(cap(c.b))
		}
		s.rcvNext++
	default:
		if i > 0 && !s.resOK && s.m.overBudgetLocked() && (i >= s.ooo.len() || *s.ooo.at(i) == nil) {
			// Out of order at the budget: the sender resends it. A message
			// whose reservation was admitted keeps its fragments (see
			// budget.go), or every loss would cost it a timeout.
			s.m.stats.budgetDrops++
			return
		}
		if !s.storeLocked(i, f) {
			return // an incomplete split fragment: nothing to acknowledge yet
		}
		for s.ooo.len() > 0 && *s.ooo.at(0) != nil && (*s.ooo.at(0)).complete() {
			s.held.push(s.ooo.pop())
			s.rcvNext++
		}
		if !s.parseLocked(now) {
			return
		}
	}
	s.repromiseLocked()
	s.ackElicit++
	switch {
	case s.ooo.len() > 0: // a loss or reordering: acknowledge at once, and the next ones too
		s.quickAcks = quickAckFragments
		s.sendAckLocked()
	case s.quickAcks > 0:
		s.quickAcks--
		s.sendAckLocked()
	case s.ackElicit >= ackEveryFragments:
		s.sendAckLocked()
	default:
		delay := s.m.cfg.MaxAckDelay
		if fin {
			delay = min(delay, s.m.cfg.finAckDelay)
		}
		if due := now + int64(delay); s.ackDue == 0 || due < s.ackDue {
			s.ackDue = due
			s.m.armLocked(s, s.ackDue)
		}
	}
	if s.ready.len() > delivered || (s.peerFin && s.rcvNext > s.peerFinSeq) {
		notify(s.readable)
		s.maybeFinishLocked()
	}
}

// storeLocked copies a fragment (or a split part of one) into the
// out-of-order slot i and reports whether the fragment is now complete.
func (s *Stream) storeLocked(i int, f *frame) bool {
	s.ooo.extend(i + 1)
	slot := s.ooo.at(i)
	n, off := len(f.Data), 0
	if f.Flags&flagSplit != 0 {
		n, off = int(f.Total), int(f.Offset)
	}
	c := *slot
	if c != nil && c.n != n {
		s.m.stats.malformed++ // parts disagree on the fragment's length
		return false
	}
	if c == nil {
		c = getChunk(n)
		c.n, c.have = n, 0
		*slot = c
		s.chunksLocked(cap(c.b))
	}
	copy(c.b[off:], f.Data)
	end := off + len(f.Data)
	if f.Flags&flagSplit == 0 {
		c.have = blockMask(n)
	} else {
		c.have |= blockMask(end) &^ blockMask(off)
	}
	return c.complete()
}

// mayParseLocked reports whether s may start parsing another message:
// whenever the reader has nothing to read, else while its unread messages
// fill less than RecvWindow and, at the Mux's budget, average at least a
// chunk each. Otherwise received bytes wait in the chunks they arrived
// in, which the window counts: a peer's tiny messages (each one a whole
// message buffer of at least 256 bytes) cannot turn a window of fragments
// into hundreds of times its size, while large messages, whose buffers
// take about what their chunks held, are parsed on as they arrive.
func (s *Stream) mayParseLocked() bool {
	n := s.ready.len()
	return n == 0 || (s.readyBytes < s.cfg.RecvWindow &&
		(!s.m.overBudgetLocked() || s.readyBytes >= n*chunkSize))
}

// parseLocked feeds the held fragments to the message assembler while
// mayParseLocked allows, freeing each chunk once parsed. It returns false
// when the stream was reset.
func (s *Stream) parseLocked(now int64) bool {
	for s.held.len() > 0 {
		c := *s.held.at(0)
		k, ok := s.consumeLocked(c.b[s.heldOff:c.n], now)
		if !ok {
			return false
		}
		s.heldOff += k
		if s.heldOff < c.n {
			return true // the reader is behind
		}
		s.held.pop()
		s.heldOff = 0
		s.chunksLocked(-cap(c.b))
		putChunk(c)
	}
	return true
}

// consumeLocked feeds in-order stream bytes to the message assembler:
// a uvarint length, then that many bytes, repeated. The reassembly buffer
// starts at reassemblyInitial bytes and doubles as data arrives, so a
// length prefix alone never makes the receiver allocate MaxMessageSize.
// It stops before a message mayParseLocked does not allow, and after the
// length of a message whose budget reservation waits (the bytes stay in
// their chunks, which the budget counts, until the Mux admits it), and
// returns how many bytes it consumed, and false when the stream was reset
// for a message over MaxMessageSize.
func (s *Stream) consumeLocked(data []byte, now int64) (int, bool) {
	total := len(data)
	for len(data) > 0 {
		if s.cur == nil && s.res > 0 { // the length is known
			if !s.resOK {
				break // the reservation waits, and the bytes in their chunks
			}
			s.cur = getMsg(min(s.curLen, reassemblyInitial))
		}
		if s.cur == nil {
			if s.preShift == 0 && !s.mayParseLocked() {
				break
			}
			b := data[0]
			data = data[1:]
			s.pre |= uint64(b&0x7f) << s.preShift
			s.preShift += 7
			if b >= 0x80 {
				if s.preShift >= 35 { // beyond any MaxMessageSize
					s.resetLocked(CodeTooLarge, false, now)
					return 0, false
				}
				continue
			}
			n := s.pre
			s.pre, s.preShift = 0, 0
			if n > uint64(s.cfg.MaxMessageSize) {
				s.resetLocked(CodeTooLarge, false, now)
				return 0, false
			}
			s.curLen, s.curN = int(n), 0
			if s.reserveLocked(s.curLen); s.curLen > 0 {
				continue // the buffer comes with the first byte, once admitted
			}
			s.cur = getMsg(0)
		} else {
			if s.curN == len(s.cur.b) { // full but incomplete: double it
				nb := getMsg(min(s.curLen, 2*len(s.cur.b)))
				copy(nb.b, s.cur.b)
				putMsg(s.cur)
				s.cur = nb
			}
			k := copy(s.cur.b[s.curN:], data)
			s.curN += k
			data = data[k:]
		}
		if s.curN == s.curLen {
			s.releaseResLocked()
			s.deliverLocked(s.cur)
			s.cur = nil
		}
	}
	return total - len(data), true
}

func (s *Stream) deliverLocked(mb *msgBuf) {
	s.ready.push(mb)
	s.readyBytes += cap(mb.b)
	s.holdLocked(cap(mb.b))
	s.st.rxMsgs++
	s.st.rxBytes += uint64(len(mb.b))
}

// updateLimitLocked recomputes the receive limit: the window holds
// RecvWindow bytes (at most the stream's share of the Mux's budget) of
// buffers for out-of-order fragments, fragments not parsed yet and unread
// messages (the message being reassembled is exempt), counted as whole
// chunks per fragment, of the largest size the sender used so far. What
// the window grows by beyond the initial one comes out of the budget not
// yet held or promised to other streams (see budget.go). The limit never
// moves back.
func (s *Stream) updateLimitLocked() {
	free := min(s.cfg.RecvWindow, s.windowCapLocked()) - s.chunkBytes - s.readyBytes
	lim := s.rcvNext
	if free > 0 {
		lim += uint64(free / s.rxChunk)
	}
	if lim > s.rcvLimit {
		if most := s.mostLimitLocked(); lim > most {
			lim = most
			s.freezeLocked()
		}
	}
	s.rcvLimit = max(s.rcvLimit, lim)
	s.repromiseLocked()
}

// sendAckLocked sends an ACK now: the cumulative sequence, up to
// maxAckRanges ranges of out-of-order fragments, and the window.
func (s *Stream) sendAckLocked() {
	_ = s.m.sendLocked(s.putAckLocked(s.m.tx)) // the next fragment or the sender's RTO asks again
}

// putAckLocked writes an ACK of everything received into b (at least
// maxAckFrameSize bytes) and returns its size. The ACK counts as sent:
// the delayed ACK is cancelled.
func (s *Stream) putAckLocked(b []byte) int {
	s.updateLimitLocked()
	var ranges [maxAckRanges]ackRange
	n, start := 0, -1
	for i := 0; i < s.ooo.len() && n < maxAckRanges; i++ {
		present := *s.ooo.at(i) != nil && (*s.ooo.at(i)).complete()
		switch {
		case present && start < 0:
			start = i
		case !present && start >= 0:
			ranges[n] = ackRange{uint32(start), uint32(i)}
			n++
			start = -1
		}
	}
	if start >= 0 && n < maxAckRanges {
		ranges[n] = ackRange{uint32(start), uint32(s.ooo.len())}
		n++
	}
	win := uint32(min(s.rcvLimit-s.rcvNext, math.MaxUint32))
	k := putAck(b, s.key^1, s.rcvNext, win, ranges[:n])
	s.advLimit = s.rcvLimit
	s.ackElicit = 0
	s.ackDue = 0
	return k
}

// onReadLocked runs after the reader took a message: if that opened the
// window by a quarter (or opened a closed one), queue a window update
// (see sendUpdatesLocked) instead of waiting for the sender's zero-window
// probe.
func (s *Stream) onReadLocked() {
	if s.unreliable || s.resetErr != nil || s.removed {
		return
	}
	old := s.advLimit
	s.updateLimitLocked()
	// Tell the sender when the window was closed, or when it opened by a
	// quarter while the sender is near the old limit. A sender far from
	// it (a short request, say) learns the new limit from the next ACK.
	step := uint64(max(1, s.cfg.RecvWindow/s.rxChunk/4))
	near := s.rcvNext+uint64(s.ooo.len())+initialWindowFragments/2 >= old
	if (near && s.rcvLimit >= old+step) || (old <= s.rcvNext && s.rcvLimit > old) {
		if n := len(s.m.updates); n == 0 || s.m.updates[n-1] != s {
			s.m.updates = append(s.m.updates, s) // the caller sends it
		}
	}
}

// partial is an unreliable message being reassembled.
type partial struct {
	id    uint64 // 0 when the slot is free
	count int
	got   int
	bytes int // capacity of frags' chunks, plus frags' own count pointers
	due   int64
	frags []*chunk
}

// ptrSize is the size of a pointer: what a slot of partial.frags costs.
const ptrSize = 4 << (^uintptr(0) >> 63)

// freePartialLocked empties the reassembly slot p of s. A fragment table
// larger than partialFragsKept goes with its message: its size was the
// peer's choice.
func (s *Stream) freePartialLocked(p *partial) {
	for i, c := range p.frags {
		if c != nil {
			putChunk(c)
			p.frags[i] = nil
		}
	}
	s.holdLocked(-p.bytes)
	p.frags = p.frags[:0]
	if cap(p.frags) > partialFragsKept {
		p.frags = nil
	}
	p.id, p.count, p.got, p.bytes, p.due = 0, 0, 0, 0, 0
}

// handleUnreliableDataLocked processes a fragment of an unreliable
// message: single-fragment messages are delivered at once, others wait in
// one of maxUnreliablePartials slots until complete or timed out.
func (s *Stream) handleUnreliableDataLocked(f *frame, now int64) {
	if s.resetErr != nil || s.peerFin {
		return
	}
	if len(f.Data) > jumboChunkSize {
		s.m.stats.malformed++
		return
	}
	id := f.Seq
	if id <= s.lastMsgID {
		s.st.stale++
		return
	}
	if f.FragCount == 1 {
		mb := getMsg(len(f.Data))
		copy(mb.b, f.Data)
		s.deliverUnreliableLocked(id, mb)
		return
	}
	var p *partial
	for i := range s.partials {
		if s.partials[i].id == id {
			p = &s.partials[i]
			break
		}
	}
	if p == nil {
		// Every fragment holds at least a small chunk and its slot in the
		// table until the message completes, all within RecvWindow: a
		// larger count never completes, and would only make the table
		// large.
		if int(f.FragCount)*(smallChunkSize+ptrSize) > s.cfg.RecvWindow {
			s.st.dropped++
			return
		}
		p = &s.partials[0] // a free slot, else the oldest message
		for i := range s.partials {
			q := &s.partials[i]
			if q.id == 0 {
				p = q
				break
			}
			if q.id < p.id {
				p = q
			}
		}
		if p.id != 0 {
			s.st.dropped++
			s.freePartialLocked(p)
		}
		p.id, p.count, p.due = id, int(f.FragCount), now+int64(s.m.cfg.ReassemblyTimeout)
		if cap(p.frags) < p.count {
			p.frags = make([]*chunk, p.count)
		}
		p.frags = p.frags[:p.count] // all nil: freePartialLocked clears them
		p.bytes = p.count * ptrSize
		s.holdLocked(p.bytes)
		s.m.armLocked(s, p.due)
	}
	i := int(f.FragIndex)
	if p.count != int(f.FragCount) || p.frags[i] != nil {
		s.st.dups++
		return
	}
	c := getChunk(len(f.Data))
	c.n = copy(c.b, f.Data)
	p.frags[i] = c
	p.got++
	p.bytes += cap(c.b)
	s.holdLocked(cap(c.b))
	held := 0
	for j := range s.partials {
		held += s.partials[j].bytes
	}
	if held > s.cfg.RecvWindow || s.m.held > s.m.cfg.RecvBudget {
		if held <= s.cfg.RecvWindow {
			s.m.stats.budgetDrops++
		}
		s.st.dropped++
		s.freePartialLocked(p)
		return
	}
	if p.got < p.count {
		return
	}
	total := 0
	for _, c := range p.frags {
		total += c.n
	}
	if total > s.cfg.MaxMessageSize {
		s.st.dropped++
		s.freePartialLocked(p)
		return
	}
	mb := getMsg(total)
	o := 0
	for _, c := range p.frags {
		o += copy(mb.b[o:], c.b[:c.n])
	}
	s.freePartialLocked(p)
	s.deliverUnreliableLocked(id, mb)
}

// deliverUnreliableLocked queues a complete unreliable message and drops
// every incomplete older one: nothing older than a delivered message is
// ever delivered.
func (s *Stream) deliverUnreliableLocked(id uint64, mb *msgBuf) {
	if s.ready.len() > 0 && (s.readyBytes+cap(mb.b) > s.cfg.RecvWindow || s.m.held+cap(mb.b) > s.m.cfg.RecvBudget) {
		if s.readyBytes+cap(mb.b) <= s.cfg.RecvWindow {
			s.m.stats.budgetDrops++
		}
		s.st.dropped++ // the reader is behind: drop, do not buffer
		putMsg(mb)
		return
	}
	s.lastMsgID = id
	s.deliverLocked(mb)
	for i := range s.partials {
		if p := &s.partials[i]; p.id != 0 && p.id < id {
			s.st.dropped++
			s.freePartialLocked(p)
		}
	}
	notify(s.readable)
}

// onTimerLocked runs s's due deadlines and returns its next one, or 0.
// A live stream the peer opened always has one, its idle deadline
// (unless IdleTimeout is disabled): reached with nothing received or
// sent since while the stream waits on the peer, it resets the stream
// with CodeIdle; otherwise the stream is filed again under the new one.
func (s *Stream) onTimerLocked(now int64) int64 {
	idle := int64(s.m.cfg.IdleTimeout)
	if s.key&1 == 0 || s.resetErr != nil {
		idle = 0 // streams we opened are the application's to bound
	}
	if idle > 0 && s.lastActive+idle <= now && s.waitsOnPeerLocked() {
		s.m.stats.idleResets++
		s.resetLocked(CodeIdle, false, now)
		idle = 0
	}
	if s.ackDue != 0 && s.ackDue <= now {
		s.sendAckLocked()
	}
	if s.lossDue != 0 && s.lossDue <= now {
		if s.detectLossLocked(s.sent, now); s.lost.len() > 0 {
			s.m.readyLocked(s)
		}
	}
	if s.rtoDeadline != 0 && s.rtoDeadline <= now {
		s.onRTOLocked(now)
	}
	if s.rstPending && s.rstDue <= now {
		if s.rstRetries >= maxResetRetries {
			s.rstPending = false
			s.notifyAll() // a Close waiting for the echo stops waiting
			s.maybeFinishLocked()
		} else {
			s.rstRetries++
			s.m.sendResetLocked(s.key, s.rstFlags, s.rstCode)
			s.rstDue = now + int64(min(s.m.rtt.rto()<<s.rstRetries, s.m.cfg.MaxRTO))
		}
	}
	for i := range s.partials {
		if p := &s.partials[i]; p.id != 0 && p.due <= now {
			s.st.dropped++
			s.freePartialLocked(p)
		}
	}
	var next int64
	if idle > 0 {
		next = s.lastActive + idle
		if next <= now { // idle but waiting on the application: look again later
			next = now + idle
		}
	}
	for _, d := range [...]int64{s.ackDue, s.rtoDeadline, s.lossDue} {
		if d != 0 && (next == 0 || d < next) {
			next = d
		}
	}
	if s.rstPending && (next == 0 || s.rstDue < next) {
		next = s.rstDue
	}
	for i := range s.partials {
		if p := &s.partials[i]; p.id != 0 && (next == 0 || p.due < next) {
			next = p.due
		}
	}
	return next
}

// waitsOnPeerLocked reports whether s waits for the peer: to end its
// side of the stream, or to acknowledge what was sent. A stream the peer
// ended and acknowledged waits only on the local application, which is
// left to bound it (an rpc handler taking longer than IdleTimeout to
// answer a request, say).
func (s *Stream) waitsOnPeerLocked() bool {
	if s.unreliable {
		return !s.peerFin || s.rstPending
	}
	return !s.peerFin || s.rcvNext <= s.peerFinSeq || s.una < s.nxt
}

// resetLocked ends the stream abruptly: it drops all buffers and tells the
// peer (retrying until echoed, for a local reset; echoing, for a remote
// one), then is forgotten.
func (s *Stream) resetLocked(code uint32, remote bool, now int64) {
	if s.resetErr != nil {
		return
	}
	s.resetErr = &ResetError{Code: code, Remote: remote}
	s.endLocked()
	s.releaseLocked()
	if remote {
		s.m.sendResetLocked(s.key, 0, code)
		s.echoed = true
	} else {
		s.sendRstLocked(0, code, now)
	}
	s.notifyAll()
	s.maybeFinishLocked()
}

// sendRstLocked sends a RESET (or, with flagGraceful, the end of an
// unreliable stream) and retries it until the peer echoes it.
func (s *Stream) sendRstLocked(flags uint8, code uint32, now int64) {
	s.rstPending, s.rstFlags, s.rstCode, s.rstRetries = true, flags, code, 0
	s.m.sendResetLocked(s.key, flags, code)
	s.rstDue = now + int64(s.m.rtt.rto())
	s.m.armLocked(s, s.rstDue)
}

// handleResetLocked processes a RESET from the peer: an echo of ours, a
// retransmission, or a new reset (or graceful end of an unreliable
// stream).
func (s *Stream) handleResetLocked(f *frame, now int64) {
	graceful := f.Flags&flagGraceful != 0 && s.unreliable
	switch {
	case s.rstPending: // the echo of our RESET, or the peer's crossing ours
		s.rstPending = false
		if graceful {
			s.peerFin = true
		} else if s.resetErr == nil {
			s.resetErr = &ResetError{Code: f.Code, Remote: true}
			s.endLocked()
			s.releaseLocked()
		}
		s.notifyAll()
		s.maybeFinishLocked()
	case s.resetErr != nil || s.peerFin && s.unreliable:
		if (s.resetErr != nil && s.resetErr.Remote) || s.resetErr == nil {
			s.m.sendResetLocked(s.key, f.Flags, f.Code) // our echo was lost
		}
	case graceful:
		s.peerFin = true
		s.m.sendResetLocked(s.key, f.Flags, f.Code)
		s.echoed = true
		s.notifyAll()
		s.maybeFinishLocked()
	default:
		s.resetLocked(f.Code, true, now)
	}
}

// maybeFinishLocked forgets the stream once it is done: both sides
// ended, or reset with no RESET awaiting its echo. The Mux takes over a
// pending delayed ACK.
func (s *Stream) maybeFinishLocked() {
	if s.removed {
		return
	}
	done := s.finished()
	if s.resetErr != nil {
		done = !s.rstPending
	}
	if !done {
		return
	}
	if s.ackDue != 0 && s.resetErr == nil {
		s.m.oweAckLocked(s)
		s.ackDue = 0
	}
	s.m.removeLocked(s)
}

// releaseLocked returns every buffer of a reset stream to its pool and its
// bytes in flight to the congestion controller.
func (s *Stream) releaseLocked() {
	for s.frags.len() > 0 {
		f := s.frags.pop()
		if f.inCC {
			s.m.cc.inFlight -= dataHeaderSize + f.n
		}
		if f.c != nil {
			putChunk(f.c)
		}
	}
	s.una = s.nxt
	s.sent = s.nxt
	s.m.freeSendLocked(s.buffered)
	s.inflight, s.probesOut, s.buffered, s.bufferedMsgs = 0, 0, 0, 0
	s.rtoDeadline, s.lossDue = 0, 0
	for s.lost.len() > 0 {
		s.lost.pop()
	}
	for s.ooo.len() > 0 {
		if c := s.ooo.pop(); c != nil {
			putChunk(c)
		}
	}
	for s.held.len() > 0 {
		putChunk(s.held.pop())
	}
	s.heldOff = 0
	for s.ready.len() > 0 {
		putMsg(s.ready.pop())
	}
	s.chunksLocked(-s.chunkBytes)
	s.holdLocked(-s.readyBytes)
	s.readyBytes = 0
	s.releaseResLocked()
	if s.cur != nil {
		putMsg(s.cur)
		s.cur = nil
	}
	for i := range s.partials {
		s.freePartialLocked(&s.partials[i])
	}
	s.ackDue = 0
	s.repromiseLocked()
}
