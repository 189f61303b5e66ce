package mesh

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/netmesh/netmesh/mesh/stream"
	"github.com/netmesh/netmesh/mesh/udp"
	"github.com/netmesh/netmesh/mesh/wire"
)

// Streams ride a peer's session whatever its path, so a path switch or a
// rekey never touches stream state. Each peer gets one stream.Mux per
// protocol that uses streams, made on first use from either side:
//
//   - netmesh/stream carries the user's streams (OpenStream, AcceptStream);
//   - each engine (capability gossip, channels) gets a Mux of its own
//     protocol, on which every node opens one reliable stream per peer and
//     sends its engine messages, which may exceed a datagram (engines.go);
//   - each protocol a layer above listens or opens streams on gets one.
//
// A Mux runs a timer goroutine, so a peer's frames make one only on a
// protocol registered for streams, or one this node opened streams on
// (see deliver); a stream opened on any other protocol is refused
// without one (refuseStream). Streams a peer opens are handed over on the
// socket reader's goroutine as their first frame arrives (see
// streamLink.AcceptStream): to a listener's queue or handler, or, for an
// engine, to a reader goroutine of its own.

// Stream types, re-exported so that users need only package mesh.
type (
	// Stream is one ordered (Reliable) or datagram-like (Unreliable)
	// message stream with a peer. See package mesh/stream.
	Stream = stream.Stream
	// StreamConfig configures a stream; its zero value is a reliable
	// stream with documented defaults.
	StreamConfig = stream.Config
	// StreamStats is a snapshot of one stream's counters.
	StreamStats = stream.StreamStats
	// RetryPolicy bounds Stream.SendWithRetry.
	RetryPolicy = stream.RetryPolicy
)

// Stream reliability modes.
const (
	Reliable   = stream.Reliable
	Unreliable = stream.Unreliable
)

// acceptedStream is a stream a peer opened, waiting for AcceptStream.
type acceptedStream struct {
	s *Stream
	p *Peer
}

// protoMux is one protocol's streams with one peer.
type protoMux struct {
	proto wire.Proto
	mux   *stream.Mux
	// For an engine: out is the stream this node sends its messages on,
	// in the one the peer sends on (engines.go), and replaced the one in
	// replaced, to be reset once the Mux's lock is free.
	out      atomic.Pointer[Stream]
	in       atomic.Pointer[engineIn]
	replaced atomic.Pointer[engineIn]
}

// peerStreams are one peer's stream multiplexers, one per protocol. The
// data path finds a Mux without a lock, in a slice that is replaced,
// never changed; mu serialises making and closing them.
type peerStreams struct {
	mu  sync.Mutex
	set atomic.Pointer[[]*protoMux]
}

// get returns the Mux for proto, or nil.
func (ps *peerStreams) get(proto wire.Proto) *protoMux {
	if set := ps.set.Load(); set != nil {
		for _, pm := range *set {
			if pm.proto == proto {
				return pm
			}
		}
	}
	return nil
}

// all returns every Mux.
func (ps *peerStreams) all() []*protoMux {
	if set := ps.set.Load(); set != nil {
		return *set
	}
	return nil
}

// OpenStream opens a stream to p. The peer receives it from AcceptStream.
func (m *Mesh) OpenStream(ctx context.Context, p *Peer, cfg StreamConfig) (*Stream, error) {
	return m.OpenStreamOn(ctx, p, protoStream, cfg)
}

// AcceptStream returns the next stream any peer opened to this node with
// OpenStream, and the peer, blocking until one arrives, ctx ends or the
// mesh closes.
func (m *Mesh) AcceptStream(ctx context.Context) (*Stream, *Peer, error) {
	return m.userStreams.Accept(ctx)
}

// OpenStreamOn opens a stream to p on protocol proto: the peer receives
// it from the StreamListener of that protocol, not from AcceptStream, and
// refuses it if it has none. Layers above mesh (package rpc, say) use
// their own protocol so their streams never mix with the application's.
func (m *Mesh) OpenStreamOn(ctx context.Context, p *Peer, proto Protocol, cfg StreamConfig) (*Stream, error) {
	if !proto.valid() {
		return nil, errors.New("mesh: the zero Protocol; make one with NewProtocol")
	}
	if reg := m.protos.lookup(proto.id); reg != nil && reg.proto.name != proto.name {
		return nil, fmt.Errorf("%w: %v has the number of %v; rename one", ErrProtoInUse, proto, reg.proto)
	}
	if m.tr.closed.Load() {
		return nil, ErrClosed
	}
	if !p.IsUp() {
		return nil, ErrNoSession
	}
	return m.muxFor(p, proto.id).mux.Open(ctx, cfg)
}

// StreamListener hands out the streams peers open on one protocol:
// through Accept, or to a handler (see HandleStreams).
type StreamListener struct {
	m     *Mesh
	proto Protocol
	reg   *registration       // its entry in the registry, set by listen
	ch    chan acceptedStream // nil with a handler
	h     func(*Stream, *Peer)
}

