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
// A started mesh runs one reader per socket, one writer per socket, one
// handshake worker and one timer loop; nothing is spawned per packet or per
// peer. Every queue between them is bounded: a full send queue returns
// ErrBackpressure, a full receive queue drops and counts.
package mesh

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/udp"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// Mesh is a netmesh node. Its methods are safe for concurrent use.
type Mesh struct {
	cfg   Config
	id    *identity.Identity
	log   *slog.Logger
	t     timers
	epoch time.Time // monotonic base for the atomic timestamps below
	// incarnation tells this run of the node from its others: peers that
	// see it change know the node restarted (noise.Peer.Incarnation).
	incarnation uint64

	socks []*socket
	// probeMTU: every socket sends with don't-fragment set, so streams
	// may probe for a larger path MTU (see streams.go).
	probeMTU bool
	macs     macKeys
	hsq      chan hsJob // to the handshake worker
	dgram    chan *inPacket
	// protos is the dispatch table: who takes each protocol's frames.
	protos registry
	// userStreams takes the application's streams, for AcceptStream.
	userStreams *StreamListener
	limit       *rateLimiter[netip.Addr]
	// relayLimit is limit for initiations relayed by a peer, by its id.
	relayLimit *rateLimiter[identity.NodeID]
	stats      counters

	// underLoadUntil is the mono time until which initiations need a
	// cookie (see handshake.go).
	underLoadUntil atomic.Int64

	caps  *capability.Engine
	chans *channel.Engine
	// subnetTag is the capability tag of the subnet pinned in
	// Config.Channels, or "".
	subnetTag string
	// announceMu serialises announcements; announced is the user's last
	// set, before withExtras.
	announceMu sync.Mutex
	announced  capability.Set
	// peerChanges carries peer ups and downs to the engines.
	peerChanges chan peerChange
	// stun receives STUN messages that arrive on the mesh's sockets (the
	// NAT engine registers it; without it they are dropped).
	stun atomic.Pointer[func(b []byte, from netip.AddrPort)]
	// nat is the NAT traversal engine (nat_on.go; empty in nat_off.go).
	nat natState //lint:ignore U1000 used only with the nat build tag

	lastStamp atomic.Int64 // see pingStamp
	pingMu    sync.Mutex
	pings     map[uint64]chan time.Duration // Ping calls waiting, by stamp

	// mu guards the maps below and every Peer's session and dial fields.
	// Methods named ...Locked expect the caller to hold it.
	mu       sync.RWMutex
	peers    map[identity.NodeID]*Peer
	sessions map[uint32]*session   // by our receiver index
	pending  map[uint32]*handshake // by our receiver index
	// confirming are the XX dials that sent their final message and
	// wait for the responder to confirm the session (several may wait
	// for one peer); the timer loop drives them.
	confirming map[*dial]struct{}
	routes     map[identity.NodeID]route
	// reverseRoutes counts the reverse routes in routes, reverseVia
	// those through each neighbour (see maxReverseRoutes).
	reverseRoutes int
	reverseVia    map[identity.NodeID]int
	maxPeers      int
	watchers      map[*watcher]struct{}

	ctx     context.Context // ends on Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool
	closed  atomic.Bool
}

