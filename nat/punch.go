//go:build nat

package nat

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Coordinated hole punching. Three roles, one state table each:
//
//	requester A            coordinator C                 target B
//	ConnectDirect ──Introduce──▶ coordTx[A,tx]
//	  introTx[tx]                  ──Offer──▶              acceptTx[C,tx]
//	                      coordTx ◀──Accept── (B's type, candidates)
//	             ◀──Punch──  (both at once)  ──Punch──▶
//	  run[B]: probe every candidate of B      run[A]: probe every candidate of A
//
// The coordinator puts the address it sees each side at first in that
// side's candidate list, so neither side needs a STUN server. A state
// entry lives until its answer arrives or it expires (rendezvous timeout);
// a failure at any step is reported to the requester as a Punch with a
// non-OK Status, and the session stays relayed.

// run is one punch towards a peer, from either side. done closes when it
// ends; err is then nil if the path went direct.
type run struct {
	peer  identity.NodeID
	done  chan struct{}
	err   *Error
	start time.Time
	// askedBy is the coordinator that brought the peer's request for
	// this punch; zero when this node requested it.
	askedBy identity.NodeID
}

// ConnectDirect tries to make the relayed session with peer direct,
// through coordinator, a peer with direct sessions to both sides. It
// returns nil once the path is direct (or already was), and an *Error
// otherwise; the session then stays relayed, with the reason in the
// node's stats, and the engine retries later with backoff.
func (e *Engine) ConnectDirect(ctx context.Context, peer, coordinator identity.NodeID) error {
	err := e.rendezvous(ctx, peer, coordinator)
	e.noteResult(peer, coordinator, err)
	if err != nil {
		return err
	}
	return nil
}

func (e *Engine) rendezvous(ctx context.Context, peer, coordinator identity.NodeID) *Error {
	direct, up := e.tr.Path(peer)
	if !up {
		return &Error{Kind: KindPeerUnreachable, Peer: peer, Reason: "no session with the peer"}
	}
	if direct.IsValid() {
		return nil
	}
	if caddr, cup := e.tr.Path(coordinator); !cup || !caddr.IsValid() || coordinator == peer {
		return &Error{Kind: KindRendezvousNoRelay, Peer: peer, Reason: "coordinator " + coordinator.Short() + " has no direct session with this node"}
	}
	e.mu.Lock()
	unknown := e.typ == Unknown
	e.mu.Unlock()
	if unknown {
		e.Reclassify(ctx) // best effort: an unknown type still punches
	}
	id := newTxID()
	w := &introWait{coord: coordinator, target: peer, res: make(chan introResult, 1)}
	e.mu.Lock()
	if len(e.introTx) >= maxPending {
		e.mu.Unlock()
		return &Error{Kind: KindRendezvousRejected, Peer: peer, Reason: "too many introductions in flight"}
	}
	e.introTx[id] = w
	msg := Message{Type: MsgIntroduce, TxID: id, Peer: peer, NAT: e.selfTypeLocked(), Candidates: e.candidatesLocked()}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.introTx, id)
		e.mu.Unlock()
	}()
	// A frame to the peer first: on a session that just came up, it is
	// what confirms the peer's side, so that the peer, asked by the
	// coordinator a relayed round trip later, sees the session up.
	// Nobody waits for its answer.
	e.send(peer, Message{Type: MsgReflexRequest, TxID: id})
	if err := e.send(coordinator, msg); err != nil {
		return err
	}
	timer := time.NewTimer(rendezvousFactor * e.cfg.ReflexTimeout)
	defer timer.Stop()
	var r *run
	select {
	case res := <-w.res:
		if res.status != StatusOK {
			return statusError(peer, coordinator, res.status)
		}
		r = res.run
	case <-timer.C:
		return &Error{Kind: KindRendezvousRejected, Peer: peer, Reason: "no answer from coordinator " + coordinator.Short()}
	case <-ctx.Done():
		return &Error{Kind: KindPunchFailed, Peer: peer, Err: ctx.Err()}
	case <-e.ctx.Done():
		return &Error{Kind: KindPunchFailed, Peer: peer, Reason: "engine closed"}
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return &Error{Kind: KindPunchFailed, Peer: peer, Err: ctx.Err()}
	}
}

// statusError turns a coordinator's failure status into an Error.
func statusError(peer, coord identity.NodeID, s Status) *Error {
	switch s {
	case StatusNoRelay:
		return &Error{Kind: KindRendezvousNoRelay, Peer: peer, Reason: "coordinator " + coord.Short() + " has no direct session with the peer"}
	case StatusTimeout:
		return &Error{Kind: KindRendezvousRejected, Peer: peer, Reason: "the peer did not answer coordinator " + coord.Short()}
	}
	return &Error{Kind: KindRendezvousRejected, Peer: peer, Reason: "the peer refused the introduction"}
}

