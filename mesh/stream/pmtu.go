package stream

import "time"

// ProbeLink is a Link that can try frames larger than MaxFrameSize, for
// path-MTU discovery. A Mux whose Link implements it probes upward
// (DPLPMTUD, RFC 8899) and cuts new fragments to the largest confirmed
// size; without it every frame stays within MaxFrameSize.
type ProbeLink interface {
	Link
	// MaxProbeSize is the largest body SendFrame accepts for a probe or a
	// fragment once a probe confirmed the size: what the local interface
	// could carry on the current path. The path may drop larger frames
	// silently; the probes find out.
	MaxProbeSize() int
}

// pmtuState is the Mux's DPLPMTUD state machine (RFC 8899 §5.2), in
// frame body sizes:
//
//   - BASE: cur = base, the Link's MaxFrameSize, always safe.
//   - SEARCHING: one probe (PING + PADDING of size probe) in flight at a
//     time, only while streams have data to send; its PONG confirms the
//     size (cur = probe), pmtuMaxProbes losses in a row refute it (hi =
//     probe - 1). The first candidate is the maximum, then the midpoint of
//     cur and hi.
//   - SEARCH_COMPLETE: hi - cur below pmtuResolution; the search restarts
//     after MuxConfig.PathProbeInterval.
//   - Black hole: an RTO that declares a fragment larger than base lost,
//     while cur > base, makes the Mux suspect one and confirm it (RFC 8899
//     §4.3 asks for evidence, not just loss): it probes the current size
//     (PING + PADDING to cur) and the path (a bare PING) together. A PONG
//     for the large probe, or any large fragment sent since acknowledged,
//     clears the suspicion; pmtuMaxProbes large probes lost in a row while
//     a small one got through drop cur to base (fragments already cut
//     larger are then sent split). Random loss, however heavy, lets large
//     frames through and never gets that far; a path that died loses the
//     small probes too, and is no black hole. Mux.ResetPathMTU drops cur
//     to base at once when the mesh changes the peer's path.
type pmtuState struct {
	enabled   bool
	base, max int    // the Link's MaxFrameSize and the probe ceiling
	cur       int    // largest confirmed size: fragments are cut to it
	hi        int    // largest size not yet refuted
	probe     int    // size of the probe in flight; 0 for none
	tokens    uint64 // PING tokens issued
	token     uint64 // the last search probe's PING token
	tokenSize int    // the last search probe's size: its PONG confirms it even after its timeout
	due       int64  // the probe counts as lost at this time
	fails     int    // consecutive lost probes of size probe
	triedMax  bool   // the optimistic first probe at max was sent
	nextAt    int64  // no probe before this time
	done      bool   // search complete
	probes    uint64 // probes sent
	blackHole uint64 // fallbacks to base

	// A suspected black hole (see above).
	suspect      bool
	suspectAt    int64  // when the suspicion began: only fragments sent since count as evidence
	confirmToken uint64 // the last large confirmation probe's token
	smallToken   uint64 // the last small confirmation probe's token
	confirmDue   int64  // the large probe counts as lost at this time
	confirmFails int    // large confirmation probes lost in a row
	smallOK      bool   // a small probe was answered during the suspicion
}

// maxProbeSize is the probe ceiling: the largest frame a fragment of
// jumboChunkSize bytes makes.
const maxProbeSize = dataHeaderSize + jumboChunkSize

func newPMTU(link Link) pmtuState {
	base := link.MaxFrameSize()
	p := pmtuState{base: base, cur: base}
	p.setMaxFrom(link)
	p.hi = p.max
	p.done = !p.enabled
	return p
}

// setMaxFrom sets the probe ceiling from the Link: what its
// MaxProbeSize allows on the current path, at most maxProbeSize.
func (p *pmtuState) setMaxFrom(link Link) {
	p.max = p.base
	if pl, ok := link.(ProbeLink); ok {
		p.max = max(p.base, min(pl.MaxProbeSize(), maxProbeSize))
	}
	p.enabled = p.max > p.base
}

// maybeProbeLocked sends the next probe if the search is on, none is in
// flight, and its time has come. It runs from flushLocked when streams
// have data waiting, so probes ride on real demand.
func (m *Mux) maybeProbeLocked(now int64) {
	p := &m.pmtu
	if !p.enabled || p.probe != 0 || now < p.nextAt {
		return
	}
	if p.done { // the raise timer expired: search again
		p.done, p.hi, p.triedMax, p.fails = false, p.max, false, 0
		if m.pmtuNextLocked(now); p.done {
			return // already at the maximum
		}
	}
	size := p.hi
	if p.triedMax {
		size = (p.cur + p.hi + 1) / 2
	}
	p.triedMax = true
	p.tokens++
	p.token = p.tokens
	putPing(m.tx, framePing, p.token)
	clear(m.tx[pingFrameSize:size])
	if err := m.link.SendFrame(m.tx[:size], nil); err != nil {
		return // not even the local interface takes it: try again later
	}
	p.probe, p.tokenSize = size, size
	p.probes++
	p.due = now + int64(pmtuProbeTimeoutRTOs*max(m.rtt.rto(), time.Millisecond))
	m.armMuxLocked(p.due)
}

