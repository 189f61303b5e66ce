package mesh

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/netmesh/netmesh/mesh/wire"
)

// Protocols. Every frame inside a session names the protocol that takes
// it (wire.Proto, 16 bits). The session's own protocols (keepalive,
// datagram, ping, pong, routed packets) and the engines the mesh wires
// itself (capability gossip, the application's streams, channels, NAT
// traversal) have fixed numbers below 256. Every other layer (package
// rpc, the task and daemon layers, applications) names its protocol,
// and the number is derived from the name, so two nodes agree on it
// without anyone picking one by hand. The node's registry is its one
// dispatch table: a frame whose protocol nobody registered is dropped
// and counted (DropNoHandler), and a stream opened on it is refused.

// Protocol is a protocol carried inside sessions, named by the layer that
// owns it. Make one with NewProtocol; the zero Protocol is not valid.
type Protocol struct {
	name string
	id   wire.Proto
}

// The mesh's own protocols.
var (
	protoKeepalive  = Protocol{"netmesh/keepalive", 0}  // empty body; keeps NAT mappings open and proves liveness
	protoDatagram   = Protocol{"netmesh/datagram", 1}   // an unreliable user datagram
	protoPing       = Protocol{"netmesh/ping", 2}       // RTT probe; body is wire.PingSize bytes
	protoPong       = Protocol{"netmesh/pong", 3}       // RTT probe answer; echoes the ping body
	protoRoute      = Protocol{"netmesh/route", 4}      // a routed packet (see wire.RouteHeader)
	protoCapability = Protocol{"netmesh/capability", 5} // capability gossip (engine messages)
	protoStream     = Protocol{"netmesh/stream", 6}     // the application's streams (OpenStream)
	protoChannel    = Protocol{"netmesh/channel", 7}    // pub/sub channels (engine messages)
	protoNAT        = Protocol{"netmesh/nat", 8}        // NAT traversal frames
	protoLeave      = Protocol{"netmesh/leave", 9}      // goodbye and its acknowledgement (leave.go)
)

// builtins are the mesh's own protocols, which NewProtocol does not hand
// out.
var builtins = []Protocol{
	protoKeepalive, protoDatagram, protoPing, protoPong, protoRoute,
	protoCapability, protoStream, protoChannel, protoNAT, protoLeave,
}

// Named protocol numbers lie in [minNamedProto, 65535]; the mesh keeps
// the numbers below for its own.
const minNamedProto = 256

// maxProtocolName bounds a protocol's name, in bytes.
const maxProtocolName = 64

// NewProtocol returns the protocol called name: 1 to 64 printable ASCII
// bytes, by convention "owner/protocol" (package rpc's is "netmesh/rpc").
// Its number is derived from the name (a hash), so every node that uses
// the name agrees on it. Two names may in rare cases share a number: a
// node refuses to register the second (ErrProtoInUse), so rename one.
func NewProtocol(name string) (Protocol, error) {
	if len(name) == 0 || len(name) > maxProtocolName {
		return Protocol{}, fmt.Errorf("mesh: protocol name %q must be 1 to %d bytes", name, maxProtocolName)
	}
	for i := range len(name) {
		if c := name[i]; c <= ' ' || c > '~' {
			return Protocol{}, fmt.Errorf("mesh: protocol name %q must be printable ASCII without spaces", name)
		}
	}
	for _, b := range builtins {
		if b.name == name {
			return Protocol{}, fmt.Errorf("mesh: protocol name %q belongs to the mesh", name)
		}
	}
	sum := sha256.Sum256([]byte("netmesh protocol " + name))
	n := binary.LittleEndian.Uint16(sum[:])
	return Protocol{name: name, id: wire.Proto(minNamedProto + int(n)%(1<<16-minNamedProto))}, nil
}

// MustProtocol is NewProtocol for names known to be valid, such as
// constants; it panics on an invalid name.
func MustProtocol(name string) Protocol {
	p, err := NewProtocol(name)
	if err != nil {
		panic(err)
	}
	return p
}

// Name returns the protocol's name.
func (p Protocol) Name() string { return p.name }

// Number returns the protocol's number on the wire.
func (p Protocol) Number() wire.Proto { return p.id }

