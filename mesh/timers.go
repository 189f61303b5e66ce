package mesh

import (
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/noise"
)

// timerLoop is the node's one clock: it retransmits handshakes, rekeys,
// sends keepalives, notices dead peers and expires old state. It scans
// every peer each tick, which stays cheap into the thousands of peers
// because each check is a few atomic loads.
func (m *Mesh) timerLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.t.tick)
	defer t.Stop()
	relays := time.NewTicker(relayRetry)
	defer relays.Stop()
	engines := time.NewTicker(capability.TickInterval)
	defer engines.Stop()
	for {
		select {
		case <-t.C:
			m.tick()
		case <-relays.C:
			m.keepRelays()
		case <-engines.C:
			m.caps.Tick()
			m.chans.Tick()
		case c := <-m.peerChanges:
			m.deliverPeerChange(c)
		case <-m.ctx.Done():
			return
		}
	}
}

func (m *Mesh) tick() {
	now := m.now()
	m.limit.gc(time.Now())
	m.relayLimit.gc(time.Now())
	var pings []*Peer
	m.mu.Lock()
	m.expireRoutesLocked(now)
	m.checkPendingLocked()
	for _, h := range m.pending {
		switch {
		case h.dial != nil && h.live():
			m.driveDialLocked(h.dial, now)
		case now-h.created > int64(m.t.giveUp):
			// A responder's XX handshake whose final never came, or an
			// attempt of ours that was replaced or whose dial ended.
			delete(m.pending, h.local)
		}
	}
	for d := range m.confirming {
		m.driveDialLocked(d, now) // resends its final, or gives up
	}
	for _, p := range m.peers {
		for i, r := range p.retired {
			if r != nil && now-r.created > int64(m.t.rejectAfter) {
				m.sessions.del(r.local) // it decrypts nothing any more
				p.retired[i] = nil
			}
		}
		if p.next != nil && now-p.next.created > int64(m.t.giveUp) {
			m.sessions.del(p.next.local)
			p.next = nil
		}
		s := p.current
		if s == nil {
			if p.next == nil && p.dial == nil && now-max(p.lastRecv.Load(), p.created) > int64(m.t.forget) {
				p.closeStreamsLocked()
				delete(m.peers, p.id)
			}
			continue
		}
		p.checkPathLocked(now)
		age := now - s.created
		switch {
		case age > int64(m.t.rejectAfter):
			m.downLocked(p, "session expired")
			m.redialLocked(p)
			continue
		case p.dial == nil && age > int64(m.rekeyAge(s)):
			m.redialLocked(p)
		case p.dial == nil && now-p.lastRecv.Load() > int64(m.t.dead):
			m.log.Info("peer silent; new handshake", "peer", p.id.Short())
			m.redialLocked(p)
		}
		if now-p.lastSent.Load() > int64(m.t.keepalive) {
			pings = append(pings, p)
		}
	}
	m.mu.Unlock()
	for _, p := range pings {
		m.ping(p)
	}
}

// rekeyAge is when a session should be replaced. The side that started it
// rekeys at RekeyAfter. The other side only steps in when that rekey has
// failed: it waits until the initiator's dial has had HandshakeGiveUp to
// retransmit (starting earlier makes the two handshakes cross whenever a
// rekey needs a retransmission), but no longer than leaves its own dial
// HandshakeGiveUp before the session expires, and at least 3 retransmit
// intervals past RekeyAfter.
func (m *Mesh) rekeyAge(s *session) time.Duration {
	t := &m.t
	if s.initiator {
		return t.rekeyAfter
	}
	return max(t.rekeyAfter+3*t.retransmit, min(t.rekeyAfter+t.giveUp, t.rejectAfter-t.giveUp))
}

// driveDialLocked retransmits or abandons a dial.
func (m *Mesh) driveDialLocked(d *dial, now int64) {
	if d.closed {
		return
	}
	if now-d.started > int64(m.t.giveUp) {
		m.finishDialLocked(d, nil, ErrHandshakeTimeout)
		p := m.peers[d.pin.ID]
		if p != nil && (p.current == nil || now-p.lastRecv.Load() > int64(m.t.dead)) {
			m.downLocked(p, "handshake gave up")
		}
		return
	}
	if now < d.nextAt {
		return
	}
	if s := d.session; s != nil {
		d.nextAt = now + int64(m.t.retransmit)
		m.sendTo(d.path, s.final)
		return
	}
	if h := d.hs; h != nil {
		d.nextAt = now + int64(noise.RetransmitDelay(m.t.retransmit, d.tries, nil))
		d.tries++
		m.sendTo(d.path, h.pkt)
	}
}

// redialLocked starts an IK handshake with a peer we know, to its current
// endpoint; the dial becomes p.dial (see newDialLocked) unless it failed
// at once.
func (m *Mesh) redialLocked(p *Peer) {
	ep := p.ep.Load()
	if ep == nil || p.dial != nil {
		return
	}
	m.newDialLocked(ep, Pin{Key: p.key, ID: p.id})
}

// downLocked drops the peer's sessions and reports it down.
func (m *Mesh) downLocked(p *Peer, why string) {
	wasUp := p.up
	p.dropSessionsLocked()
	p.closeStreamsLocked()
	if wasUp {
		m.log.Info("peer down", "peer", p.id.Short(), "reason", why)
		m.notifyLocked(PeerEvent{Peer: p.id, Up: false})
		m.notifyEnginesLocked(p.id, false)
	}
}
