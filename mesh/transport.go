package mesh

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/udp"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// transport is the node's session layer: its sockets, handshakes,
// sessions, flood guard, routes and timers. It knows nothing of streams
// or engines: a decrypted frame of a protocol above the session goes to
// up.deliver, and peers coming and going to up's other hooks. Mesh wires
// it to the stream multiplexers and engines.
//
// A type per job, a lock per concern. The data path (receive, send, an
// engine's message) takes no lock of the whole node for writing, and
// none at all but the session index's read lock:
//
//   - hs.mu (handshakes, session.go) guards the session lifecycle: dials,
//     pending handshakes, every Peer's session slots, dial, up and last
//     initiation time. Handshake workers take it for bookkeeping (never
//     during Diffie-Hellman), the timer loop when a session must change,
//     Connect to start a dial, and the receive path once per session,
//     when the session's first packet confirms it. Methods named
//     ...Locked expect the caller to hold it.
//   - index.mu (sessionIndex) guards the receiver index → session map:
//     read-locked per data packet, write-locked when a session is added
//     or forgotten.
//   - peers.mu (peerTable) guards the NodeID → Peer map.
//   - routes.mu (routeTable) guards the route table.
//   - the flood guard's rate limiters and cookie secret, each Peer's
//     streams, the ping table and the watchers have locks of their own.
//
// Locks are taken in this order: hs.mu, then routes.mu, then any of the
// others, which are leaves (routes.mu read-locks peers.mu to compare two
// neighbours' RTTs). Everything else a packet touches is atomic: a Peer's current
// session, path, counters and timestamps, a session's send counter and
// replay window.
type transport struct {
	cfg *Config
	id  *identity.Identity
	log *slog.Logger
	t   timers
	// lastTick is when the timer loop last ran (mono ns; its own).
	lastTick int64
	// epoch is the base of the node's monotonic timestamps (now).
	epoch time.Time
	// incarnation tells this run of the node from its others: peers that
	// see it change know the node restarted (noise.Peer.Incarnation).
	incarnation uint64
	// suite is the cipher suite of the handshakes the node starts.
	suite noise.Suite
	// refuseAESGCM drops AES-GCM initiations: set on a CPU without AES
	// instructions unless Config.CipherSuite asks for AES-GCM.
	refuseAESGCM atomic.Bool
	// indexTag is in every receiver index the node hands out (the bits of
	// indexTagMask); the sockets' filter drops data packets without it.
	indexTag uint32
	up       upper

	socks []*socket // set by start, read-only after
	// probeMTU: every socket sends with don't-fragment set, so streams
	// may probe for a larger path MTU (see streams.go).
	probeMTU bool

	index  sessionIndex
	peers  peerTable
	hs     handshakes
	guard  floodGuard
	routes routeTable
	// routeWait wakes ConnectNode calls waiting for a route.
	routeWait signal
	pings     pinger
	adm       admission
	// dgram holds received datagrams until ReadDatagram takes them.
	dgram chan *inPacket
	// stun receives STUN messages that arrive on the node's sockets (the
	// NAT engine registers it; without it they are dropped).
	stun  atomic.Pointer[func(b []byte, from netip.AddrPort)]
	stats counters

	ctx     context.Context // ends on close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the goroutines below, and relay dials
	started atomic.Bool
	closed  atomic.Bool
	// leaving: the node is saying goodbye (Mesh.Leave); it refuses
	// handshakes and starts none.
	leaving atomic.Bool
}

// upper is what the transport needs from the layers above it. Its hooks
// must not block; those called with hs.mu held must not take it.
type upper interface {
	// deliver hands a decrypted frame of a protocol above the session to
	// whoever takes it. It runs on a socket reader; body is valid only
	// during the call.
	deliver(p *Peer, proto wire.Proto, body []byte)
	// peerEvent reports the peer coming up or going down (hs.mu held).
	peerEvent(p *Peer, up bool)
	// closeStreams ends every stream with the peer: its session is gone,
	// or belonged to the peer's previous run (hs.mu held).
	closeStreams(p *Peer)
	// pathChanged restarts path MTU discovery on the peer's streams.
	pathChanged(p *Peer)
	// issued hands p the certificate this node just issued it in a
	// pairing handshake, with the issuer's confirmation.
	issued(p *Peer, c *identity.Certificate, confirm []byte)
}

// refusesAESGCM reports whether a node refuses AES-GCM initiations: on a
// CPU without AES instructions (hw false), unless its configured suite
// asks for AES-GCM explicitly.
func refusesAESGCM(hw bool, configured noise.Suite) bool {
	return !hw && configured != noise.SuiteAESGCM
}

// newTransport returns the transport of a node with identity id.
func newTransport(cfg *Config, id *identity.Identity, log *slog.Logger, up upper) *transport {
	ctx, cancel := context.WithCancel(context.Background())
	t := &transport{
		cfg:         cfg,
		id:          id,
		log:         log,
		t:           cfg.timers(),
		epoch:       time.Now(),
		incarnation: rand.Uint64(),
		suite:       orDefault(cfg.CipherSuite, noise.PreferredSuite()),
		indexTag:    rand.Uint32() & indexTagMask,
		up:          up,
		ctx:         ctx,
		cancel:      cancel,
		dgram:       make(chan *inPacket, orDefault(cfg.DatagramQueue, defaultDatagramQueue)),
	}
	t.refuseAESGCM.Store(refusesAESGCM(noise.HardwareAES(), cfg.CipherSuite))
	t.index.init()
	t.peers.init(orDefault(cfg.MaxPeers, defaultMaxPeers))
	t.hs.init(orDefault(cfg.HandshakeQueue, defaultHandshakeQueue))
	t.guard.init(id.PublicKey(), orDefault(cfg.HandshakeRate, defaultHandshakeRate))
	t.routes.init()
	t.pings.init()
	return t
}

// start opens the sockets and starts the transport's goroutines: a reader
// and a writer per socket, the handshake workers and the timer loop.
func (t *transport) start() error {
	conns, err := openConns(t.cfg, t.log, t.indexTag)
	if err != nil {
		return err
	}
	q := orDefault(t.cfg.SendQueue, defaultSendQueue)
	t.probeMTU = true
	for _, c := range conns {
		s := &socket{conn: c, queue: make(chan *outPacket, q), v6: c.LocalAddr().Addr().Is6()}
		t.socks = append(t.socks, s)
		f, ok := c.(interface{ Features() udp.Features })
		t.probeMTU = t.probeMTU && ok && f.Features().DF
	}
	for _, s := range t.socks {
		t.wg.Add(2)
		go t.readLoop(s)
		go t.writeLoop(s)
	}
	for range handshakeWorkers() {
		t.wg.Add(1)
		go t.handshakeWorker()
	}
	t.wg.Add(1)
	go t.timerLoop()
	t.keepRelays()
	return nil
}

// close stops the transport: it closes the sockets, waits for its
// goroutines, and ends every session without notice to peers.
func (t *transport) close() {
	t.cancel()
	for _, s := range t.socks {
		s.conn.Close()
	}
	if !t.started.Load() && t.cfg.Conn != nil {
		t.cfg.Conn.Close()
	}
	t.wg.Wait()
	t.hs.mu.Lock()
	defer t.hs.mu.Unlock()
	for _, p := range t.peers.all() {
		wasUp := p.up
		t.dropSessionsLocked(p)
		if wasUp {
			p.setDown(downClosed)
			t.up.peerEvent(p, false)
		}
	}
}

// now returns the time since the node was created, on the monotonic
// clock, in nanoseconds.
func (t *transport) now() int64 { return int64(time.Since(t.epoch)) }
