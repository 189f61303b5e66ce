package stream

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// frag returns the fragment with sequence seq (una ≤ seq < nxt).
func (s *Stream) frag(seq uint64) *sendFrag { return s.frags.at(int(seq - s.una)) }

// tailRoomLocked is how many bytes the last fragment still takes: only a
// fragment never transmitted grows.
func (s *Stream) tailRoomLocked() int {
	if s.sent == s.nxt {
		return 0
	}
	f := s.frags.at(s.frags.len() - 1)
	if f.fin || f.c == nil {
		return 0
	}
	return max(0, min(cap(f.c.b), s.fragCapLocked())-f.n)
}

// smallChunkLocked reports whether rest bytes, the rest of a message, go
// in a new small chunk: a small message does, unless the stream is
// corked, when the messages behind it join its fragment (cork.go) and
// fill a whole one.
func (s *Stream) smallChunkLocked(rest int) bool {
	return rest <= min(smallChunkSize, s.fragCapLocked()) && !s.inCorked
}

// chargeLocked is what appending n bytes charges the send window: the
// capacity of the chunks it takes, as appendLocked allocates them.
func (s *Stream) chargeLocked(n int) int {
	rest := n - min(n, s.tailRoomLocked())
	fc := s.fragCapLocked()
	switch {
	case rest == 0:
		return 0
	case s.smallChunkLocked(rest):
		return smallChunkSize
	}
	return (rest + fc - 1) / fc * chunkCap(fc)
}

// fitsLocked reports whether an n-byte message fits the send window and
// the Mux's send budget. An empty window takes any message that fits the
// budget, and an empty Mux any message, so a message larger than the
// window or the budget still goes through, alone. A stream refused for
// the budget joins the queue of those woken when it frees if wait is set.
func (s *Stream) fitsLocked(n int, wait bool) bool {
	m := s.m
	charge := s.chargeLocked(n + uvarintLen(n))
	if m.sendHeld > 0 && m.sendHeld+charge > m.cfg.SendBudget {
		m.stats.sendBudgetFull++
		if wait {
			if s.budgetNeed == 0 {
				m.blocked = append(m.blocked, s)
			}
			s.budgetNeed = charge
		}
		return false
	}
	if s.buffered == 0 {
		return true
	}
	if s.cfg.SendWindowMessages > 0 && s.bufferedMsgs >= s.cfg.SendWindowMessages {
		return false
	}
	return s.buffered+charge <= s.cfg.SendWindow
}

// leaveBudgetQueue takes s out of the queue of streams waiting for send
// budget: its SendBlocking returned.
func (s *Stream) leaveBudgetQueue() {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.budgetNeed == 0 {
		return
	}
	s.budgetNeed = 0
	if i := slices.Index(m.blocked, s); i >= 0 {
		m.blocked = slices.Delete(m.blocked, i, i+1)
	}
}

// freeSendLocked returns n bytes of send buffers to the Mux's send
// budget and wakes, first come first served, the streams refused for it
// whose messages now fit (the first one at least, once the Mux holds
// nothing): waking them all on every ACK would only make most of them
// fail again.
func (m *Mux) freeSendLocked(n int) {
	m.sendHeld -= n
	if n == 0 || len(m.blocked) == 0 {
		return
	}
	room, k := m.cfg.SendBudget-m.sendHeld, 0
	for _, s := range m.blocked {
		if s.budgetNeed > room && !(k == 0 && m.sendHeld == 0) {
			break
		}
		room -= s.budgetNeed
		s.budgetNeed = 0
		notify(s.writable) // a stream reset meanwhile fails its Send at once
		k++
	}
	if k > 0 {
		rest := copy(m.blocked, m.blocked[k:])
		clear(m.blocked[rest:])
		m.blocked = m.blocked[:rest]
	}
}

func uvarintLen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n))
}

// appendMsgLocked copies one message, behind its uvarint length prefix,
// into the fragments. Messages share fragments: a small message joins the
// previous one's fragment while that has not been transmitted.
func (s *Stream) appendMsgLocked(msg []byte) {
	var pre [binary.MaxVarintLen64]byte
	pn := binary.PutUvarint(pre[:], uint64(len(msg)))
	s.appendLocked(pre[:pn], pn+len(msg))
	s.appendLocked(msg, len(msg))
	s.frags.at(s.frags.len()-1).ends++
	s.bufferedMsgs++
	s.st.txMsgs++
	s.st.txBytes += uint64(len(msg))
}

