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
//     initial window), so the windows together stay near the budget.
//   - Reassembly: a message's length is reserved all or nothing when its
//     prefix arrives. A reservation that fits (or finds the Mux holding
//     nothing) may always complete: its window keeps opening even at the
//     budget, and its out-of-order fragments within the window are kept,
//     so messages that each hold part of the budget never block one
//     another (reservations alone can fill the budget exactly; dropping
//     their out-of-order fragments turned every loss into a timeout). One
//     that does not fit waits, first come first served, with its stream's
//     window frozen, until readers free the memory; then the Mux admits
//     it and sends the stream a window update.
//   - At the budget, other windows stop opening (and reopen with a window
//     update when memory frees); streams whose unread messages are tiny
//     parse no further ones from their fragments (see mayParseLocked);
//     out-of-order fragments of streams without an admitted reservation,
//     unreliable fragments and unreliable messages are dropped (counted
//     in BudgetDrops; reliable ones are resent). New streams are still
//     accepted, with the initial window their sender may use before its
//     first ACK.
//
// A node's memory for one peer's streams is thus about RecvBudget, plus
// the windows granted before the budget filled or to admitted
// reservations (each at most a share), plus up to MaxStreams initial
// windows (32 fragments' chunks: 48 KiB, 288 KiB of jumbo fragments) and
// one unread message each. Only a reader that stops reading while its
// peer waits for memory can stall (as with any connection-level flow
// control); read streams concurrently.

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
		if s.res > 0 && !s.resOK && !s.removed && s.resetErr == nil {
			if m.held > 0 && m.held+s.res > m.cfg.RecvBudget {
				break
			}
			m.held += s.res
			s.resOK = true
			m.updates = append(m.updates, s) // the window reopens
		}
		m.waiting[0] = nil
		m.waiting = m.waiting[1:]
	}
	if len(m.frozen) > 0 && m.held < m.cfg.RecvBudget {
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
	for i, s := range m.updates { // sending never queues more
		if s.removed || s.resetErr != nil {
			continue
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
		if !s.frozen {
			s.frozen = true
			m.frozen = append(m.frozen, s)
		}
		return 0
	}
	return max(m.cfg.RecvBudget/max(len(m.streams), 1), initialWindowFragments*chunkSize)
}

// reserveLocked reserves the budget for a message of n bytes entering
// reassembly, or queues the reservation until it fits.
func (s *Stream) reserveLocked(n int) {
	m := s.m
	s.res = n
	s.resOK = s.removed || m.held == 0 || m.held+n <= m.cfg.RecvBudget
	if s.resOK {
		s.holdLocked(n)
	} else {
		m.waiting = append(m.waiting, s)
	}
}

// releaseResLocked ends s's reservation: its message was delivered or
// dropped.
func (s *Stream) releaseResLocked() {
	if s.resOK {
		s.holdLocked(-s.res)
	}
	s.res, s.resOK = 0, false
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