// noteResult schedules the next attempt for peer: none while direct,
// after RetryAfter doubling per consecutive failure otherwise.
func (e *Engine) noteResult(peer, coord identity.NodeID, err *Error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.retries[peer]
	if r == nil {
		if len(e.retries) >= maxRemembered {
			return
		}
		r = &retryState{}
		e.retries[peer] = r
	}
	r.coord, r.inflight, r.lastSeen = coord, false, time.Now()
	switch {
	case err == nil:
		r.failures, r.next, r.direct = 0, time.Time{}, true
	case err.Kind == KindPeerUnreachable:
		delete(e.retries, peer)
	default:
		r.failures++
		r.direct = false
		backoff := e.cfg.RetryAfter << min(r.failures-1, 5)
		r.next = time.Now().Add(min(backoff, maxRetryFactor*e.cfg.RetryAfter))
	}
}

// handleIntroduce runs on the coordinator: requester from asks to meet
// m.Peer.
func (e *Engine) handleIntroduce(from identity.NodeID, m Message) {
	fail := func(s Status) {
		e.send(from, Message{Type: MsgPunch, TxID: m.TxID, Peer: m.Peer, Status: s})
	}
	faddr, fup := e.tr.Path(from)
	taddr, tup := e.tr.Path(m.Peer)
	if !fup || !faddr.IsValid() || !tup || !taddr.IsValid() || m.Peer == from {
		fail(StatusNoRelay)
		return
	}
	key := txKey{from, m.TxID}
	e.mu.Lock()
	if _, dup := e.coordTx[key]; dup || len(e.coordTx) >= maxPending {
		e.mu.Unlock()
		fail(StatusRejected)
		return
	}
	e.coordTx[key] = &coordWait{
		to:      m.Peer,
		nat:     m.NAT,
		cands:   withFirst(faddr, m.Candidates),
		expires: time.Now().Add(rendezvousFactor * e.cfg.ReflexTimeout),
	}
	e.mu.Unlock()
	e.st.introductions.Add(1)
	if e.send(m.Peer, Message{Type: MsgOffer, TxID: m.TxID, Peer: from, NAT: m.NAT}) != nil {
		e.mu.Lock()
		delete(e.coordTx, key)
		e.mu.Unlock()
		fail(StatusNoRelay)
	}
}

// handleOffer runs on the target: coordinator from says m.Peer wants a
// direct path.
func (e *Engine) handleOffer(from identity.NodeID, m Message) {
	reply := Message{Type: MsgAccept, TxID: m.TxID, Peer: m.Peer}
	key := txKey{from, m.TxID}
	_, up := e.tr.Path(m.Peer)
	e.mu.Lock()
	_, dup := e.acceptTx[key]
	switch {
	case !up || m.Peer == from || dup || len(e.acceptTx) >= maxPending || e.closed || len(e.runs) >= maxPending:
		reply.Status = StatusRejected
	default:
		e.acceptTx[key] = acceptWait{peer: m.Peer, expires: time.Now().Add(rendezvousFactor * e.cfg.ReflexTimeout)}
		reply.NAT = e.selfTypeLocked()
		reply.Candidates = e.candidatesLocked()
	}
	e.mu.Unlock()
	e.send(from, reply)
}

// handleAccept runs on the coordinator: the target answered; send both
// sides the go signal back to back.
func (e *Engine) handleAccept(from identity.NodeID, m Message) {
	key := txKey{m.Peer, m.TxID}
	e.mu.Lock()
	c := e.coordTx[key]
	if c == nil || c.to != from {
		e.mu.Unlock()
		return
	}
	delete(e.coordTx, key)
	e.mu.Unlock()
	if m.Status != StatusOK {
		e.send(m.Peer, Message{Type: MsgPunch, TxID: m.TxID, Peer: from, Status: m.Status})
		return
	}
	taddr, _ := e.tr.Path(from)
	e.send(from, Message{Type: MsgPunch, TxID: m.TxID, Peer: m.Peer, NAT: c.nat, Candidates: c.cands})
	e.send(m.Peer, Message{Type: MsgPunch, TxID: m.TxID, Peer: from, NAT: m.NAT, Candidates: withFirst(taddr, m.Candidates)})
}

// handlePunch runs on both sides: the coordinator's go signal.
func (e *Engine) handlePunch(from identity.NodeID, m Message) {
	e.mu.Lock()
	if w := e.introTx[m.TxID]; w != nil && w.coord == from && w.target == m.Peer {
		e.mu.Unlock()
		res := introResult{status: m.Status}
		if m.Status == StatusOK {
			res.run = e.startPunch(m.Peer, identity.NodeID{}, m.NAT, m.Candidates)
		}
		select {
		case w.res <- res:
		default:
		}
		return
	}
	key := txKey{from, m.TxID}
	a, ok := e.acceptTx[key]
	if !ok || a.peer != m.Peer {
		e.mu.Unlock()
		return
	}
	delete(e.acceptTx, key)
	e.mu.Unlock()
	if m.Status == StatusOK {
		e.startPunch(m.Peer, from, m.NAT, m.Candidates)
	}
}