// ListenStreams returns the listener for streams on protocol proto. It
// fails with ErrProtoInUse if proto's number already has a listener or a
// frame handler on this node. Streams peers open on proto before a
// listener exists are refused.
func (m *Mesh) ListenStreams(proto Protocol) (*StreamListener, error) {
	return m.listen(m.newListener(proto))
}

// HandleStreams is ListenStreams with a handler instead of Accept: h runs
// in a goroutine of its own for every stream a peer opens on proto,
// started as the stream's first frame arrives, with nothing queued in
// between. Accept on the returned listener fails; Close stops new calls
// of h. The mesh does not wait for running handlers when it closes: their
// streams fail with ErrMuxClosed, and a handler should then return.
func (m *Mesh) HandleStreams(proto Protocol, h func(*Stream, *Peer)) (*StreamListener, error) {
	if h == nil {
		return nil, errors.New("mesh: HandleStreams with a nil handler")
	}
	return m.listen(&StreamListener{m: m, proto: proto, h: h})
}

// newListener returns a listener whose queue holds
// Config.Streams.AcceptBacklog streams opened by any peer and not yet
// accepted; beyond it, new streams are refused.
func (m *Mesh) newListener(proto Protocol) *StreamListener {
	n := m.cfg.Streams.AcceptBacklog
	if n <= 0 {
		n = stream.DefaultAcceptBacklog
	}
	return &StreamListener{m: m, proto: proto, ch: make(chan acceptedStream, n)}
}

func (m *Mesh) listen(l *StreamListener) (*StreamListener, error) {
	l.reg = &registration{proto: l.proto, streams: l}
	if err := m.protos.add(l.reg); err != nil {
		return nil, err
	}
	return l, nil
}

// Close stops listening: streams peers open on the protocol from now on
// are refused, and streams waiting for Accept are reset. The protocol can
// then be listened on again. Handlers already running go on.
func (l *StreamListener) Close() error {
	if !l.m.protos.remove(l.reg) {
		return nil
	}
	for {
		select {
		case a := <-l.ch:
			a.s.Reset(stream.CodeRefused)
		default:
			return nil
		}
	}
}

// Accept returns the next stream a peer opened on the listener's
// protocol, and the peer, blocking until one arrives, ctx ends or the mesh
// closes. It fails at once on a listener made by HandleStreams.
func (l *StreamListener) Accept(ctx context.Context) (*Stream, *Peer, error) {
	if l.h != nil {
		return nil, nil, errors.New("mesh: the listener hands its streams to a handler")
	}
	select {
	case a := <-l.ch:
		return a.s, a.p, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-l.m.tr.ctx.Done():
		return nil, nil, ErrClosed
	}
}

// StreamStats returns the stats of every open stream with p.
func (p *Peer) StreamStats() []StreamStats {
	st, _ := p.streamStats()
	return st
}

// streamStats returns the stats of every open stream with p and the frame
// size they cut fragments to.
func (p *Peer) streamStats() ([]StreamStats, int) {
	pm := p.streams.get(protoStream.id)
	if pm == nil {
		return nil, 0
	}
	st := pm.mux.Stats()
	return st.Streams, st.PathMTU
}

// refuseStream answers a peer's stream on a protocol nobody takes streams
// on as a Mux would, but statelessly (stream.Refusal): a body that starts
// with a DATA frame gets a RESET with CodeRefused for its stream, so the
// opener's Recv fails at once. Nothing else is answered (the peer's echo
// of the RESET included), so a refusal is one packet smaller than what
// caused it.
func (m *Mesh) refuseStream(p *Peer, proto wire.Proto, body []byte) {
	var reset [16]byte
	if n := stream.Refusal(reset[:], body); n > 0 {
		m.tr.sendFrame(p, proto, reset[:n], nil)
	}
}

