package mesh

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/stream"
)

// Engines. The capability and channel engines exchange messages, which
// may exceed a datagram, on a protocol of their own each: every node
// opens one reliable stream per peer on it and sends its messages there
// (sendMessage). The stream a peer opens is read without a goroutine of
// its own (engineIn): the socket reader kicks it after each of the peer's
// frames on the protocol, and a goroutine drains the whole messages then
// ready and ends. An engine whose handler is cheap and never blocks is
// drained on the socket reader itself (handleMessagesInline): the channel
// engine, whose publishes are latency-bound, saves a goroutine start and
// a hand-off per frame that way. The engine loop tells the engines about
// peers coming and going and drives their timers.

// MessageHandler receives one engine message from a peer. It runs on the
// goroutine draining that peer's stream (the socket reader, for an inline
// engine) and may block briefly; msg is lent for the call only (the
// engines do not keep it).
type MessageHandler func(from *Peer, msg []byte)

// handleMessages registers the engine that receives proto's messages.
func (m *Mesh) handleMessages(proto Protocol, h MessageHandler) error {
	return m.protos.add(&registration{proto: proto, messages: h})
}

// handleMessagesInline is handleMessages for an engine whose handler is
// cheap and never blocks: it runs on the socket reader.
func (m *Mesh) handleMessagesInline(proto Protocol, h MessageHandler) error {
	return m.protos.add(&registration{proto: proto, messages: h, inline: true})
}

// sendMessage sends one engine message to p on proto's stream. It never
// blocks (a full window is ErrBackpressure) and takes no lock of the
// node. A stream that was reset (by either side, e.g. the peer refusing
// an oversized message) is replaced by a new one, so one bad message does
// not cut the engine off from the peer until the session ends.
func (m *Mesh) sendMessage(p *Peer, proto Protocol, msg []byte) error {
	out, err := m.engineStream(p, proto)
	if err != nil {
		return err
	}
	return out.Send(m.tr.ctx, msg)
}

// engineStream returns this node's stream for proto's engine messages to
// p, opening a new one when there is none or it was reset.
func (m *Mesh) engineStream(p *Peer, proto Protocol) (*Stream, error) {
	if !p.IsUp() {
		return nil, ErrNoSession
	}
	pm := m.muxFor(p, proto.id)
	out := pm.out.Load()
	if out == nil || out.Err() != nil {
		s, err := pm.mux.Open(m.tr.ctx, StreamConfig{})
		if err != nil {
			return nil, err
		}
		if pm.out.CompareAndSwap(out, s) {
			out = s
		} else {
			s.Reset(stream.CodeRefused) // another sender replaced it first; s sent nothing
			out = pm.out.Load()
		}
	}
	return out, nil
}

// engineIn is the stream a peer opened to send one engine's messages. No
// goroutine waits on it: kick starts one, if none runs, to hand the whole
// messages that are ready to the engine, and it ends as soon as none is
// left. An idle or silent peer therefore costs no goroutine, and neither
// does a peer that opens engine streams by the thousand: each new one
// replaces the one before (the peer's engine sends on one at a time),
// which is reset.
type engineIn struct {
	s      *Stream
	p      *Peer
	h      MessageHandler
	inline bool         // drained on the socket reader
	state  atomic.Int32 // drainIdle, drainRunning or drainAgain
}

// The states of an engineIn's drain.
const (
	drainIdle    = iota // no goroutine
	drainRunning        // a goroutine drains
	drainAgain          // a goroutine drains, and must look once more before it ends
)

// acceptEngineStream makes s, which p opened on reg's protocol, p's
// stream for reg's engine. It runs under the Mux's lock (see
// acceptStream): the stream it replaces is reset later, by
// afterEngineFrame.
func (m *Mesh) acceptEngineStream(p *Peer, reg *registration, s *Stream) {
	pm := p.streams.get(reg.proto.id)
	if pm == nil {
		return // the peer's streams were closed meanwhile
	}
	if old := pm.in.Swap(&engineIn{s: s, p: p, h: reg.messages, inline: reg.inline}); old != nil {
		pm.replaced.Store(old)
	}
}

// afterEngineFrame follows every frame of p's engine protocol, on the
// socket reader: it resets the stream a new one replaced and kicks the
// current one.
func (m *Mesh) afterEngineFrame(pm *protoMux) {
	if old := pm.replaced.Swap(nil); old != nil {
		old.s.Reset(stream.CodeRefused)
	}
	if in := pm.in.Load(); in != nil {
		m.kick(in)
	}
}

// kick makes sure in is drained after the frame just handled: by a
// goroutine, or here for an inline engine.
func (m *Mesh) kick(in *engineIn) {
	for {
		switch st := in.state.Load(); st {
		case drainIdle:
			if in.state.CompareAndSwap(drainIdle, drainRunning) {
				m.wg.Add(1) // on a socket reader, before Close waits for m.wg
				if in.inline {
					m.drain(in)
				} else {
					go m.drain(in)
				}
				return
			}
		case drainRunning:
			if in.state.CompareAndSwap(drainRunning, drainAgain) {
				return
			}
		default:
			return
		}
	}
}

// drain hands every whole message of in that is ready to its engine,
// lending the stream's buffers, and ends when none is left (or the
// stream ended, which resets it).
func (m *Mesh) drain(in *engineIn) {
	defer m.wg.Done()
	for {
		for msg, err := range in.s.Messages(m.noWait) {
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					in.s.Reset(stream.CodeRefused) // it ended: nothing more comes
				}
				break
			}
			in.h(in.p, msg)
		}
		if m.tr.closed.Load() || in.state.CompareAndSwap(drainRunning, drainIdle) {
			return
		}
		in.state.Store(drainRunning) // it was drainAgain: look once more
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
				m.chans.PeerUp(c.id)
				m.memberPeerUp(c.id)
			} else {
				m.caps.PeerDown(c.id)
				m.chans.PeerDown(c.id)
			}
		case <-tick.C:
			m.caps.Tick()
			m.chans.Tick()
			m.memberTick()
		case <-m.tr.ctx.Done():
			return
		}
	}
}
