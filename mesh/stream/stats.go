package stream

import "time"

// StreamStats is a snapshot of one stream's counters.
type StreamStats struct {
	ID          uint32 // Stream.ID
	Reliability Reliability
	// TxSeq is the next fragment sequence (reliable) or message id
	// (unreliable) to send; RxSeq the next fragment sequence expected
	// (reliable) or the last message id delivered (unreliable).
	TxSeq, RxSeq uint64
	// TxMessages and TxBytes count messages accepted by Send; RxMessages
	// and RxBytes messages received whole (payload bytes).
	TxMessages, TxBytes, RxMessages, RxBytes uint64
	// BytesInFlight is the send window in use: buffer bytes of messages
	// not yet acknowledged. MessagesInFlight counts those messages.
	BytesInFlight, MessagesInFlight int
	// SendWindow is the configured send window, bytes.
	SendWindow int
	// PeerWindow is how many more fragments the peer's receive window
	// takes beyond those sent.
	PeerWindow int
	// RecvBuffered is receive-window bytes in use (unread messages and
	// out-of-order fragments).
	RecvBuffered int
	// CongestionWindow, SmoothedRTT and RTO are the Mux's, shared by all
	// its streams.
	CongestionWindow int
	SmoothedRTT, RTO time.Duration
	// Retransmits counts fragments sent again; BackpressureEvents counts
	// ErrBackpressure returned by Send.
	Retransmits, BackpressureEvents uint64
	// Duplicates counts fragments received twice; WindowOverflow counts
	// fragments beyond the advertised window (dropped).
	Duplicates, WindowOverflow uint64
	// Dropped counts unreliable messages dropped incomplete, timed out,
	// or because the reader was behind; Stale counts unreliable fragments
	// older than the last delivered message.
	Dropped, Stale uint64
	// LinkErrors counts frames the Link refused with an error other than
	// back-pressure.
	LinkErrors uint64
	// Splits counts fragments sent in parts because the path MTU fell
	// below their size.
	Splits uint64
}

// Stats returns a snapshot of the stream's counters.
func (s *Stream) Stats() StreamStats {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	return s.statsLocked()
}

func (s *Stream) statsLocked() StreamStats {
	m := s.m
	st := StreamStats{
		ID:                 s.key,
		Reliability:        s.cfg.Reliability,
		TxSeq:              s.nxt,
		RxSeq:              s.rcvNext,
		TxMessages:         s.st.txMsgs,
		TxBytes:            s.st.txBytes,
		RxMessages:         s.st.rxMsgs,
		RxBytes:            s.st.rxBytes,
		BytesInFlight:      s.buffered,
		MessagesInFlight:   s.bufferedMsgs,
		SendWindow:         s.cfg.SendWindow,
		RecvBuffered:       s.chunkBytes + s.readyBytes,
		CongestionWindow:   m.cc.cwnd,
		SmoothedRTT:        m.rtt.srtt,
		RTO:                m.rtt.rto(),
		Retransmits:        s.st.retransmits,
		BackpressureEvents: s.st.backpressure,
		Duplicates:         s.st.dups,
		WindowOverflow:     s.st.overflow,
		Dropped:            s.st.dropped,
		Stale:              s.st.stale,
		LinkErrors:         s.st.linkErrors,
		Splits:             s.st.splits,
	}
	if s.peerLimit > s.sent {
		st.PeerWindow = int(s.peerLimit - s.sent)
	}
	if s.unreliable {
		st.TxSeq, st.RxSeq = s.nextMsgID, s.lastMsgID
	}
	return st
}

// MuxStats is a snapshot of a Mux and its streams.
type MuxStats struct {
	// Streams lists the streams the Mux holds: those not yet finished.
	Streams []StreamStats
	// CongestionWindow and SlowStartThreshold are the shared NewReno
	// state, bytes; BytesInFlight the frame bytes it counts in flight.
	CongestionWindow, SlowStartThreshold, BytesInFlight int
	// SmoothedRTT and RTO are the shared RTT estimator's.
	SmoothedRTT, RTO time.Duration
	// LossEvents counts congestion events (window halvings);
	// PersistentCongestion counts collapses to the minimum window.
	LossEvents, PersistentCongestion uint64
	// Accepted and Refused count peer-opened streams.
	Accepted, Refused uint64
	// Malformed counts frames that failed to decode or broke the protocol;
	// Stale counts frames for streams the Mux no longer holds.
	Malformed, Stale uint64
	// LinkBackpressure counts frames the Link refused with back-pressure.
	LinkBackpressure uint64
	// Corked counts the times a fragment was held back because the
	// Mux's previous DATA frame was still queued in the Link
	// (autocorking).
	Corked uint64
	// RecvHeld is what the streams hold for the application, bytes, of
	// RecvBudget; BudgetDrops counts fragments and unreliable messages
	// dropped because the budget was full.
	RecvHeld, RecvBudget int
	BudgetDrops          uint64
	// SendHeld is what the reliable streams hold for sending (messages
	// not yet acknowledged), bytes, of SendBudget; SendBudgetFull counts
	// Sends refused with ErrBackpressure because the budget was full.
	SendHeld, SendBudget int
	SendBudgetFull       uint64
	// IdleResets counts streams reset with CodeIdle (see
	// MuxConfig.IdleTimeout).
	IdleResets uint64
	// PathMTU is the frame body size new fragments are cut to: the Link's
	// MaxFrameSize, or larger once a probe confirmed it. PathMTUProbes
	// counts probes sent; PathMTUBlackHoles counts falls back to the base.
	PathMTU                          int
	PathMTUProbes, PathMTUBlackHoles uint64
}

// Stats returns a snapshot of the Mux and all its streams.
func (m *Mux) Stats() MuxStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := MuxStats{
		Streams:              make([]StreamStats, 0, len(m.streams)),
		CongestionWindow:     m.cc.cwnd,
		SlowStartThreshold:   m.cc.ssthresh,
		BytesInFlight:        m.cc.inFlight,
		SmoothedRTT:          m.rtt.srtt,
		RTO:                  m.rtt.rto(),
		LossEvents:           m.cc.lossEvents,
		PersistentCongestion: m.cc.persistentCongestion,
		Accepted:             m.stats.accepted,
		Refused:              m.stats.refused,
		Malformed:            m.stats.malformed,
		Stale:                m.stats.stale,
		LinkBackpressure:     m.stats.linkBackpressure,
		Corked:               m.stats.corked,
		RecvHeld:             m.held,
		RecvBudget:           m.cfg.RecvBudget,
		BudgetDrops:          m.stats.budgetDrops,
		SendHeld:             m.sendHeld,
		SendBudget:           m.cfg.SendBudget,
		SendBudgetFull:       m.stats.sendBudgetFull,
		IdleResets:           m.stats.idleResets,
		PathMTU:              m.pmtu.cur,
		PathMTUProbes:        m.pmtu.probes,
		PathMTUBlackHoles:    m.pmtu.blackHole,
	}
	for _, s := range m.streams {
		st.Streams = append(st.Streams, s.statsLocked())
	}
	return st
}