// onPongLocked confirms the last probe when its token comes back, even
// after the probe timed out (it was slow, not lost), and takes the
// answers to a black-hole check's probes.
func (m *Mux) onPongLocked(token uint64, now int64) {
	p := &m.pmtu
	if p.suspect {
		switch token {
		case p.confirmToken:
			p.suspect = false // the path carries the current size
		case p.smallToken:
			p.smallOK = true
		}
	}
	if token != p.token || p.tokenSize <= p.cur {
		return
	}
	p.hi = max(p.hi, p.tokenSize) // a late PONG overrules timeouts
	p.cur, p.probe, p.fails, p.tokenSize = p.tokenSize, 0, 0, 0
	m.cc.mss = p.cur
	m.pmtuNextLocked(now)
}

// onProbeTimerLocked counts lost probes and returns the next probe
// deadline, or 0.
func (m *Mux) onProbeTimerLocked(now int64) int64 {
	p := &m.pmtu
	confirm := m.onConfirmTimerLocked(now)
	if p.probe == 0 {
		return confirm
	}
	if p.due > now {
		if confirm != 0 && confirm < p.due {
			return confirm
		}
		return p.due
	}
	p.fails++
	if p.fails >= pmtuMaxProbes {
		p.hi, p.fails = p.probe-1, 0
		m.pmtuNextLocked(now)
	}
	p.probe = 0
	return confirm
}

// pmtuSuspectLocked starts checking for a black hole (see pmtuState): a
// fragment larger than the base size was lost to a timeout.
func (m *Mux) pmtuSuspectLocked(now int64) {
	p := &m.pmtu
	if p.suspect || p.cur == p.base {
		return
	}
	p.suspect, p.suspectAt, p.confirmFails, p.smallOK = true, now, 0, false
	m.sendConfirmLocked(now)
}

// sendConfirmLocked sends a black-hole check's pair of probes: a PING
// padded to the current size and a bare one. They go outside the
// congestion window, like the search's probes.
func (m *Mux) sendConfirmLocked(now int64) {
	p := &m.pmtu
	p.tokens++
	p.confirmToken = p.tokens
	putPing(m.tx, framePing, p.confirmToken)
	clear(m.tx[pingFrameSize:p.cur])
	_ = m.link.SendFrame(m.tx[:p.cur], nil) // a refused probe is a lost one
	p.tokens++
	p.smallToken = p.tokens
	putPing(m.tx, framePing, p.smallToken)
	_ = m.link.SendFrame(m.tx[:pingFrameSize], nil)
	p.confirmDue = now + int64(pmtuProbeTimeoutRTOs*m.rtt.rto())
	m.armMuxLocked(p.confirmDue)
}

// onConfirmTimerLocked counts a black-hole check's large probe lost when
// its time is up, falls back to the base size after pmtuMaxProbes in a
// row if the small probes got through, and returns the check's next
// deadline, or 0.
func (m *Mux) onConfirmTimerLocked(now int64) int64 {
	p := &m.pmtu
	if !p.suspect {
		return 0
	}
	if p.confirmDue > now {
		return p.confirmDue
	}
	if p.confirmFails++; p.confirmFails < pmtuMaxProbes {
		m.sendConfirmLocked(now)
		return p.confirmDue
	}
	p.suspect = false
	if p.smallOK {
		m.pmtuBlackHoleLocked(now)
	}
	return 0
}

// pmtuNextLocked ends the search when the bounds met.
func (m *Mux) pmtuNextLocked(now int64) {
	p := &m.pmtu
	if p.hi-p.cur < pmtuResolution {
		p.done = true
		p.nextAt = now + int64(m.cfg.PathProbeInterval)
	}
}

// pmtuBlackHoleLocked falls back to the base size when a black hole is
// confirmed, and searches again after PathProbeInterval.
func (m *Mux) pmtuBlackHoleLocked(now int64) {
	p := &m.pmtu
	if p.cur == p.base {
		return
	}
	p.cur, p.probe, p.fails, p.done, p.tokenSize, p.suspect = p.base, 0, 0, true, 0, false
	m.cc.mss = p.cur
	p.nextAt = now + int64(m.cfg.PathProbeInterval)
	p.blackHole++
}

// ResetPathMTU drops the path MTU back to the Link's MaxFrameSize, reads
// the probe ceiling from its MaxProbeSize again, and searches again: the
// mesh calls it when the peer's path changes (roaming, relayed to direct
// or back). Fragments already cut larger are sent split.
func (m *Mux) ResetPathMTU() {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := &m.pmtu
	p.setMaxFrom(m.link)
	p.cur, p.hi, p.probe, p.fails, p.triedMax, p.done, p.nextAt = p.base, p.max, 0, 0, false, !p.enabled, 0
	p.tokenSize, p.suspect = 0, false
	m.cc.mss = p.cur
}