// String returns the name and number, as in "netmesh/rpc (4711)".
func (p Protocol) String() string { return fmt.Sprintf("%s (%d)", p.name, p.id) }

// valid reports whether p was made by NewProtocol or is the mesh's own.
func (p Protocol) valid() bool { return p.name != "" }

// Handler receives the raw frames of one protocol (see Handle). It runs
// on the socket's reader goroutine: it must not block, and body is valid
// only during the call (copy what you keep).
type Handler func(from *Peer, body []byte)

// Handle registers h for the raw frames of proto (see SendFrame). It
// fails with ErrProtoInUse if proto's number already has a handler or a
// stream listener on this node.
func (m *Mesh) Handle(proto Protocol, h Handler) error {
	if h == nil {
		return errors.New("mesh: Handle with a nil handler")
	}
	return m.protos.add(&registration{proto: proto, frames: h})
}

// deliver hands a frame of a protocol above the session to whoever
// registered it: a raw frame to its Handler, a stream frame to the peer's
// Mux for the protocol (made on first use). A frame of a protocol this
// node neither registered nor opened streams on is dropped; if it opens a
// stream, the stream is refused, without building a Mux for it.
func (m *Mesh) deliver(p *Peer, proto wire.Proto, body []byte) {
	reg := m.protos.lookup(proto)
	switch {
	case reg != nil && reg.frames != nil:
		reg.frames(p, body)
		return
	case reg != nil && reg.messages != nil:
		if !m.tr.isMember(p) {
			// Engines hear members only (admission.go).
			m.tr.stats.drop(DropNotMember)
			return
		}
		pm := m.muxFor(p, proto)
		pm.mux.HandleFrame(body)
		m.afterEngineFrame(pm)
		return
	case reg != nil:
		m.muxFor(p, proto).mux.HandleFrame(body)
		return
	}
	if pm := p.streams.get(proto); pm != nil {
		pm.mux.HandleFrame(body) // streams this node opened
		return
	}
	m.refuseStream(p, proto, body)
	m.tr.stats.drop(DropNoHandler)
}

// registration is what takes one protocol's frames on this node: exactly
// one of its fields is set.
type registration struct {
	proto Protocol
	// frames takes each raw frame (Handle).
	frames Handler
	// streams takes the streams peers open (ListenStreams, HandleStreams,
	// AcceptStream).
	streams *StreamListener
	// messages takes each engine message; every node opens one stream
	// per peer to carry them (see engines.go).
	messages MessageHandler
	// inline runs messages on the socket reader (see engines.go).
	inline bool
}

// registry is the node's dispatch table. Registration is rare and takes
// mu; the socket readers look protocols up without a lock, in a map that
// is replaced, never changed.
type registry struct {
	mu    sync.Mutex
	table atomic.Pointer[map[wire.Proto]*registration]
}

// lookup returns the registration of protocol number id, or nil.
func (r *registry) lookup(id wire.Proto) *registration {
	if t := r.table.Load(); t != nil {
		return (*t)[id]
	}
	return nil
}

// add registers reg, failing with ErrProtoInUse if its number is taken.
func (r *registry) add(reg *registration) error {
	if !reg.proto.valid() {
		return fmt.Errorf("mesh: the zero Protocol; make one with NewProtocol")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	if old != nil {
		if o := (*old)[reg.proto.id]; o != nil {
			if o.proto.name != reg.proto.name {
				return fmt.Errorf("%w: %v has the number of %v; rename one", ErrProtoInUse, reg.proto, o.proto)
			}
			return fmt.Errorf("%w: %v", ErrProtoInUse, reg.proto)
		}
	}
	next := map[wire.Proto]*registration{}
	if old != nil {
		next = maps.Clone(*old)
	}
	next[reg.proto.id] = reg
	r.table.Store(&next)
	return nil
}

// remove unregisters reg, if it is still registered.
func (r *registry) remove(reg *registration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	if old == nil || (*old)[reg.proto.id] != reg {
		return false
	}
	next := maps.Clone(*old)
	delete(next, reg.proto.id)
	r.table.Store(&next)
	return true
}