// appendLocked copies p into the fragments; rest is the bytes of the
// message from p on, which picks the size class of new chunks.
func (s *Stream) appendLocked(p []byte, rest int) {
	for len(p) > 0 {
		room := s.tailRoomLocked()
		if room == 0 {
			var c *chunk
			if s.smallChunkLocked(rest) {
				c = getChunk(rest)
			} else {
				c = getChunk(s.fragCapLocked())
			}
			s.frags.push(sendFrag{c: c, charge: cap(c.b)})
			s.nxt++
			s.buffered += cap(c.b)
			s.m.sendHeld += cap(c.b)
			continue
		}
		f := s.frags.at(s.frags.len() - 1)
		n := copy(f.c.b[f.n:f.n+room], p)
		f.n += n
		p = p[n:]
		rest -= n
	}
}

// appendFinLocked marks the end of the send side: on the last fragment if
// it was never transmitted, else on a new empty fragment.
func (s *Stream) appendFinLocked() {
	if s.sent < s.nxt {
		if f := s.frags.at(s.frags.len() - 1); !f.fin {
			f.fin = true
			s.finSeq, s.finQueued = s.nxt-1, true
			return
		}
	}
	s.frags.push(sendFrag{fin: true})
	s.nxt++
	s.finSeq, s.finQueued = s.nxt-1, true
}

// nextFrameSizeLocked returns the frame size of the next fragment s would
// send, and whether there is one: retransmissions first, then new
// fragments within the peer's window.
func (s *Stream) nextFrameSizeLocked() (int, bool) {
	if s.resetErr != nil || s.unreliable {
		return 0, false
	}
	for s.lost.len() > 0 {
		seq := *s.lost.at(0)
		if seq >= s.una {
			if f := s.frag(seq); f.state == fragLost {
				return dataHeaderSize + f.n, true
			}
		}
		s.lost.pop() // acknowledged after all
	}
	if s.sent < s.nxt && (s.sent < s.peerLimit || s.probe) {
		return dataHeaderSize + s.frag(s.sent).n, true
	}
	return 0, false
}

// sendOneLocked transmits the fragment nextFrameSizeLocked chose, alone
// (see pack.go for the others). It returns an error only for Link
// back-pressure, when nothing changed.
func (s *Stream) sendOneLocked(now int64) error {
	seq, retx := s.nextSeqLocked()
	if err := s.transmitLocked(s.frag(seq), seq); err != nil {
		if isBackpressure(err) {
			return err
		}
		s.st.linkErrors++ // as good as lost: loss recovery resends it
	}
	s.m.sentFrameLocked()
	s.sentLocked(seq, retx, now)
	return nil
}

// nextSeqLocked is the fragment nextFrameSizeLocked chose: the first lost
// one (retx), else the first never sent.
func (s *Stream) nextSeqLocked() (seq uint64, retx bool) {
	if s.lost.len() > 0 {
		return *s.lost.at(0), true
	}
	return s.sent, false
}

// flags are the DATA flags of f's frame.
func (f *sendFrag) flags() uint8 {
	if f.fin {
		return flagFin
	}
	return 0
}

// sentLocked records that fragment seq (a retransmission if retx) went
// to the Link.
func (s *Stream) sentLocked(seq uint64, retx bool, now int64) {
	m := s.m
	f := s.frag(seq)
	if retx {
		s.lost.pop()
		f.retx = true
		s.st.retransmits++
	} else {
		s.sent++
		s.probe = false
	}
	f.state = fragInflight
	f.probe = seq >= s.peerLimit
	if f.probe {
		s.probesOut++
	}
	f.sentAt = now
	f.txNum = s.txCount
	s.txCount++
	s.inflight++
	f.inCC = true
	m.cc.onSent(dataHeaderSize + f.n)
	if s.rtoDeadline == 0 {
		s.rtoDeadline = now + int64(s.rtoLocked())
		m.armLocked(s, s.rtoDeadline)
	}
}

