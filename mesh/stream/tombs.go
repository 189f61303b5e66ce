package stream

// A Mux forgets a stream the moment it ends, so finished streams cost no
// memory, no timer work and no MaxStreams slot. The peer may still send
// frames for it: a resent FIN whose ACK was lost, or a resent RESET whose
// echo was lost. Tombstones remember how each forgotten stream ended, so
// such frames get the answer the live stream would have given.

// tombKind is how a forgotten stream ended.
type tombKind uint8

const (
	// tombNone: no tombstone; frames for the stream are stale.
	tombNone tombKind = iota
	// tombAck: a reliable stream that ended gracefully. A DATA frame is a
	// retransmission of something it received: acknowledge it.
	tombAck
	// tombEcho: a stream the peer ended with a RESET that we echoed. A
	// RESET is a retransmission (our echo was lost): echo it again. Only
	// one side of a stream ever echoes, so echoes never ping-pong.
	tombEcho
)

// tombs holds the tombstone bitmaps: bit i of ack (echo) is set when
// stream id i ended as tombAck (tombEcho). Ids map to bits by side, then
// id modulo tombWindow; an id's bits are cleared when the id comes into
// use, so a bit always refers to the latest id with that index.
type tombs struct {
	ack, echo []uint64
}

// tombBit returns the word and mask of key's bit.
func tombBit(key uint32) (int, uint64) {
	i := int(key&1)*tombWindow + int(key>>1)%tombWindow
	return i / 64, 1 << (i % 64)
}

// tombLocked returns how the forgotten stream key ended, as far as the
// window remembers.
func (m *Mux) tombLocked(key uint32) tombKind {
	if m.tombs.ack == nil || !m.inTombWindowLocked(key) {
		return tombNone
	}
	w, bit := tombBit(key)
	switch {
	case m.tombs.ack[w]&bit != 0:
		return tombAck
	case m.tombs.echo[w]&bit != 0:
		return tombEcho
	}
	return tombNone
}

// inTombWindowLocked reports whether key is one of the latest tombWindow
// keys of its side in use: the ones whose bits are theirs.
func (m *Mux) inTombWindowLocked(key uint32) bool {
	hi := m.nextLocal - 2 // the newest key we opened
	if key&1 == 1 {
		hi = m.highestPeer
	}
	return key <= hi && (hi-key)/2 < tombWindow
}

// buryLocked records how s, which the Mux is forgetting, ended.
func (m *Mux) buryLocked(s *Stream) {
	switch {
	case s.resetErr == nil && !s.unreliable:
		m.setTombLocked(s.key, tombAck)
	case s.echoed:
		m.setTombLocked(s.key, tombEcho)
	}
}

// setTombLocked records that the forgotten stream key ended as kind. A
// key older than the window gets no tombstone: its bits belong to a newer
// key.
func (m *Mux) setTombLocked(key uint32, kind tombKind) {
	if !m.inTombWindowLocked(key) {
		return
	}
	if m.tombs.ack == nil {
		m.tombs.ack = make([]uint64, 2*tombWindow/64)
		m.tombs.echo = make([]uint64, 2*tombWindow/64)
	}
	w, bit := tombBit(key)
	if kind == tombAck {
		m.tombs.ack[w] |= bit
	} else {
		m.tombs.echo[w] |= bit
	}
}

// clearTombLocked forgets the tombstone in key's bits: key is new.
func (m *Mux) clearTombLocked(key uint32) {
	if m.tombs.ack == nil {
		return
	}
	w, bit := tombBit(key)
	m.tombs.ack[w] &^= bit
	m.tombs.echo[w] &^= bit
}
