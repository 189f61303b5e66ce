package stream

// A stream may finish while its delayed ACK is pending: the last frame
// it received was the peer's FIN, say, as when a reply ends an rpc call.
// The Mux forgets the stream at once and keeps the ACK it owes. Owed ACKs
// ride on the next frames the Mux sends for any stream (a caller's next
// request acknowledges the previous reply), or go out together, packed
// into as few packets as possible, when the first of them falls due. A
// lost owed ACK costs the peer one retransmission, which the stream's
// tombstone acknowledges.

// owedAck is the ACK a forgotten stream owes: everything below cum.
type owedAck struct {
	wireID uint32
	cum    uint64
}

// oweAckLocked takes over s's pending delayed ACK; s is being forgotten.
func (m *Mux) oweAckLocked(s *Stream) {
	m.owed = append(m.owed, owedAck{s.key ^ 1, s.rcvNext})
	if len(m.owed) >= owedAckLimit {
		m.flushOwedLocked()
		return
	}
	if m.owedDue == 0 || s.ackDue < m.owedDue {
		m.owedDue = s.ackDue
		m.armMuxLocked(m.owedDue)
	}
}

// sendLocked sends the first n bytes of m.tx as one frame body, after
// appending the owed ACKs that fit in the current frame budget.
func (m *Mux) sendLocked(n int) error {
	n = m.appendOwedLocked(n, m.pmtu.cur)
	return m.link.SendFrame(m.tx[:n], nil)
}

// appendOwedLocked appends owed ACKs to m.tx[:n] while m.tx[:n] stays
// within limit bytes, and returns the new length.
func (m *Mux) appendOwedLocked(n, limit int) int {
	k := 0
	for ; k < len(m.owed) && n+ackHeaderSize <= limit; k++ {
		n += putAck(m.tx[n:], m.owed[k].wireID, m.owed[k].cum, 0, nil)
	}
	if k > 0 {
		rest := copy(m.owed, m.owed[k:])
		clear(m.owed[rest:])
		m.owed = m.owed[:rest]
		if rest == 0 {
			m.owedDue = 0
		}
	}
	return n
}

// flushOwedLocked sends every owed ACK now.
func (m *Mux) flushOwedLocked() {
	for len(m.owed) > 0 {
		_ = m.link.SendFrame(m.tx[:m.appendOwedLocked(0, m.pmtu.cur)], nil) // a lost ACK is resent by the peer's RTO
	}
	m.owedDue = 0
}
