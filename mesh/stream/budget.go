package stream

// The receive budget. Each stream's window bounds what one stream holds;
// MuxConfig.RecvBudget bounds what all the streams of a Mux hold together
// for the application: out-of-order fragments, unread messages, messages
// being reassembled and unreliable fragments. Mux.held counts those bytes
// (buffer capacities; a message in reassembly counts its whole length,
// reserved when its length prefix arrives).
//
//   - Windows: a stream's advertised window is at most its share of the
//     budget, RecvBudget divided among the open streams (never below the
//     initial window). What a window grows by beyond the initial one is
//     promised (Mux.promised: window the peer may still fill), and is
//     granted only from the budget neither held nor promised: the windows
//     never promise more than the budget, however the peer times the
//     opening of its streams.
//   - Reassembly: a message's length is reserved all or nothing when its
//     prefix arrives. A reservation that fits (or finds the Mux holding
//     nothing else) may always complete: its window keeps opening even at
//     the budget for the fragments still to come, which the reservation
//     pays for, and its out-of-order fragments within the window are kept,
//     so messages that each hold part of the budget never block one
//     another (reservations alone can fill the budget exactly; dropping
//     their out-of-order fragments turned every loss into a timeout). One
//     that does not fit waits, first come first served, with its stream's
//     window frozen and its message not assembled: what arrives waits in
//     its chunks, counted and parked (Mux.parked), until readers free the
//     memory; then the Mux admits it, assembles it from the chunks and
//     sends the stream a window update. Parked chunks do not count
//     against admission: a waiting message cannot give them back before it
//     is admitted.
//   - At the budget, other windows stop opening (and reopen with a window
//     update when memory frees); streams whose unread messages are tiny
//     parse no further ones from their fragments (see mayParseLocked);
//     out-of-order fragments of streams without an admitted reservation,
//     unreliable fragments and unreliable messages are dropped (counted
//     in BudgetDrops; reliable ones are resent). New streams are still
//     accepted, with the initial window their sender may use before its
//     first ACK.
//
// A node's memory for one peer's streams is thus RecvBudget (held and
// promised), plus the out-of-order fragments of admitted messages (at
// most their reservations' size in chunks), plus up to MaxStreams initial
// windows (32 fragments' chunks: 48 KiB, 288 KiB of jumbo fragments);
// docs/STREAMS.md has the formula. Only a reader that stops reading while
// its peer waits for memory can stall (as with any connection-level flow
// control); read streams concurrently.

// chunksLocked adds delta bytes of chunk capacity to s, which the budget
// counts; while s's reservation waits, they are parked (see below).
func (s *Stream) chunksLocked(delta int) {
	s.chunkBytes += delta
	if s.waitingLocked() && !s.removed {
		s.m.parked += delta
	}
	s.holdLocked(delta)
}

// waitingLocked reports whether s's reservation waits for the budget.
func (s *Stream) waitingLocked() bool { return s.res > 0 && !s.resOK }

// admitsLocked reports whether the budget takes a reservation of n more
// bytes, own bytes of the stream's chunks aside (parsing turns them into
// the reservation's message): when the Mux holds nothing else that is not
// parked, or the reservation fits. Parked bytes, the chunks of messages
// whose reservations wait, do not count here: they are a waiting
// message's, which cannot shrink until admitted, so counting them could
// leave every waiting message waiting for the others for ever.
func (m *Mux) admitsLocked(n, own int) bool {
	others := m.held - m.parked - own
	return others <= 0 || others+n <= m.cfg.RecvBudget
}

// holdLocked adds delta bytes to what s holds of the budget. A stream
// the Mux forgot holds nothing: what it delivered and the application has
// not read yet belongs to the Stream value.
func (s *Stream) holdLocked(delta int) {
	if !s.removed {
		s.m.holdLocked(delta)
	}
}

// holdLocked adds delta bytes to the Mux's held total. When that frees
// memory, waiting reservations are admitted and streams frozen at the
// budget are queued for a window update, which sendUpdatesLocked sends
// once the operation that freed the memory is complete: the stream that
// freed it may be one of them, with its state half updated (an ACK built
// then could acknowledge what never arrived).
func (m *Mux) holdLocked(delta int) {
	m.held += delta
	if delta >= 0 {
		return
	}
	for len(m.waiting) > 0 {
		s := m.waiting[0]
		if s.waitingLocked() && !s.removed && s.resetErr == nil {
			if !m.admitsLocked(s.res, 0) {
				break
			}
			m.held += s.res
			m.parked -= s.chunkBytes
			s.resOK = true
			s.repromiseLocked()
			m.updates = append(m.updates, s) // the window reopens and parsing resumes
		}
		m.waiting[0] = nil
		m.waiting = m.waiting[1:]
	}
	m.thawLocked()
}

// thawLocked queues the streams frozen at the budget for a window update
// when the budget is no longer all held or promised.
func (m *Mux) thawLocked() {
	if len(m.frozen) > 0 && m.held+m.promised < m.cfg.RecvBudget {
		for _, s := range m.frozen {
			s.frozen = false
		}
		m.updates = append(m.updates, m.frozen...)
		clear(m.frozen)
		m.frozen = m.frozen[:0]
	}
}