// New creates a mesh from cfg. It opens no socket; Start does.
func New(cfg Config) (*Mesh, error) {
	id := cfg.Identity
	if id == nil {
		var err error
		if id, err = identity.Generate(); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mesh{
		cfg:         cfg,
		id:          id,
		log:         log.With("node", id.NodeID().Short()),
		t:           cfg.timers(),
		epoch:       time.Now(),
		incarnation: rand.Uint64(),
		hsq:         make(chan hsJob, orDefault(cfg.HandshakeQueue, defaultHandshakeQueue)),
		dgram:       make(chan *inPacket, orDefault(cfg.DatagramQueue, defaultDatagramQueue)),
		peerChanges: make(chan peerChange, peerChangeQueue),
		limit:       newRateLimiter[netip.Addr](orDefault(cfg.HandshakeRate, defaultHandshakeRate)),
		relayLimit:  newRateLimiter[identity.NodeID](orDefault(cfg.HandshakeRate, defaultHandshakeRate)),
		peers:       make(map[identity.NodeID]*Peer),
		sessions:    make(map[uint32]*session),
		pending:     make(map[uint32]*handshake),
		confirming:  make(map[*dial]struct{}),
		routes:      make(map[identity.NodeID]route),
		reverseVia:  make(map[identity.NodeID]int),
		maxPeers:    orDefault(cfg.MaxPeers, defaultMaxPeers),
		pings:       make(map[uint64]chan time.Duration),
		watchers:    make(map[*watcher]struct{}),
		ctx:         ctx,
		cancel:      cancel,
	}
	m.macs.init(id.PublicKey())
	m.userStreams = m.newListener(protoStream)
	if _, err := m.listen(m.userStreams); err != nil {
		cancel()
		return nil, err
	}
	if err := m.newCapabilities(cfg.Capabilities); err != nil {
		cancel()
		return nil, err
	}
	if err := m.newChannels(cfg.Channels); err != nil {
		cancel()
		return nil, err
	}
	return m, nil
}

// Start opens the sockets and starts the node's goroutines. The context
// only bounds start-up; Close stops the node.
func (m *Mesh) Start(ctx context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if !m.started.CompareAndSwap(false, true) {
		return fmt.Errorf("mesh: already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The static key and its signature, now rather than in the node's
	// first handshake (about 65 µs of public-key work on each side).
	noise.PrepareIdentity(m.id)
	conns, err := m.openConns()
	if err != nil {
		return err
	}
	q := orDefault(m.cfg.SendQueue, defaultSendQueue)
	for _, c := range conns {
		s := &socket{conn: c, queue: make(chan *outPacket, q), v6: c.LocalAddr().Addr().Is6()}
		m.socks = append(m.socks, s)
	}
	m.probeMTU = true
	for _, s := range m.socks {
		f, ok := s.conn.(interface{ Features() udp.Features })
		m.probeMTU = m.probeMTU && ok && f.Features().DF
	}
	for _, s := range m.socks {
		m.wg.Add(2)
		go m.readLoop(s)
		go m.writeLoop(s)
	}
	m.wg.Add(2)
	go m.handshakeWorker()
	go m.timerLoop()
	m.keepRelays()
	m.startNAT()
	m.log.Info("mesh started", "id", m.id.NodeID(), "addrs", m.ListenAddrs())
	return nil
}

func (m *Mesh) openConns() ([]udp.Conn, error) {
	if m.cfg.Conn != nil {
		return []udp.Conn{m.cfg.Conn}, nil
	}
	addr := m.cfg.ListenAddr
	if addr == "" {
		addr = ":0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen address %q: %w", addr, err)
	}
	if host == "" {
		p, err := netip.ParseAddrPort("0.0.0.0:" + port)
		if err != nil {
			return nil, fmt.Errorf("mesh: listen address %q: %w", addr, err)
		}
		c4, err := udp.Listen("udp4", p)
		if err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
		c6, err := udp.Listen("udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), p.Port()))
		if err != nil {
			// A host without IPv6 still gets an IPv4 node.
			m.log.Warn("no IPv6 socket", "err", err)
			return []udp.Conn{c4}, nil
		}
		return []udp.Conn{c4, c6}, nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen address %q must be ip:port or :port: %w", addr, err)
	}
	network := "udp4"
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		network = "udp6"
	}
	c, err := udp.Listen(network, ap)
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	return []udp.Conn{c}, nil
}

// Close stops the node: it closes the sockets, ends every session without
// notice to peers, and waits for its goroutines. Pending calls return
// ErrClosed. Close is idempotent.
func (m *Mesh) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	m.cancel()
	m.stopNAT()
	m.mu.Lock()
	for _, p := range m.peers {
		p.closeStreamsLocked()
	}
	m.mu.Unlock()
	for _, s := range m.socks {
		s.conn.Close()
	}
	if !m.started.Load() && m.cfg.Conn != nil {
		m.cfg.Conn.Close()
	}
	m.wg.Wait()
	m.mu.Lock()
	for _, p := range m.peers {
		p.dropSessionsLocked()
		m.notifyLocked(PeerEvent{Peer: p.id, Up: false})
	}
	for w := range m.watchers {
		m.stopWatcherLocked(w)
	}
	m.mu.Unlock()
	return nil
}

// ID returns the node's NodeID.
func (m *Mesh) ID() identity.NodeID { return m.id.NodeID() }

// Identity returns the node's identity.
func (m *Mesh) Identity() *identity.Identity { return m.id }

// ListenAddrs returns the addresses of the node's sockets, after Start.
func (m *Mesh) ListenAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range m.socks {
		out = append(out, s.conn.LocalAddr())
	}
	return out
}

// Addr returns the first socket's address, with an unspecified IP replaced
// by the loopback address of its family: the address a peer on this host
// would dial. Tests and demos use it.
func (m *Mesh) Addr() netip.AddrPort {
	if len(m.socks) == 0 {
		return netip.AddrPort{}
	}
	a := m.socks[0].conn.LocalAddr()
	if a.Addr().IsUnspecified() {
		lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if a.Addr().Is6() {
			lo = netip.IPv6Loopback()
		}
		a = netip.AddrPortFrom(lo, a.Port())
	}
	return a
}

// now returns the time since the mesh was created, on the monotonic clock.
func (m *Mesh) now() int64 { return int64(time.Since(m.epoch)) }