// muxFor returns p's Mux for proto, making it.
func (m *Mesh) muxFor(p *Peer, proto wire.Proto) *protoMux {
	ps := &p.streams
	if pm := ps.get(proto); pm != nil {
		return pm
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if pm := ps.get(proto); pm != nil {
		return pm
	}
	q := &linkQueue{}
	var link stream.Link = streamLink{m, p, proto, q}
	if m.tr.probeMTU {
		link = probeLink{streamLink{m, p, proto, q}}
	}
	pm := &protoMux{proto: proto, mux: stream.NewMux(link, m.cfg.Streams)}
	q.mux = pm.mux // before any frame: NewMux sends none
	next := append(append([]*protoMux(nil), ps.all()...), pm)
	ps.set.Store(&next)
	if m.tr.closed.Load() {
		pm.mux.Close()
	}
	return pm
}

// closeStreams ends every stream with p: its session is gone, or belonged
// to the peer's previous run.
func (m *Mesh) closeStreams(p *Peer) {
	ps := &p.streams
	ps.mu.Lock()
	set := ps.all()
	ps.set.Store(nil)
	ps.mu.Unlock()
	for _, pm := range set {
		pm.mux.Close()
	}
}

// pathChanged restarts path MTU discovery on every Mux of p: its path
// changed.
func (m *Mesh) pathChanged(p *Peer) {
	for _, pm := range p.streams.all() {
		pm.mux.ResetPathMTU()
	}
}

// acceptStream takes a stream p opened on proto (see stream.AcceptLink;
// it runs on a socket reader with the Mux's lock held): an engine stream
// becomes the peer's stream for the engine (engines.go), others go to the
// protocol's StreamListener (AcceptStream's for the application's
// streams). It returns false to refuse the stream.
func (m *Mesh) acceptStream(p *Peer, proto wire.Proto, s *Stream) bool {
	if m.tr.closed.Load() {
		return false
	}
	reg := m.protos.lookup(proto)
	switch {
	case reg == nil || reg.frames != nil:
		m.tr.stats.drop(DropNoHandler)
		return false
	case reg.messages != nil:
		m.acceptEngineStream(p, reg, s)
		return true
	}
	l := reg.streams
	if l.h != nil {
		m.handlers.run(handlerCall{l.h, s, p})
		return true
	}
	select {
	case l.ch <- acceptedStream{s, p}:
		return true
	default:
		m.tr.stats.drop(DropStreamBacklog)
		return false
	}
}

// streamLink carries one Mux's frames on a peer's session.
type streamLink struct {
	m     *Mesh
	p     *Peer
	proto wire.Proto
	q     *linkQueue
}

func (l streamLink) SendFrame(head, data []byte) error {
	return l.m.tr.sendFrameCounted(l.p, l.proto, head, data, l.q)
}

// Queued and Pending make the Mux autocork (see stream.CorkLink).
func (l streamLink) Queued() uint64 { return l.q.queued.Load() }

func (l streamLink) Pending(ticket uint64) bool { return l.q.pending(ticket) }

// linkQueue counts one Mux's frames through the socket queue, for
// autocorking: the Mux holds back a stream's last small fragment while
// its previous DATA frame still waits for the socket writer, and the
// writer calls Mux.Uncork once it has written that frame. Frames leave in
// the order they were queued (one socket, one writer), so the count of
// frames written tells whether a given frame was.
type linkQueue struct {
	mux     *stream.Mux
	queued  atomic.Uint64 // frames queued so far: a frame's ticket
	written atomic.Uint64 // frames written or dropped so far
	want    atomic.Bool   // the Mux holds a fragment back: call Uncork
}

// pending reports whether the frame with ticket t is still queued, and
// if so asks the writer for an Uncork once it has written a frame.
func (q *linkQueue) pending(t uint64) bool {
	if q.written.Load() >= t {
		return false
	}
	q.want.Store(true)
	return q.written.Load() < t // the writer may have counted it meanwhile
}

// uncork tells the Mux, once per request, that frames were written. The
// socket writer calls it after counting its batch written.
func (q *linkQueue) uncork() {
	if q.want.Load() && q.want.Swap(false) {
		q.mux.Uncork()
	}
}

func (l streamLink) AcceptStream(s *Stream) bool { return l.m.acceptStream(l.p, l.proto, s) }

func (l streamLink) MaxFrameSize() int { return MaxDatagramSize }

// Path MTU. Frames start at MaxDatagramSize, which fits any 1280-byte IPv6
// path even relayed. When every socket sends with don't-fragment set
// (udp.Features.DF), the stream engine probes upward (DPLPMTUD, RFC 8899)
// towards what the local interface carries, up to a 9000-byte jumbo
// frame, and the mesh restarts the search whenever the peer's path
// changes.

// probeLink is a streamLink whose frames may grow past MaxDatagramSize.
type probeLink struct{ streamLink }

// MaxProbeSize is the largest frame body the local interface carries on
// the peer's current path (see maxUDPPayload); the probes find out what
// the rest of the path carries.
func (l probeLink) MaxProbeSize() int {
	overhead := wire.DataOverhead + wire.FrameHeaderSize
	ep := l.p.ep.Load()
	if ep != nil && ep.relay != nil {
		overhead += wire.DataOverhead + wire.FrameHeaderSize + wire.RouteHeaderSize
		ep = ep.relay.ep.Load()
	}
	if ep == nil || ep.sock == nil {
		return MaxDatagramSize
	}
	return maxUDPPayload(ep.sock.conn, ep.addr) - overhead
}

// maxUDPPayload is the largest UDP payload netmesh sends from conn to
// addr: the MTU of the local route to it as the kernel reports it (1500,
// Ethernet's, where the conn cannot ask), at most jumboMTU, less the IP
// and UDP headers. It sends nothing.
func maxUDPPayload(conn udp.Conn, addr netip.AddrPort) int {
	mtu := 1500
	if pc, ok := conn.(interface {
		PathMTU(netip.AddrPort) (int, error)
	}); ok {
		if n, err := pc.PathMTU(addr); err == nil {
			mtu = n
		}
	}
	mtu = min(mtu, jumboMTU)
	if a := addr.Addr(); a.Is6() && !a.Is4In6() {
		return mtu - 40 - 8
	}
	return mtu - 20 - 8
}