// transmitLocked sends fragment seq in one DATA frame, or, when it was
// cut for a larger path MTU than the current one, in block-aligned split
// parts that fit. The payload goes to the Link straight from its chunk;
// ACKs that ride along (the stream's delayed ACK, so a reply carries the
// ACK of its request, and owed ACKs) go in front of the DATA frame. Only
// the first frame's error matters: a part lost later makes the fragment
// lost, which loss recovery handles.
func (s *Stream) transmitLocked(f *sendFrag, seq uint64) error {
	m := s.m
	flags := f.flags()
	var data []byte
	if f.c != nil {
		data = f.c.b[:f.n]
	}
	if dataHeaderSize+f.n <= m.pmtu.cur {
		limit := m.pmtu.cur - dataHeaderSize - f.n
		n := 0
		if s.ackDue != 0 && maxAckFrameSize <= limit {
			n = s.putAckLocked(m.tx)
		}
		n = m.appendOwedLocked(n, limit)
		n += putDataHeader(m.tx[n:], flags, s.key^1, seq, f.n, 0, 0)
		return m.link.SendFrame(m.tx[:n], data)
	}
	s.st.splits++
	step := (m.pmtu.cur - unreliableDataHeaderSize) / splitBlock * splitBlock
	for off := 0; off < f.n; off += step {
		end := min(off+step, f.n)
		h := putDataHeader(m.tx, flags|flagSplit, s.key^1, seq, end-off, uint16(off), uint16(f.n))
		if err := m.link.SendFrame(m.tx[:h], data[off:end]); err != nil && off == 0 {
			return err
		}
	}
	return nil
}

// rtoLocked is the current retransmission timeout with back-off; for a
// stream that only probes a closed window, the zero-window probe's timer,
// which is at least zeroWindowProbeMin.
func (s *Stream) rtoLocked() time.Duration {
	rto := s.m.rtt.rto()
	if s.inflight == s.probesOut && s.sent >= s.peerLimit {
		rto = max(rto, zeroWindowProbeMin)
	}
	return min(rto<<min(s.rtoBackoff, 16), s.m.cfg.MaxRTO)
}

// handleAckLocked processes an ACK for the send side: frees acknowledged
// fragments, samples the RTT, detects losses by packet threshold, and
// opens the peer's window.
func (s *Stream) handleAckLocked(f *frame, now int64) {
	m := s.m
	if s.unreliable || s.resetErr != nil {
		return
	}
	cum := f.Seq
	if cum > s.sent {
		m.stats.malformed++ // acknowledges data never sent
		return
	}
	if lim := cum + uint64(f.Window); lim > s.peerLimit {
		s.peerLimit = lim
	}
	prevLargest := s.largestAckedTx
	var best *sendFrag // newly acked fragment with the largest transmission number
	newly := false
	ackOne := func(seq uint64) {
		fr := s.frag(seq)
		switch fr.state {
		case fragInflight:
			if fr.inCC {
				fr.inCC = false
				m.cc.onAcked(dataHeaderSize+fr.n, fr.sentAt)
			}
			if fr.probe {
				s.probesOut--
			} else {
				m.ackedSentMax = max(m.ackedSentMax, fr.sentAt)
				if m.pmtu.suspect && fr.sentAt >= m.pmtu.suspectAt && m.largeLocked(fr) {
					m.pmtu.suspect = false // large frames get through: no black hole
				}
			}
			s.inflight--
		case fragLost:
		default:
			return
		}
		fr.state = fragAcked
		newly = true
		if best == nil || fr.txNum > best.txNum {
			best = fr
		}
	}
	for seq := s.una; seq < cum; seq++ {
		ackOne(seq)
	}
	high := cum
	for _, r := range f.Ranges[:f.NRanges] {
		lo, hi := max(cum+uint64(r.Start), s.una), min(cum+uint64(r.End), s.sent)
		for seq := lo; seq < hi; seq++ {
			ackOne(seq)
		}
		high = max(high, hi)
	}
	if best != nil && best.txNum+1 > prevLargest {
		s.largestAckedTx = best.txNum + 1
		if !best.retx {
			m.rtt.sample(time.Duration(now - best.sentAt))
		}
	}
	popped, freed := false, 0
	for s.frags.len() > 0 && s.frags.at(0).state == fragAcked {
		fr := s.frags.pop()
		if fr.c != nil {
			putChunk(fr.c)
		}
		freed += fr.charge
		s.buffered -= fr.charge
		s.bufferedMsgs -= fr.ends
		if fr.fin {
			s.finAcked = true
		}
		s.una++
		popped = true
	}
	m.freeSendLocked(freed)
	if s.largestAckedTx > prevLargest {
		s.detectLossLocked(high, now)
	}
	if newly {
		s.rtoBackoff = 0
		s.rtoDeadline = 0
		if s.inflight > 0 {
			s.rtoDeadline = now + int64(s.rtoLocked())
			m.armLocked(s, s.rtoDeadline)
		}
	}
	s.releaseProbesLocked()
	s.armPersistLocked(now)
	if popped {
		notify(s.writable)
		if s.finAcked {
			s.maybeFinishLocked()
		}
	}
	if _, ok := s.nextFrameSizeLocked(); ok {
		m.readyLocked(s)
	}
}

