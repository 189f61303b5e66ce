package mesh

import (
	"bytes"
	"fmt"
	"time"

	"github.com/netmesh/netmesh/noise"
)

// timerLoop is the transport's one clock: it retransmits handshakes,
// rekeys, sends keepalives, notices dead peers and expires old state. It
// scans every peer each tick, which stays cheap into the thousands of
// peers because each check is a few atomic loads; it holds hs.mu for the
// scan, which no sender and no receiver of data waits on.
func (t *transport) timerLoop() {
	defer t.wg.Done()
	tick := time.NewTicker(t.t.tick)
	defer tick.Stop()
	relays := time.NewTicker(relayRetry)
	defer relays.Stop()
	for {
		select {
		case <-tick.C:
			t.tick()
		case <-relays.C:
			t.keepRelays()
		case <-t.ctx.Done():
			return
		}
	}
}

// tick does what is due. A tick that comes late, because the process
// got no CPU (a loaded or suspended machine) or the loop waited for the
// handshake lock, is a pause in which the node could neither send nor
// read: the pause does not count toward giving a handshake up, and after
// a stall the failure detector and the other silence checks wait a tick
// so the socket readers can first take in what peers sent meanwhile.
// Otherwise every peer whose handshake was under way would go down the
// moment the machine came back.
func (t *transport) tick() {
	now := t.now()
	paused := int64(0)
	if t.lastTick != 0 {
		paused = max(0, now-t.lastTick-2*int64(t.t.tick))
	}
	// A tick this late means the node itself was stalled: what its peers
	// sent may still wait in the socket, so no silence measured across
	// the stall counts (see livenessLocked).
	stalled := t.lastTick != 0 && now-t.lastTick > int64(t.t.probe/4)
	t.lastTick = now
	if paused > int64(timerPauseLog) {
		t.log.Warn("timer loop ran late; the node got no CPU", "paused", time.Duration(paused))
	}
	t.guard.limit.gc(now)
	t.guard.relayLimit.gc(now)
	t.routes.expire(now)
	var pings []*Peer
	t.hs.mu.Lock()
	t.checkPendingLocked()
	for _, h := range t.hs.pending {
		h.created += paused
		switch {
		case h.dial != nil && h.live():
			h.dial.pause(now, paused)
			t.driveDialLocked(h.dial, now)
		case now-h.created > int64(t.t.giveUp):
			// A responder's XX handshake whose final never came, or an
			// attempt of ours that was replaced or whose dial ended.
			delete(t.hs.pending, h.local)
		}
	}
	for d := range t.hs.confirming {
		d.pause(now, paused)
		t.driveDialLocked(d, now) // resends its final, or gives up
	}
	for _, p := range t.peers.all() {
		if t.tickPeerLocked(p, now, stalled) {
			pings = append(pings, p)
		}
	}
	t.hs.mu.Unlock()
	for _, p := range pings {
		t.ping(p)
	}
}

// tickPeerLocked does what is due for one peer and reports whether it
// needs a ping: a keepalive or a probe. After a stall of the timer loop
// (see tick) it judges no silence: what the peer sent meanwhile may still
// wait in the socket.
func (t *transport) tickPeerLocked(p *Peer, now int64, stalled bool) (ping bool) {
	for i, r := range p.retired {
		if r != nil && now-r.created > int64(t.t.rejectAfter) {
			t.index.remove(r) // it decrypts nothing any more
			p.retired[i] = nil
		}
	}
	if p.next != nil && !stalled && now-p.next.created > int64(t.t.giveUp) {
		t.index.remove(p.next)
		p.next = nil
	}
	s := p.current
	if s == nil {
		if p.next == nil && p.dial == nil && !stalled && now-max(p.lastRecv.Load(), p.created) > int64(t.t.forget) {
			t.forgetLocked(p)
		}
		return false
	}
	p.checkPath(now)
	age := now - s.created
	switch {
	case age > int64(t.t.rejectAfter):
		t.downLocked(p, downExpired)
		t.redialLocked(p)
		return false
	case p.dial == nil && age > int64(t.rekeyAge(s)):
		t.redialLocked(p)
	}
	return t.livenessLocked(p, now, stalled)
}

// livenessLocked is the failure detector: it reports whether p needs a
// ping now, a probe or a keepalive, and takes p down when its probes
// went unanswered.
//
// A peer is suspected when it has been silent for DeadPeerTimeout, or
// when this node sent it something a keepalive interval after it last
// heard from it (traffic went unanswered: an idle session's keepalive
// ping that brought no pong, or a one-way flow). A suspected peer gets
// a probe (a ping, which it answers at once) every ProbeTimeout/4, and
// any authenticated packet from it ends the suspicion. It is down when
// nothing arrived for a whole probe window (ProbeTimeout, at least four
// round trips) in which at least four probes went out. The decision
// rests on what arrived since the window began, never on how late the
// timer got to run: a window across which this node was stalled starts
// again, so a starved machine reads what its peers sent before it can
// declare them dead.
func (t *transport) livenessLocked(p *Peer, now int64, stalled bool) (ping bool) {
	last, sent := p.lastRecv.Load(), p.lastSent.Load()
	if p.probeSince != 0 && (last >= p.probeSince || stalled) {
		p.probeSince, p.probes = 0, 0 // it spoke, or the silence may be ours
	}
	keepalive := now-sent > int64(t.keepaliveFor(p))
	if p.probeSince == 0 {
		if now-last <= int64(t.t.dead) && sent-last <= int64(t.t.keepalive) {
			return keepalive
		}
		p.probeSince = now
		// What was just sent is the first question: probe if it brings no
		// answer within a probe interval.
		p.probeAt = max(now, sent+int64(t.t.probeInterval))
	}
	window := max(t.t.probe, probeRTTs*p.RTT())
	if p.probes >= minProbes && now-p.probeSince >= int64(window) {
		why := fmt.Sprintf("no answer to %d probes in %v", p.probes, time.Duration(now-p.probeSince).Round(time.Millisecond))
		p.probeSince, p.probes = 0, 0
		t.downLocked(p, why)
		t.redialLocked(p) // it may have restarted, or moved
		return false
	}
	if now < p.probeAt {
		return keepalive
	}
	p.probes++
	// On schedule, a probe interval after the last was due, but never
	// less than half an interval after this one.
	iv := int64(max(t.t.probeInterval, window/minProbes))
	p.probeAt = max(p.probeAt+iv, now+iv/2)
	return true
}