// Stats returns a snapshot of the node's counters and peers.
func (m *Mesh) Stats() Stats {
	st := Stats{
		NodeID:              m.ID(),
		ListenAddrs:         m.ListenAddrs(),
		Drops:               make(map[string]uint64),
		SendBackpressure:    m.stats.sendBackpressure.Load(),
		HandshakesInitiated: m.stats.handshakesInitiated.Load(),
		HandshakesCompleted: m.stats.handshakesCompleted.Load(),
		HandshakesProcessed: m.stats.handshakesProcessed.Load(),
		CookiesSent:         m.stats.cookiesSent.Load(),
		Relayed:             m.stats.relayed.Load(),
		RoutesRefused:       m.stats.routesRefused.Load(),
		PeerEventsDropped:   m.stats.peerEventsDropped.Load(),
	}
	if len(m.socks) > 0 {
		if c, ok := m.socks[0].conn.(interface{ Mode() string }); ok {
			st.IOMode = c.Mode()
		}
	}
	for r := range numDropReasons {
		if n := m.stats.drops[r].Load(); n > 0 {
			st.Drops[r.String()] = n
		}
	}
	for _, p := range m.Peers() {
		st.Peers = append(st.Peers, p.Stats())
	}
	return st
}

// socket is one UDP socket with its send queue.
type socket struct {
	conn  udp.Conn
	queue chan *outPacket
	v6    bool
}

// sockFor returns the socket for a destination's address family.
func (m *Mesh) sockFor(a netip.AddrPort) *socket {
	v6 := a.Addr().Is6()
	for _, s := range m.socks {
		if s.v6 == v6 {
			return s
		}
	}
	if m.cfg.Conn != nil && len(m.socks) == 1 {
		return m.socks[0]
	}
	return nil
}

func (m *Mesh) readLoop(s *socket) {
	defer m.wg.Done()
	r := &reader{m: m, sock: s}
	msgs := make([]udp.Message, readBatch)
	for {
		n, err := s.conn.ReadBatch(msgs)
		if err != nil {
			if m.closed.Load() {
				return
			}
			m.log.Error("socket read failed; node stops receiving", "addr", s.conn.LocalAddr(), "err", err)
			return
		}
		for i := range msgs[:n] {
			src := endpoint{addr: msgs[i].Addr, sock: s}
			r.receive(msgs[i].Buf, &src)
		}
		if len(m.dgram) > 0 {
			// Under sustained load the reader never blocks, and the
			// goroutine its channel send woke waits in this P's runnext
			// slot for a whole time slice while the queue overflows:
			// the reader would decrypt datagrams only to drop them. Let
			// the consumer run before reading the next batch.
			runtime.Gosched()
		}
	}
}

func (m *Mesh) writeLoop(s *socket) {
	defer m.wg.Done()
	msgs := make([]udp.Message, 0, writeBatch)
	pkts := make([]*outPacket, 0, writeBatch)
	for {
		var p *outPacket
		select {
		case p = <-s.queue:
		case <-m.ctx.Done():
			return
		}
		pkts = append(pkts, p)
	drain:
		for len(pkts) < writeBatch {
			select {
			case p = <-s.queue:
				pkts = append(pkts, p)
			default:
				break drain
			}
		}
		for _, p := range pkts {
			msgs = append(msgs, udp.Message{Buf: p.buf[:p.n], Addr: p.addr})
		}
		if _, err := s.conn.WriteBatch(msgs); err != nil && !m.closed.Load() {
			if m.log.Enabled(m.ctx, slog.LevelDebug) {
				m.log.Debug("socket write failed", "err", err)
			}
		}
		for i, p := range pkts {
			putOut(p)
			pkts[i] = nil
			msgs[i] = udp.Message{}
		}
		pkts, msgs = pkts[:0], msgs[:0]
	}
}

// enqueue hands p to its socket's writer, or returns it to the pool and
// reports ErrBackpressure.
func (m *Mesh) enqueue(s *socket, p *outPacket) error {
	select {
	case s.queue <- p:
		return nil
	default:
		putOut(p)
		m.stats.sendBackpressure.Add(1)
		return ErrBackpressure
	}
}

// sendRaw sends a copy of b, any bytes, from the socket of addr's family:
// STUN requests and NAT probes share the mesh's port this way.
//
//lint:ignore U1000 used only with the nat build tag
func (m *Mesh) sendRaw(addr netip.AddrPort, b []byte) error {
	s := m.sockFor(addr)
	if s == nil {
		return ErrNoAddress
	}
	return m.sendTo(&endpoint{addr: addr, sock: s}, b)
}

// sendTo sends a copy of b, a handshake or cookie message, over path.
func (m *Mesh) sendTo(path *endpoint, b []byte) error {
	p := getOut(routedHeadroom + len(b) + wire.TagSize)
	if path.relay != nil {
		n := copy(p.buf[routedHeadroom:], b)
		return m.forward(p, n, path.relay, wire.RouteHeader{Src: m.id.NodeID(), Dst: path.node})
	}
	p.n = copy(p.buf[:], b)
	p.addr = path.addr
	return m.enqueue(path.sock, p)
}