// detectLossLocked declares lost the fragments in flight below high that
// were sent before the latest transmission acknowledged (RFC 9002 §6.1):
// once packetThreshold later transmissions were acknowledged, or once
// they are lossDelay old. For the others it arms the loss timer, when the
// youngest of them comes of age, so that a tail (or a stream with one or
// two fragments in flight among many streams) is not left to the
// retransmission timeout.
func (s *Stream) detectLossLocked(high uint64, now int64) {
	m := s.m
	delay := int64(m.rtt.lossDelay())
	s.lossDue = 0
	for seq := s.una; seq < high && seq < s.sent; seq++ {
		fr := s.frag(seq)
		if fr.state != fragInflight || fr.txNum+1 >= s.largestAckedTx {
			continue
		}
		if fr.txNum+packetThreshold < s.largestAckedTx || fr.sentAt+delay <= now {
			s.markLostLocked(seq, fr, now)
		} else if due := fr.sentAt + delay; s.lossDue == 0 || due < s.lossDue {
			s.lossDue = due
		}
	}
	if s.lossDue != 0 {
		m.armLocked(s, s.lossDue)
	}
}

// armPersistLocked arms the zero-window probe: with nothing in flight and
// data held back only by the peer's window, a lost window update would
// stall the stream forever, so the RTO timer sends one fragment anyway.
func (s *Stream) armPersistLocked(now int64) {
	if s.inflight == 0 && s.sent < s.nxt && s.sent >= s.peerLimit && s.rtoDeadline == 0 {
		s.rtoDeadline = now + int64(s.rtoLocked())
		s.m.armLocked(s, s.rtoDeadline)
	}
}

// releaseProbesLocked takes the zero-window probes the peer answered out
// of the congestion controller's bytes in flight: an ACK whose window
// still ends at or before a probe says the receiver dropped it (or will).
// The probe stays in flight for the stream, to be resent when its timer
// fires, but no longer holds the window that all streams share: it used
// to, until its own backed-off timeout, and the probes of streams
// waiting for receive budget filled the window, starving the streams
// that could complete and free the budget. Only probes lie beyond
// peerLimit (it never shrinks), so the loop is short.
func (s *Stream) releaseProbesLocked() {
	for seq := max(s.una, s.peerLimit); seq < s.sent; seq++ {
		if f := s.frag(seq); f.state == fragInflight && f.inCC {
			f.inCC = false
			s.m.cc.inFlight -= dataHeaderSize + f.n
		}
	}
}

// markLostLocked declares fragment seq lost, to be retransmitted first.
// A lost zero-window probe is no congestion signal: the receiver most
// likely dropped it because its window was still closed.
func (s *Stream) markLostLocked(seq uint64, f *sendFrag, now int64) {
	f.state = fragLost
	s.inflight--
	if f.probe {
		s.probesOut--
	}
	if f.inCC {
		f.inCC = false
		if f.probe {
			s.m.cc.inFlight -= dataHeaderSize + f.n
		} else {
			s.m.cc.onLost(dataHeaderSize+f.n, f.sentAt, now)
		}
	}
	if !f.probe {
		s.m.persistentLossLocked(f.sentAt, now)
	}
	s.lost.push(seq)
}