// sendUpdatesLocked sends the window updates queued by holdLocked and
// onReadLocked. Every operation that may free memory or open a window
// calls it before releasing the lock. A window update is what a stalled
// sender waits for, so one the Link refuses with back-pressure is kept
// and retried after LinkRetry with the Mux's other frames, not dropped
// like an ordinary ACK (whose loss the next fragment repairs).
func (m *Mux) sendUpdatesLocked() {
	for i := 0; i < len(m.updates); i++ { // parsing may queue more
		s := m.updates[i]
		if s.removed || s.resetErr != nil {
			continue
		}
		if s.held.len() > 0 && s.resOK && s.cur == nil && !s.resumeLocked() {
			continue // reset
		}
		if err := m.sendLocked(s.putAckLocked(m.tx)); isBackpressure(err) {
			n := copy(m.updates, m.updates[i:])
			clear(m.updates[n:])
			m.updates = m.updates[:n]
			m.linkBlockedLocked(m.now())
			return
		}
	}
	clear(m.updates)
	m.updates = m.updates[:0]
}

// resumeLocked parses on the fragments of a stream whose reservation was
// admitted, and reports whether the stream is still live.
func (s *Stream) resumeLocked() bool {
	delivered := s.ready.len()
	if !s.parseLocked(s.m.now()) {
		return false
	}
	if s.ready.len() > delivered {
		notify(s.readable)
	}
	return true
}

// overBudgetLocked reports whether the Mux holds its whole budget.
func (m *Mux) overBudgetLocked() bool { return m.held >= m.cfg.RecvBudget }

// windowCapLocked is the most receive-window bytes s may use: its share of
// the budget, or none while its reservation waits or the budget is full
// (see above).
func (s *Stream) windowCapLocked() int {
	m := s.m
	switch {
	case s.res > 0 && !s.resOK:
		return 0 // admitted later, with a window update
	case m.overBudgetLocked() && !s.resOK:
		s.freezeLocked()
		return 0
	}
	return max(m.cfg.RecvBudget/max(len(m.streams), 1), initialWindowFragments*chunkSize)
}

// freezeLocked queues s for a window update when memory frees.
func (s *Stream) freezeLocked() {
	if !s.frozen {
		s.frozen = true
		s.m.frozen = append(s.m.frozen, s)
	}
}

// reservedLocked is how many bytes of s's admitted reservation are still
// to come: the budget counts them already, so a window that carries them
// promises nothing more, and may open whatever the budget holds.
func (s *Stream) reservedLocked() int {
	if !s.resOK {
		return 0
	}
	return s.res - s.curN
}

// windowFragsLocked is how many fragments n bytes of s's messages take,
// at the largest payload the sender has used (at least 1).
func (s *Stream) windowFragsLocked(n int) uint64 {
	p := max(s.rxPayload, 1)
	return uint64((n + p - 1) / p)
}

// mostLimitLocked is the highest receive limit s may advertise: the
// initial window, plus the fragments of its admitted reservation still
// to come, plus what the budget neither holds nor has promised to other
// streams.
func (s *Stream) mostLimitLocked() uint64 {
	m := s.m
	pool := m.cfg.RecvBudget - m.held - (m.promised - s.promised)
	return max(s.rcvNext, initialWindowFragments) + s.windowFragsLocked(s.reservedLocked()) + uint64(max(pool, 0)/s.rxChunk)
}

// repromiseLocked recomputes what s's window promises: the chunks of the
// fragments it still takes beyond the initial window, less those its
// admitted reservation carries, which the budget counts already. A
// stream that ended or whose peer ended its side promises nothing.
func (s *Stream) repromiseLocked() {
	p := 0
	if !s.unreliable && !s.removed && s.resetErr == nil && !s.peerFin {
		if base := max(s.rcvNext, initialWindowFragments) + s.windowFragsLocked(s.reservedLocked()); s.rcvLimit > base {
			p = int(s.rcvLimit-base) * s.rxChunk
		}
	}
	m := s.m
	m.promised += p - s.promised
	freed := p < s.promised
	s.promised = p
	if freed && (s.removed || s.resetErr != nil || s.peerFin) {
		m.thawLocked() // the promise went with the stream
	}
}

// reserveLocked reserves the budget for a message of n bytes entering
// reassembly, or queues the reservation until it fits.
func (s *Stream) reserveLocked(n int) {
	m := s.m
	if n == 0 {
		return // nothing to hold
	}
	s.res = n
	s.resOK = s.removed || m.admitsLocked(n, s.chunkBytes)
	if s.resOK {
		s.holdLocked(n)
		s.repromiseLocked()
	} else {
		m.parked += s.chunkBytes
		m.waiting = append(m.waiting, s)
	}
}

// releaseResLocked ends s's reservation: its message was delivered or
// dropped.
func (s *Stream) releaseResLocked() {
	res, ok := s.res, s.resOK
	if s.waitingLocked() && !s.removed {
		s.m.parked -= s.chunkBytes
	}
	s.res, s.resOK = 0, false
	s.repromiseLocked() // what the window carries beyond the message is a promise again
	if ok {
		s.holdLocked(-res)
	}
}

// rxHeldLocked is what s holds of the budget.
func (s *Stream) rxHeldLocked() int {
	n := s.chunkBytes + s.readyBytes
	if s.resOK {
		n += s.res
	}
	for i := range s.partials {
		n += s.partials[i].bytes
	}
	return n
}
