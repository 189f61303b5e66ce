package mesh

import (
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/stream"
)

// Engines. The capability and channel engines exchange messages, which
// may exceed a datagram, on a protocol of their own each: every node
// opens one reliable stream per peer on it and sends its messages there
// (sendMessage); the streams a peer opens are read by a goroutine that
// hands each message to the engine (readMessages). The engine loop tells
// the engines about peers coming and going and drives their timers.

// MessageHandler receives one engine message from a peer. It runs on the
// goroutine reading that peer's stream and may block briefly; msg is the
// handler's to keep.
type MessageHandler func(from *Peer, msg []byte)

// handleMessages registers the engine that receives proto's messages.
func (m *Mesh) handleMessages(proto Protocol, h MessageHandler) error {
	return m.protos.add(&registration{proto: proto, messages: h})
}

// sendMessage sends one engine message to p on proto's stream. It never
// blocks (a full window is ErrBackpressure) and takes no lock of the
// node. A stream that was reset (by either side, e.g. the peer refusing
// an oversized message) is replaced by a new one, so one bad message does
// not cut the engine off from the peer until the session ends.
func (m *Mesh) sendMessage(p *Peer, proto Protocol, msg []byte) error {
	if !p.IsUp() {
		return ErrNoSession
	}
	pm := m.muxFor(p, proto.id)
	out := pm.out.Load()
	if out == nil || out.Err() != nil {
		s, err := pm.mux.Open(m.tr.ctx, StreamConfig{})
		if err != nil {
			return err
		}
		if pm.out.CompareAndSwap(out, s) {
			out = s
		} else {
			s.Reset(stream.CodeRefused) // another sender replaced it first; s sent nothing
			out = pm.out.Load()
		}
	}
	return out.Send(m.tr.ctx, msg)
}

// readMessages hands every message of an engine stream to its engine.
func (m *Mesh) readMessages(p *Peer, h MessageHandler, s *Stream) {
	defer m.wg.Done()
	for {
		msg, err := s.Recv(m.tr.ctx)
		if err != nil {
			s.Reset(stream.CodeRefused)
			return
		}
		h(p, msg)
	}
}

// peerChange is a peer coming up or going down, for the engines.
type peerChange struct {
	id identity.NodeID
	up bool
}

// engineLoop tells the engines about peer changes, outside any lock of
// the transport (they call back into the mesh), and drives their timers.
func (m *Mesh) engineLoop() {
	defer m.wg.Done()
	tick := time.NewTicker(capability.TickInterval)
	defer tick.Stop()
	for {
		select {
		case c := <-m.peerChanges:
			if c.up {
				m.caps.PeerUp(c.id)
			} else {
				m.caps.PeerDown(c.id)
			}
		case <-tick.C:
			m.caps.Tick()
			m.chans.Tick()
		case <-m.tr.ctx.Done():
			return
		}
	}
}
