package mesh

import (
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

func (t *transport) tick() {
	now := t.now()
	t.guard.limit.gc(now)
	t.guard.relayLimit.gc(now)
	t.routes.expire(now)
	var pings []*Peer
	t.hs.mu.Lock()
	t.checkPendingLocked()
	for _, h := range t.hs.pending {
		switch {
		case h.dial != nil && h.live():
			t.driveDialLocked(h.dial, now)
		case now-h.created > int64(t.t.giveUp):
			// A responder's XX handshake whose final never came, or an
			// attempt of ours that was replaced or whose dial ended.
			delete(t.hs.pending, h.local)
		}
	}
	for d := range t.hs.confirming {
		t.driveDialLocked(d, now) // resends its final, or gives up
	}
	for _, p := range t.peers.all() {
		if t.tickPeerLocked(p, now) {
			pings = append(pings, p)
		}
	}
	t.hs.mu.Unlock()
	for _, p := range pings {
		t.ping(p)
	}
}

// tickPeerLocked does what is due for one peer and reports whether it
// needs a keepalive.
func (t *transport) tickPeerLocked(p *Peer, now int64) (keepalive bool) {
	for i, r := range p.retired {
		if r != nil && now-r.created > int64(t.t.rejectAfter) {
			t.index.remove(r) // it decrypts nothing any more
			p.retired[i] = nil
		}
	}
	if p.next != nil && now-p.next.created > int64(t.t.giveUp) {
		t.index.remove(p.next)
		p.next = nil
	}
	s := p.current
	if s == nil {
		if p.next == nil && p.dial == nil && now-max(p.lastRecv.Load(), p.created) > int64(t.t.forget) {
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
	case p.dial == nil && now-p.lastRecv.Load() > int64(t.t.dead):
		t.log.Info("peer silent; new handshake", "peer", p.id.Short())
		t.redialLocked(p)
	}
	return now-p.lastSent.Load() > int64(t.t.keepalive)
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
	if now-d.started > int64(t.t.giveUp) {
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
		t.sendTo(d.path, h.pkt)
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
