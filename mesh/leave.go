package mesh

import (
	"context"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Leaving. A node that stops for good says so, rather than leaving its
// peers to notice the silence. Leave withdraws the node's capability
// announcement, sends each peer a goodbye on its session, and closes.
// A goodbye is a frame of the mesh's leave protocol: only the node's own
// session can carry one, so it is authenticated like any data packet,
// and a replayed copy is refused by the session's replay window. It
// carries the node's signed withdrawal, so the peer drops the node from
// its capability index at once (NodeLeft) even if the copy gossiped on
// the capability stream is still on its way. The peer answers with an
// acknowledgement and takes the node down (PeerEvent.Reason "the peer
// left"), ending its dials to it; the leaving node resends a goodbye that
// was not acknowledged and refuses handshakes, so no peer dials it back
// while it goes.
//
// Relays first: a peer reached through a relay hears the goodbye through
// it, so the node says goodbye to such peers before it says goodbye to
// the relays themselves, which drop its session when they hear theirs.

// The leave protocol's messages: one byte, then the body.
const (
	// leaveGoodbye: the sender leaves; the body is its signed capability
	// withdrawal (capability wire format), or empty.
	leaveGoodbye byte = 1
	// leaveAck: the goodbye arrived; no body.
	leaveAck byte = 2
)

// Leave takes the node out of the mesh for good, then closes it: it
// withdraws the node's capability announcement, says goodbye to every
// peer with a session (each takes the node down at once, and its index
// drops the node with a NodeLeft event), waits for their
// acknowledgements until ctx ends or at most 2 s, resending goodbyes
// that were lost, and closes the node. From its start the node refuses
// handshakes and makes no new sessions, so no peer dials it back while it
// goes. A node that was never started is closed. Leave and Close are
// both safe to call afterwards, and concurrently; Leave returns once the
// node is closed.
func (m *Mesh) Leave(ctx context.Context) error {
	t := m.tr
	if !t.started.Load() || t.closed.Load() {
		return m.Close()
	}
	if !t.leaving.CompareAndSwap(false, true) {
		<-t.ctx.Done() // another Leave says goodbye; it closes the node
		return nil
	}
	withdrawal := m.caps.Withdraw()
	if 1+len(withdrawal) > MaxDatagramSize {
		withdrawal = nil // the capability stream carries it alone
	}
	ctx, cancel := context.WithTimeout(ctx, leaveWait)
	defer cancel()
	var relayed, direct []*Peer
	for _, p := range m.Peers() {
		switch ep := p.ep.Load(); {
		case !p.IsUp() || ep == nil:
		case ep.relay != nil:
			relayed = append(relayed, p)
		default:
			direct = append(direct, p)
		}
	}
	acks := make(chan identity.NodeID, len(relayed)+len(direct))
	m.leaveAcks.Store(&acks)
	if len(relayed) > 0 {
		// Half the time for the relayed peers, the rest for the others.
		half := leaveWait / 2
		if d, ok := ctx.Deadline(); ok {
			half = time.Until(d) / 2
		}
		rctx, rcancel := context.WithTimeout(ctx, half)
		m.sayGoodbye(rctx, relayed, withdrawal, acks)
		rcancel()
	}
	m.sayGoodbye(ctx, direct, withdrawal, acks)
	return m.Close()
}

// sayGoodbye sends each of peers a goodbye carrying withdrawal, and
// resends it every leaveRetransmit to those that have not acknowledged,
// until all have or ctx ends.
func (m *Mesh) sayGoodbye(ctx context.Context, peers []*Peer, withdrawal []byte, acks <-chan identity.NodeID) {
	pending := make(map[identity.NodeID]*Peer, len(peers))
	for _, p := range peers {
		pending[p.id] = p
	}
	head := []byte{leaveGoodbye}
	send := func() {
		for id, p := range pending {
			if m.tr.sendFrame(p, protoLeave.id, head, withdrawal) == ErrNoSession {
				delete(pending, id) // down meanwhile: nobody to tell
			}
		}
	}
	send()
	resend := time.NewTicker(leaveRetransmit)
	defer resend.Stop()
	for len(pending) > 0 {
		select {
		case id := <-acks:
			delete(pending, id)
		case <-resend.C:
			send()
		case <-ctx.Done():
			return
		}
	}
}

// handleLeave takes a frame of the leave protocol from p, on the socket
// reader.
func (m *Mesh) handleLeave(p *Peer, body []byte) {
	if len(body) == 0 {
		m.tr.stats.drop(DropShort)
		return
	}
	switch body[0] {
	case leaveGoodbye:
		if len(body) > 1 {
			// Checked like any announcement: signed by its origin, newer
			// than what it withdraws. Rejections are counted there.
			_ = m.caps.HandleMessage(p.id, body[1:])
		}
		m.tr.sendFrame(p, protoLeave.id, []byte{leaveAck}, nil)
		m.tr.peerLeft(p)
	case leaveAck:
		if ch := m.leaveAcks.Load(); ch != nil {
			select {
			case *ch <- p.id:
			default: // a duplicate beyond the peers asked: the ack is known
			}
		}
	default:
		m.tr.stats.drop(DropUnknownType)
	}
}

// peerLeft takes p down after its goodbye: its sessions end, and with
// them any dial to it.
func (t *transport) peerLeft(p *Peer) {
	t.hs.mu.Lock()
	defer t.hs.mu.Unlock()
	if d := p.dial; d != nil {
		t.finishDialLocked(d, nil, ErrPeerLeft)
	}
	t.downLocked(p, downLeft)
}
