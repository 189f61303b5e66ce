// Package mesh is a netmesh node: it owns the UDP sockets, runs Noise
// handshakes with peers, keeps one encrypted session per peer and carries
// datagrams and the frames of the layers above (streams, capability gossip,
// channels, RPC) over it.
//
// A Mesh is created with New, started with Start and stopped with Close.
// Connect establishes a session with a peer at an address; after that either
// side can send, whoever dialled. Incoming datagrams are read with
// ReadDatagram.
//
// # Goroutines
//
// A started mesh runs, for its life: one reader and one writer per
// socket, the handshake worker, the transport's timer loop and the engine
// loop (peer changes and engine ticks). Besides these it spawns:
//
//   - per peer and protocol that carries streams (the application's,
//     capability gossip, channels, and any protocol listened or opened on),
//     the stream multiplexer's timer goroutine, from the first stream
//     frame until the peer's session ends;
//   - per peer and engine, while whole messages from the peer are ready,
//     a goroutine that hands them to the engine; it ends when none is
//     left, so an idle peer costs none (the channel engine's messages
//     are handed over on the socket reader, with no goroutine);
//   - per stream a peer opens on a HandleStreams protocol, the handler,
//     on a goroutine that waits up to 5 s for the next handler after it
//     returns (at most 64 wait), so a handler starts on a grown stack;
//   - while a configured relay is down, a dial every 5 s;
//   - per channel publisher it lost a subscription to and has no session
//     with, a dial, one at a time, for at most HandshakeGiveUp.
//
// Nothing is spawned per packet. Every queue between goroutines is
// bounded: a full send queue returns ErrBackpressure, a full receive
// queue drops and counts.
package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/udp"
	"github.com/netmesh/netmesh/noise"
)

// Mesh is a netmesh node. Its methods are safe for concurrent use.
//
// Mesh is the composition root: it wires the transport (sockets,
// handshakes, sessions, routes, timers; transport.go) to the per-peer
// stream multiplexers (streams.go) and the engines (capability gossip,
// channels, NAT traversal), and keeps the dispatch table (protocols.go)
// that says which of them takes each protocol's frames.
type Mesh struct {
	cfg Config
	id  *identity.Identity
	log *slog.Logger
	tr  *transport

	// protos is the dispatch table: who takes each protocol's frames.
	protos registry
	// userStreams takes the application's streams, for AcceptStream.
	userStreams *StreamListener
	watchers    watchers
	// handlers runs the handlers of HandleStreams protocols.
	handlers handlerPool

	caps  *capability.Engine
	chans *channel.Engine
	// subnetTag is the capability tag of the subnet pinned in
	// Config.Channels, or "".
	subnetTag string
	// peerChanges carries peer ups and downs to the engines.
	peerChanges chan peerChange
	// reaching holds the NodeIDs the channel engine asked to reach while
	// the dial runs (chanTransport.Reach).
	reaching sync.Map
	// leaveAcks receives the acknowledgements of Leave's goodbyes while
	// Leave waits for them (leave.go).
	leaveAcks atomic.Pointer[chan identity.NodeID]
	// nat is the NAT traversal engine (nat_on.go; empty in nat_off.go).
	nat natState //lint:ignore U1000 used only with the nat build tag
	// mem is the membership bookkeeping (membership.go).
	mem memberState

	// wg counts the goroutines the mesh itself starts: the engine loop
	// and the drains of engine streams.
	wg sync.WaitGroup
	// noWait is a context that has ended: a read with it takes only what
	// is ready.
	noWait context.Context
}