// persistentLossLocked counts a fragment sent at sentAt as lost toward
// persistent congestion (RFC 9002 §7.6.2): when lost fragments span more
// than persistentCongestionPTOs probe timeouts and nothing sent since the
// first of them was acknowledged, on any stream, the path is taken for
// congested and the window collapses to the minimum. Until 2026-12-07
// two timeouts in a row on one stream did it, while other streams'
// fragments were being acknowledged: with many streams, or at random
// loss, the window sat at 2 frames.
func (m *Mux) persistentLossLocked(sentAt, now int64) {
	if sentAt <= m.ackedSentMax || m.rtt.samples == 0 {
		return // something sent later was acknowledged
	}
	if m.pcStart == 0 || m.pcStart <= m.ackedSentMax {
		m.pcStart, m.pcEnd = sentAt, sentAt
	}
	m.pcStart, m.pcEnd = min(m.pcStart, sentAt), max(m.pcEnd, sentAt)
	if m.pcEnd-m.pcStart > int64(persistentCongestionPTOs*m.rtt.rto()) {
		m.cc.onPersistentCongestion(now)
		m.pcStart = 0
	}
}

// largeLocked reports whether fragment f went out in frames larger than
// the base path MTU (a fragment cut larger than the current size is sent
// split into parts that fit it).
func (m *Mux) largeLocked(f *sendFrag) bool {
	return min(dataHeaderSize+f.n, m.pmtu.cur) > m.pmtu.base
}

// onRTOLocked handles a retransmission timeout: fragments outstanding for
// a whole RTO are declared lost (RFC 6298 §5.4 retransmits the first;
// with selective ACKs every fragment that old is as good as lost), and
// the timeout backs off. Losses count toward persistent congestion like
// any other (see Mux.persistentLossLocked); a timeout that lost a
// fragment larger than the base path MTU makes path-MTU discovery check
// for a black hole (see pmtu.go), which takes evidence that only large
// frames are lost.
func (s *Stream) onRTOLocked(now int64) {
	m := s.m
	s.rtoDeadline = 0
	switch {
	case s.inflight > 0:
		cutoff := now - int64(m.rtt.rto())
		var oldest *sendFrag
		var oldestSeq uint64
		marked, lostLarge := false, false
		for seq := s.una; seq < s.sent; seq++ {
			f := s.frag(seq)
			if f.state != fragInflight {
				continue
			}
			if oldest == nil {
				oldest, oldestSeq = f, seq
			}
			if f.sentAt <= cutoff {
				s.markLostLocked(seq, f, now)
				marked = true
				lostLarge = lostLarge || m.largeLocked(f)
			}
		}
		if !marked && oldest != nil {
			s.markLostLocked(oldestSeq, oldest, now)
			lostLarge = m.largeLocked(oldest)
		}
		s.rtoBackoff++
		if lostLarge {
			m.pmtuSuspectLocked(now)
		}
	case s.sent < s.nxt:
		s.probe = true
		s.rtoBackoff++
	}
	// Restart the timer (RFC 6298 5.5-5.6) while anything is outstanding:
	// after a loss the congestion window can be smaller than what is
	// still counted in flight, so the retransmission may not leave now,
	// and with every packet lost no ACK will come to re-arm it.
	if s.inflight > 0 || s.lost.len() > 0 {
		s.rtoDeadline = now + int64(s.rtoLocked())
		m.armLocked(s, s.rtoDeadline)
	}
	m.readyLocked(s)
}

// sendUnreliableLocked fragments msg and hands every fragment to the Link
// at once; unreliable streams keep nothing to retransmit.
func (s *Stream) sendUnreliableLocked(msg []byte) error {
	m := s.m
	fc := s.fragCapLocked()
	count := max(1, (len(msg)+fc-1)/fc)
	if count > 1<<16-1 {
		return fmt.Errorf("%w: %d fragments", ErrTooLarge, count)
	}
	id := s.nextMsgID
	for i := range count {
		part := msg[i*fc : min(len(msg), (i+1)*fc)]
		h := putDataHeader(m.tx, flagUnreliable, s.key^1, id, len(part), uint16(i), uint16(count))
		if err := m.link.SendFrame(m.tx[:h], part); err != nil {
			if i > 0 {
				s.nextMsgID++ // the peer drops the partial message
				s.st.linkErrors++
			}
			if isBackpressure(err) {
				s.st.backpressure++
				return ErrBackpressure
			}
			return err
		}
	}
	s.nextMsgID++
	s.st.txMsgs++
	s.st.txBytes += uint64(len(msg))
	return nil
}