// keepaliveFor is how long the session with p may go without a packet
// from this node before it sends a keepalive ping. Of two idle nodes, the
// one with the smaller NodeID pings every KeepaliveInterval and the other
// only answers (its pongs are its keepalives): were both to ping when
// their own interval ran out, they would often ping at once, and each
// idle session would cost twice the packets. The other pings only after
// twice the interval, a keepalive for its NAT mapping should its pongs
// stop; it notices the silence of a peer that stopped pinging through
// DeadPeerTimeout.
func (t *transport) keepaliveFor(p *Peer) time.Duration {
	own := t.id.NodeID()
	if bytes.Compare(own[:], p.id[:]) < 0 {
		return t.t.keepalive
	}
	return 2 * t.t.keepalive
}

// rekeyAge is when a session should be replaced. The side that started it
// rekeys at RekeyAfter. The other side only steps in when that rekey has
// failed: it waits until the initiator's dial has had HandshakeGiveUp to
// retransmit (starting earlier makes the two handshakes cross whenever a
// rekey needs a retransmission), but no longer than leaves its own dial
// HandshakeGiveUp before the session expires, and at least 3 retransmit
// intervals past RekeyAfter.
func (t *transport) rekeyAge(s *session) time.Duration {
	tm := &t.t
	if s.initiator {
		return tm.rekeyAfter
	}
	return max(tm.rekeyAfter+3*tm.retransmit, min(tm.rekeyAfter+tm.giveUp, tm.rejectAfter-tm.giveUp))
}

// driveDialLocked retransmits or abandons a dial.
func (t *transport) driveDialLocked(d *dial, now int64) {
	if d.closed {
		return
	}
	if now-d.started-d.paused > int64(t.t.giveUp) {
		t.finishDialLocked(d, nil, ErrHandshakeTimeout)
		// The peer is down if nothing authenticated came from it while
		// the dial tried: judged from the last packet received, not from
		// how long ago that was when the timer loop got to run, so a
		// busy machine that delays keepalives (or this loop) does not
		// take down a peer that is still talking.
		p := t.peers.get(d.pin.ID)
		if p != nil && (p.current == nil || p.lastRecv.Load() < d.started) {
			t.downLocked(p, downGaveUp)
		}
		return
	}
	if d.ask && d.hs != nil && d.path.relay == nil && now-d.started >= int64(t.t.retransmit) {
		t.askLocked(d) // a retransmit interval without an answer: who is there?
	}
	if now < d.nextAt {
		return
	}
	if s := d.session; s != nil {
		d.nextAt = now + int64(t.t.retransmit)
		t.sendTo(d.path, s.final)
		return
	}
	if h := d.hs; h != nil {
		d.nextAt = now + int64(noise.RetransmitDelay(t.t.retransmit, d.tries, nil))
		d.tries++
		if d.suite == noise.SuiteAESGCM {
			t.fallBackLocked(d)
			h = d.hs
		}
		t.sendTo(d.path, h.pkt)
		if w := d.who; w != nil {
			t.sendTo(d.path, w.pkt)
		}
	}
}

// fallBackLocked replaces the initiations of d, an AES-256-GCM dial that
// went unanswered for a retransmit interval, with ChaCha20-Poly1305 ones.
// A node without AES instructions refuses AES-GCM (its software AES is
// not constant time), and nodes older than the suite byte answer
// ChaCha20-Poly1305 only; a lost packet (or a round trip longer than the
// retransmit interval) costs a session the faster cipher only until its
// rekey, which tries AES-GCM again. Both suites are secure, so an
// attacker who drops packets to force the fallback gains nothing they
// could not get by dropping them.
func (t *transport) fallBackLocked(d *dial) {
	d.suite = noise.SuiteChaChaPoly
	t.stats.suiteFallbacks.Add(1)
	// A replaced initiation stays pending until the timer loop drops it,
	// so that its late answer is recognised and ignored: the responder
	// keeps only the newer initiation's session.
	replace := func(old *handshake, pin Pin) *handshake {
		h, err := t.initiateLocked(d, pin)
		if err != nil {
			return old // retransmit the AES-GCM one
		}
		return h
	}
	d.hs = replace(d.hs, d.pin)
	if d.who != nil {
		d.who = replace(d.who, Pin{})
	}
}

// redialLocked starts an IK handshake with a peer we know, to its current
// endpoint; the dial becomes p.dial (see newDialLocked) unless it failed
// at once.
func (t *transport) redialLocked(p *Peer) {
	ep := p.ep.Load()
	if ep == nil || p.dial != nil || t.leaving.Load() {
		return
	}
	t.newDialLocked(ep, Pin{Key: p.key, ID: p.id})
}