// New creates a mesh from cfg. It opens no socket; Start does.
func New(cfg Config) (*Mesh, error) {
	if cfg.CipherSuite != 0 && !cfg.CipherSuite.Valid() {
		return nil, fmt.Errorf("mesh: Config.CipherSuite: unknown suite %v", cfg.CipherSuite)
	}
	id := cfg.Identity
	if id == nil {
		var err error
		if id, err = identity.Generate(); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mesh{
		cfg:         cfg,
		id:          id,
		log:         log.With("node", id.NodeID().Short()),
		peerChanges: make(chan peerChange, peerChangeQueue),
		handlers:    handlerPool{maxIdle: maxIdleHandlers, idle: handlerIdle},
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.noWait = ctx
	m.tr = newTransport(&m.cfg, id, m.log, m)
	m.watchers.init()
	m.userStreams = m.newListener(protoStream)
	if _, err := m.listen(m.userStreams); err != nil {
		return nil, err
	}
	if err := m.protos.add(&registration{proto: protoLeave, frames: m.handleLeave}); err != nil {
		return nil, err
	}
	if err := m.newCapabilities(cfg.Capabilities); err != nil {
		return nil, err
	}
	if err := m.newChannels(cfg.Channels); err != nil {
		return nil, err
	}
	if err := m.newMembership(); err != nil {
		return nil, err
	}
	return m, nil
}

// Start opens the sockets and starts the node's goroutines. The context
// only bounds start-up; Close stops the node.
func (m *Mesh) Start(ctx context.Context) error {
	if m.tr.closed.Load() {
		return ErrClosed
	}
	if !m.tr.started.CompareAndSwap(false, true) {
		return fmt.Errorf("mesh: already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The static key and its signature, now rather than in the node's
	// first handshake (about 65 µs of public-key work on each side).
	noise.PrepareIdentity(m.id)
	if err := m.tr.start(); err != nil {
		return err
	}
	m.wg.Add(1)
	go m.engineLoop()
	m.startNAT()
	m.log.Info("mesh started", "id", m.id.NodeID(), "addrs", m.ListenAddrs())
	return nil
}

// Close stops the node: it closes the sockets, ends every session without
// notice to peers, and waits for its goroutines. Pending calls return
// ErrClosed. Close is idempotent.
func (m *Mesh) Close() error {
	if !m.tr.closed.CompareAndSwap(false, true) {
		return nil
	}
	m.tr.cancel()
	m.stopNAT()
	for _, p := range m.tr.peers.all() {
		m.closeStreams(p)
	}
	m.tr.close()
	m.wg.Wait()
	m.handlers.close()
	m.watchers.stopAll()
	return nil
}

// Connect establishes a session with the node at addr, or returns the peer
// if one is already up there. It blocks until the handshake completes, ctx
// ends or the handshake gives up.
func (m *Mesh) Connect(ctx context.Context, addr netip.AddrPort, pin Pin) (*Peer, error) {
	if !m.tr.started.Load() {
		return nil, ErrNotStarted
	}
	if m.tr.closed.Load() || m.tr.leaving.Load() {
		return nil, ErrClosed
	}
	return m.tr.connect(ctx, addr, pin)
}

// ID returns the node's NodeID.
func (m *Mesh) ID() identity.NodeID { return m.id.NodeID() }

// Identity returns the node's identity.
func (m *Mesh) Identity() *identity.Identity { return m.id }

// ListenAddrs returns the addresses of the node's sockets, after Start.
func (m *Mesh) ListenAddrs() []netip.AddrPort { return m.tr.listenAddrs() }

// Addr returns the first socket's address, with an unspecified IP replaced
// by the loopback address of its family: the address a peer on this host
// would dial. Tests and demos use it.
func (m *Mesh) Addr() netip.AddrPort {
	if len(m.tr.socks) == 0 {
		return netip.AddrPort{}
	}
	a := m.tr.socks[0].conn.LocalAddr()
	if a.Addr().IsUnspecified() {
		lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if a.Addr().Is6() {
			lo = netip.IPv6Loopback()
		}
		a = netip.AddrPortFrom(lo, a.Port())
	}
	return a
}

// Stats returns a snapshot of the node's counters and peers.
func (m *Mesh) Stats() Stats {
	st := Stats{
		NodeID:              m.ID(),
		ListenAddrs:         m.ListenAddrs(),
		Drops:               make(map[string]uint64),
		SendBackpressure:    m.tr.stats.sendBackpressure.Load(),
		SocketWrites:        m.tr.stats.socketWrites.Load(),
		PacketsWritten:      m.tr.stats.packetsWritten.Load(),
		HandshakesInitiated: m.tr.stats.handshakesInitiated.Load(),
		SuiteFallbacks:      m.tr.stats.suiteFallbacks.Load(),
		HandshakesCompleted: m.tr.stats.handshakesCompleted.Load(),
		HandshakesProcessed: m.tr.stats.handshakesProcessed.Load(),
		CookiesSent:         m.tr.stats.cookiesSent.Load(),
		Relayed:             m.tr.stats.relayed.Load(),
		RoutesRefused:       m.tr.stats.routesRefused.Load(),
		PeerEventsDropped:   m.tr.stats.peerEventsDropped.Load(),
	}
	if len(m.tr.socks) > 0 {
		if c, ok := m.tr.socks[0].conn.(interface{ Mode() string }); ok {
			st.IOMode = c.Mode()
		}
	}
	for _, s := range m.tr.socks {
		if c, ok := s.conn.(interface{ Stats() udp.Stats }); ok {
			st.SocketDrops += c.Stats().Dropped
		}
	}
	for r := range numDropReasons {
		if n := m.tr.stats.drops[r].Load(); n > 0 {
			st.Drops[r.String()] = n
		}
	}
	for _, p := range m.Peers() {
		st.Peers = append(st.Peers, p.Stats())
	}
	return st
}