// startPunch starts a punch towards peer, or returns the one running;
// askedBy is the coordinator when the peer asked for it. The
// first round of probes leaves before it returns, so both sides, told at
// the same moment, probe at the same moment: a probe that reaches the
// other side's router before that side's own probe left can make a Linux
// router, which accepts stray packets to itself, record a conntrack entry
// that forces a new port on the other side's mapping.
//
// At most maxPending punches run at once: the candidates come from a
// coordinator, which is a peer, not trusted, and could otherwise make this
// node probe addresses of its choosing for every peer it has a session
// with at the same time. After Close no punch starts.
func (e *Engine) startPunch(peer, askedBy identity.NodeID, other Type, cands []netip.AddrPort) *run {
	r := &run{peer: peer, askedBy: askedBy, done: make(chan struct{}), start: time.Now()}
	e.mu.Lock()
	if old := e.runs[peer]; old != nil {
		e.mu.Unlock()
		return old
	}
	if e.closed || len(e.runs) >= maxPending {
		e.mu.Unlock()
		why := "too many punches in progress"
		if e.closed {
			why = "engine closed"
		}
		r.err = &Error{Kind: KindPunchFailed, Peer: peer, Reason: why}
		close(r.done)
		return r
	}
	self := e.selfTypeLocked()
	e.runs[peer] = r
	e.wg.Add(1) // under mu, before Close's Wait (see Close)
	var targets []netip.AddrPort
	for _, c := range cands {
		if probeable(c) && !slices.Contains(e.locals, c) && !slices.Contains(targets, c) {
			targets = append(targets, c)
		}
	}
	e.mu.Unlock()

	if ok, why := Decide(self, other); !ok {
		e.st.skipped.Add(1)
		e.finish(r, &Error{Kind: KindPunchFailed, Peer: peer, Reason: why})
		e.wg.Done()
		return r
	}
	e.st.attempted.Add(1)
	if len(targets) == 0 {
		e.finish(r, &Error{Kind: KindPunchFailed, Peer: peer, Reason: "the peer has no candidate address"})
		e.wg.Done()
		return r
	}
	e.probe(peer, targets)
	go e.drive(r, targets, self, other)
	return r
}

// probeable reports whether a candidate may be probed: a unicast address.
// A multicast or broadcast address is never a peer's endpoint, and a probe
// to it would reach every host on the link.
func probeable(a netip.AddrPort) bool {
	ip := a.Addr()
	return !ip.IsMulticast() && ip != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// probe sends one probe to each target.
func (e *Engine) probe(peer identity.NodeID, targets []netip.AddrPort) {
	for _, t := range targets {
		e.tr.Probe(peer, t)
	}
}

// drive keeps probing until the path is direct or the punch window ends.
func (e *Engine) drive(r *run, targets []netip.AddrPort, self, other Type) {
	defer e.wg.Done()
	poll := time.NewTicker(pathPoll)
	defer poll.Stop()
	deadline := r.start.Add(e.cfg.PunchTimeout)
	nextProbe := r.start.Add(e.cfg.ProbeInterval)
	for {
		select {
		case <-e.ctx.Done():
			e.finish(r, &Error{Kind: KindPunchFailed, Peer: r.peer, Reason: "engine closed"})
			return
		case now := <-poll.C:
			addr, up := e.tr.Path(r.peer)
			switch {
			case addr.IsValid():
				e.st.succeeded.Add(1)
				e.log.Info("punch succeeded", "peer", r.peer.Short(), "addr", addr, "took", now.Sub(r.start))
				e.finish(r, nil)
				return
			case !up:
				e.finish(r, &Error{Kind: KindPeerUnreachable, Peer: r.peer, Reason: "the session ended during the punch"})
				return
			case now.After(deadline):
				e.finish(r, &Error{Kind: KindPunchFailed, Peer: r.peer, Reason: fmt.Sprintf(
					"no direct answer from %d candidate address(es) within %v (NAT here %s, there %s)",
					len(targets), e.cfg.PunchTimeout, self, other)})
				return
			case !now.Before(nextProbe):
				nextProbe = now.Add(e.cfg.ProbeInterval)
				e.probe(r.peer, targets)
			}
		}
	}
}

// finish ends r with err and, on failure, records why the peer stays
// relayed; a failed punch the peer asked for is remembered, so that this
// node asks for one itself when its own address changes (see
// reachChangedLocked).
func (e *Engine) finish(r *run, err *Error) {
	if err != nil {
		e.st.fallbacks.Add(1)
		e.tr.SetPathReason(r.peer, err.Kind.String()+": "+err.Reason)
		e.log.Info("peer stays relayed", "peer", r.peer.Short(), "reason", err.Reason)
	}
	e.mu.Lock()
	r.err = err
	if e.runs[r.peer] == r {
		delete(e.runs, r.peer)
	}
	if err != nil && err.Kind == KindPunchFailed && !r.askedBy.IsZero() && len(e.asked) < maxRemembered {
		e.asked[r.peer] = r.askedBy
	}
	e.mu.Unlock()
	close(r.done)
}

// withFirst returns cands with first in front and duplicates removed,
// capped at MaxCandidates.
func withFirst(first netip.AddrPort, cands []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, MaxCandidates)
	for _, c := range append([]netip.AddrPort{first}, cands...) {
		if validAddr(c) && !slices.Contains(out, c) && len(out) < MaxCandidates {
			out = append(out, c)
		}
	}
	return out
}
