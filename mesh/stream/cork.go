package stream

// Autocorking. A small frame sent while the Mux's previous frame still
// waits in the Link's queue would go out as a packet of its own right
// behind it; held back instead, it goes when the Link has written the
// frame before it (the Link calls Uncork), packed with the other streams'
// frames held meanwhile (pack.go), and a stream's partly filled fragment
// takes the messages sent meanwhile. Like TCP autocorking, and unlike
// Nagle's algorithm, this never waits on the network: an idle Link sends
// at once, so a request and its reply are never delayed, and a frame
// held waits only for the frames queued before it. Only a stream's last
// new fragment is ever held, while it can still grow or is small enough
// to pack; retransmissions, ACKs and whole fragments are not, and a held
// fragment goes after MaxAckDelay whatever the Link says.

// A CorkLink is a Link that queues frames for a writer before they reach
// the network and tells the Mux when it has written them; with one, the
// Mux autocorks.
type CorkLink interface {
	Link
	// Queued is how many frames SendFrame has queued so far: read right
	// after SendFrame, the ticket of the frame it queued.
	Queued() uint64
	// Pending reports whether the frame with ticket t is still queued;
	// if so, the Link calls Mux.Uncork (not from within a Mux call) once
	// it has written a frame after this call.
	Pending(t uint64) bool
}

// sentFrameLocked notes the ticket of the DATA frame just given to the
// Link.
func (m *Mux) sentFrameLocked() {
	if m.cork != nil {
		m.txTicket = m.cork.Queued()
	}
}

// corkedLocked reports whether the next fragment of s, size bytes with
// its header, which the scheduler is about to send, should wait for the
// Link (see above).
func (m *Mux) corkedLocked(s *Stream, size int, now int64) bool {
	if m.cork == nil || m.txTicket == 0 || s.lost.len() > 0 || s.sent+1 != s.nxt {
		return false
	}
	if s.tailRoomLocked() == 0 && !m.packableLocked(size) {
		return false // whole, or a FIN too large to pack: it goes alone now
	}
	if m.corkSince != 0 && now-m.corkSince >= int64(m.cfg.MaxAckDelay) {
		return false
	}
	return m.cork.Pending(m.txTicket)
}

// corkLocked holds s back until Uncork or MaxAckDelay.
func (m *Mux) corkLocked(s *Stream, now int64) {
	if !s.inCorked {
		m.stats.corked++
		s.inCorked = true
		m.corked = append(m.corked, s)
	}
	if m.corkSince == 0 {
		m.corkSince = now
		m.armMuxLocked(now + int64(m.cfg.MaxAckDelay))
	}
}

// Uncork sends the fragments held back for the Link: a CorkLink calls it
// when it has written the frames queued before them. It never waits for
// the Mux, whose lock another goroutine may hold for a while, so a Link's
// writer serving many Muxes does not wait on one: when the Mux is busy,
// its next flush sends them, or the timer goroutine, woken here.
func (m *Mux) Uncork() {
	m.uncork.Store(true)
	if !m.mu.TryLock() {
		select {
		case m.wake <- struct{}{}:
		default:
		}
		return
	}
	defer m.mu.Unlock()
	if !m.closed {
		m.flushLocked(m.now())
	}
}

// releaseCorkedLocked makes the held streams ready again.
func (m *Mux) releaseCorkedLocked() {
	for i, s := range m.corked {
		s.inCorked = false
		m.readyLocked(s)
		m.corked[i] = nil
	}
	m.corked = m.corked[:0]
}

// corkTimerLocked releases the held streams once MaxAckDelay passed
// since the first was held (the flush that follows sends them, not
// holding again), and returns when it is due otherwise, or 0.
func (m *Mux) corkTimerLocked(now int64) int64 {
	if m.corkSince == 0 {
		return 0
	}
	due := m.corkSince + int64(m.cfg.MaxAckDelay)
	if now < due {
		return due
	}
	m.releaseCorkedLocked()
	return 0
}
