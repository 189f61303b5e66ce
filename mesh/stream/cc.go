package stream

import "time"

// rttEstimator is RFC 6298's smoothed RTT and RTT variance, shared by all
// streams of a Mux (they share the path), and the latest sample. Samples
// follow Karn's rule: the caller passes only RTTs of fragments that were
// never retransmitted.
type rttEstimator struct {
	srtt, rttvar, latest time.Duration
	minRTO, maxRTO       time.Duration
	maxAckDelay          time.Duration // how long the peer may hold an ACK (ours: both ends share the default)
	samples              uint64
}

func newRTTEstimator(initial, minRTO, maxRTO, maxAckDelay time.Duration) rttEstimator {
	return rttEstimator{srtt: initial, rttvar: initial / 2, latest: initial, minRTO: minRTO, maxRTO: maxRTO, maxAckDelay: maxAckDelay}
}

// sample folds one RTT measurement in (RFC 6298 §2.2, §2.3).
func (r *rttEstimator) sample(rtt time.Duration) {
	rtt = max(rtt, 0)
	r.latest = rtt
	if r.samples == 0 {
		r.srtt, r.rttvar = rtt, rtt/2
	} else {
		d := r.srtt - rtt
		if d < 0 {
			d = -d
		}
		r.rttvar = (3*r.rttvar + d) / 4
		r.srtt = (7*r.srtt + rtt) / 8
	}
	r.samples++
}

// rto is the retransmission timeout before back-off, QUIC's probe timeout
// (RFC 9002 §6.2.1): SRTT + max(4·RTTVAR, G) + the peer's maximum ACK
// delay (our ACKs do not report their delay, so the timer must wait it
// out), with a granularity G of 1 ms, clamped to [minRTO, maxRTO].
func (r *rttEstimator) rto() time.Duration {
	return min(max(r.srtt+max(4*r.rttvar, granularity)+r.maxAckDelay, r.minRTO), r.maxRTO)
}

// lossDelay is RFC 9002's time threshold: a fragment sent this long
// before one that was acknowledged is lost.
func (r *rttEstimator) lossDelay() time.Duration {
	return max(max(r.srtt, r.latest)*timeThresholdNum/timeThresholdDen, granularity)
}

// newReno is the Mux's congestion controller: NewReno as specified for
// QUIC in RFC 9002 §7 and appendix B, counting bytes. One controller per
// Mux is shared by all its streams, so many streams to one peer take one
// fair share of the path, not one each. NewReno was chosen over CUBIC or
// BBR because it is short, specified exactly, reacts to every loss event
// by halving (the back-off the tests check), and needs no pacing; see
// docs/STREAMS.md.
type newReno struct {
	cwnd     int // congestion window, bytes
	ssthresh int // slow-start threshold, bytes
	inFlight int // bytes sent, not yet acknowledged or declared lost
	mss      int // the largest frame body, bytes: the confirmed path MTU, which the Mux keeps it at

	// recoveryStart is when the current recovery period began (ns since
	// the Mux's epoch); losses of fragments sent before it belong to the
	// same congestion event and do not reduce the window again.
	recoveryStart int64
	ackedInCA     int // bytes acknowledged toward the next +1 MSS in congestion avoidance

	lossEvents           uint64
	persistentCongestion uint64
}

func newNewReno(mss int) newReno {
	return newReno{
		cwnd:          initialWindowPackets * mss,
		ssthresh:      int(^uint(0) >> 1),
		mss:           mss,
		recoveryStart: -1,
	}
}

func (c *newReno) minWindow() int { return minWindowPackets * c.mss }

// canSend reports whether n more bytes fit the window. An empty pipe
// always accepts one frame, so a stream can never deadlock on cwnd.
func (c *newReno) canSend(n int) bool {
	return c.inFlight == 0 || c.inFlight+n <= c.cwnd
}

func (c *newReno) onSent(n int) { c.inFlight += n }

// onAcked accounts n acknowledged bytes sent at sentAt.
func (c *newReno) onAcked(n int, sentAt int64) {
	appLimited := c.inFlight+2*c.mss < c.cwnd // RFC 9002 §7.8: do not grow an underused window
	c.inFlight -= n
	if sentAt <= c.recoveryStart || appLimited {
		return
	}
	if c.cwnd < c.ssthresh {
		c.cwnd += n // slow start
		return
	}
	c.ackedInCA += n // congestion avoidance: +1 MSS per window acknowledged
	if c.ackedInCA >= c.cwnd {
		c.ackedInCA -= c.cwnd
		c.cwnd += c.mss
	}
}

// onLost accounts n bytes sent at sentAt declared lost at now, and halves
// the window once per recovery period.
func (c *newReno) onLost(n int, sentAt, now int64) {
	c.inFlight -= n
	if sentAt <= c.recoveryStart {
		return
	}
	c.recoveryStart = now
	c.ssthresh = max(c.cwnd/2, c.minWindow())
	c.cwnd = c.ssthresh
	c.ackedInCA = 0
	c.lossEvents++
}

// onPersistentCongestion collapses the window to the minimum after
// repeated retransmission timeouts (RFC 9002 §7.6.2).
func (c *newReno) onPersistentCongestion(now int64) {
	c.recoveryStart = now
	c.cwnd = c.minWindow()
	c.ackedInCA = 0
	c.persistentCongestion++
}
