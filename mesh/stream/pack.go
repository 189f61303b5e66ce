package stream

// Packing. Small DATA frames of different streams that one flush sends
// go to the Link together, several stream frames in one frame body (the
// wire format allows any sequence of frames in a body), so a Mux whose
// held fragments go at once (cork.go), or whose many streams each send a
// request, pays for one packet rather than one each. A frame that fills
// more than half the path MTU goes alone, straight from its chunk.
//
// A packed frame is written into m.pack but changes no send state until
// the Link has taken the body: a body the Link refuses with back-pressure
// leaves every stream in it as it was, ready to send again, as a single
// frame refused does. (A stream's delayed ACK that rode in the body is
// lost with it; the peer's retransmission asks for it again.)

// packRef is one DATA frame in m.pack.
type packRef struct {
	s    *Stream
	seq  uint64
	retx bool
}

// packableLocked reports whether a DATA frame of size bytes goes in the
// pack rather than alone.
func (m *Mux) packableLocked(size int) bool { return 2*size <= m.pmtu.cur }

// packLocked writes the DATA frame nextFrameSizeLocked chose for s into
// the pack, with s's delayed ACK in front of it if it fits; the caller
// made sure the frame fits.
func (m *Mux) packLocked(s *Stream) {
	seq, retx := s.nextSeqLocked()
	f := s.frag(seq)
	if s.ackDue != 0 && len(m.pack)+maxAckFrameSize+dataHeaderSize+f.n <= m.pmtu.cur {
		n := s.putAckLocked(m.tx)
		m.pack = append(m.pack, m.tx[:n]...)
	}
	n := putDataHeader(m.tx, f.flags(), s.key^1, seq, f.n, 0, 0)
	m.pack = append(m.pack, m.tx[:n]...)
	if f.c != nil {
		m.pack = append(m.pack, f.c.b[:f.n]...)
	}
	m.packed = append(m.packed, packRef{s, seq, retx})
}

// packRoomLocked reports whether a DATA frame of size bytes still fits
// the pack.
func (m *Mux) packRoomLocked(size int) bool { return len(m.pack)+size <= m.pmtu.cur }

// sendPackLocked hands the pack to the Link, with the owed ACKs that fit,
// and commits its frames; their streams are ready again if they have
// more. It reports false when the Link refused it with back-pressure:
// then the streams are ready again and unchanged.
func (m *Mux) sendPackLocked(now int64) bool {
	if len(m.packed) == 0 {
		return true
	}
	body := m.pack
	if len(m.owed) > 0 { // they ride along in the scratch buffer
		body = m.tx[:m.appendOwedLocked(copy(m.tx, m.pack), m.pmtu.cur)]
	}
	err := m.link.SendFrame(body, nil)
	if isBackpressure(err) {
		m.linkBlockedLocked(now)
		m.unpackLocked()
		return false
	}
	for _, r := range m.packed {
		if err != nil {
			r.s.st.linkErrors++ // as good as lost: loss recovery resends it
		}
		r.s.sentLocked(r.seq, r.retx, now)
	}
	m.sentFrameLocked()
	m.unpackLocked()
	return true
}

// unpackLocked empties the pack, its frames sent or not, and makes their
// streams ready again if they have a frame to send.
func (m *Mux) unpackLocked() {
	for i, r := range m.packed {
		if _, more := r.s.nextFrameSizeLocked(); more {
			m.readyLocked(r.s)
		}
		m.packed[i] = packRef{}
	}
	m.packed = m.packed[:0]
	m.pack = m.pack[:0]
}
