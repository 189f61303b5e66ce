package compare

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
	"github.com/netmesh/netmesh/mesh/udp"
)

// BenchmarkStreamLossy is BenchmarkStreamBulk through a faulty UDP proxy
// that, in each direction and for each packet, drops 10 %, duplicates
// 10 %, holds back 10 % so the next three packets overtake it, and flips
// a byte in 5 % (which the receiver's AEAD then drops): a path far worse
// than the Internet usually is, to see how each transport's loss
// recovery and congestion control cope. The proxy's decisions come from
// a fixed seed (BENCH_LOSSY_SEED overrides it), so both transports meet
// the same fault pattern for the same sequence of packets. MB/s is the
// stream's goodput; every byte arrives intact and in order or the run
// fails. Issue 24's target: netmesh at least as fast as quic-go for a
// 50 MB transfer:
//
//	go test -run '^$' -bench StreamLossy -benchtime 763x -count 6
//
// (763 messages of 64 KiB are 50 MB.) On loopback netmesh's path-MTU
// discovery raises its frames to 8938 bytes, where quic-go stays at
// 1252-1452-byte packets, and the proxy drops per packet, so impl=netmesh-1131
// runs netmesh with its base frame size (sockets that do not report
// don't-fragment keep the mesh from probing) for a comparison at similar
// packet sizes.
func BenchmarkStreamLossy(b *testing.B) {
	b.Run("impl=quic", func(b *testing.B) { runBulk(b, quicPipesVia(b, lossyProxy(b))) })
	b.Run("impl=netmesh", func(b *testing.B) { runBulk(b, meshPipesVia(b, lossyProxy(b), false)) })
	b.Run("impl=netmesh-1131", func(b *testing.B) { runBulk(b, meshPipesVia(b, lossyProxy(b), true)) })
}

// lossyFaults are BenchmarkStreamLossy's impairments.
var lossyFaults = proxyFaults{drop: 0.10, duplicate: 0.10, reorder: 0.10, corrupt: 0.05}

// Reordering: a held-back packet is released after reorderAfter more
// packets in its direction, or after reorderHold without one.
const (
	reorderAfter = 3
	reorderHold  = 2 * time.Millisecond
)

// proxyBuffer is the proxy's socket buffers and largest packet: room for
// a 9000-byte jumbo datagram, and the sockets' queues of mesh/udp's
// default size.
const (
	proxyBuffer    = socketBuffer
	proxyMaxPacket = 1 << 16
)

// proxyFaults are the probabilities, per packet, of each impairment.
type proxyFaults struct{ drop, duplicate, reorder, corrupt float64 }

// lossyProxy returns a function that starts BenchmarkStreamLossy's proxy
// in front of a server: the seed is fixed unless BENCH_LOSSY_SEED is set.
func lossyProxy(tb testing.TB) func(target netip.AddrPort) netip.AddrPort {
	seed := uint64(24)
	if s := os.Getenv("BENCH_LOSSY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			tb.Fatalf("BENCH_LOSSY_SEED: %v", err)
		}
		seed = v
	}
	return func(target netip.AddrPort) netip.AddrPort {
		p := newFaultyProxy(tb, target, lossyFaults, seed)
		tb.Cleanup(p.close)
		return p.addr()
	}
}

// faultyProxy relays UDP between one client and a server, impairing the
// packets of both directions. The client sends to addr(); the server sees
// the packets come from the proxy's second socket and answers there.
type faultyProxy struct {
	front  *net.UDPConn // the client's side
	back   *net.UDPConn // connected to the server
	client atomic.Pointer[netip.AddrPort]
	wg     sync.WaitGroup
}

func newFaultyProxy(tb testing.TB, target netip.AddrPort, f proxyFaults, seed uint64) *faultyProxy {
	tb.Helper()
	front, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		tb.Fatal(err)
	}
	back, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		front.Close()
		tb.Fatal(err)
	}
	for _, c := range []*net.UDPConn{front, back} {
		c.SetReadBuffer(proxyBuffer)
		c.SetWriteBuffer(proxyBuffer)
	}
	p := &faultyProxy{front: front, back: back}
	toServer := func(b []byte) { back.Write(b) }
	toClient := func(b []byte) {
		if c := p.client.Load(); c != nil {
			front.WriteToUDPAddrPort(b, *c)
		}
	}
	p.wg.Add(2)
	go p.relay(front, toServer, newImpairer(f, seed), true)
	go p.relay(back, toClient, newImpairer(f, seed^0x9e3779b97f4a7c15), false)
	return p
}

func (p *faultyProxy) addr() netip.AddrPort {
	return p.front.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (p *faultyProxy) close() {
	p.front.Close()
	p.back.Close()
	p.wg.Wait()
}

// relay reads packets from c and passes them through imp to out until c
// is closed. fromClient records the sender as the client.
func (p *faultyProxy) relay(c *net.UDPConn, out func([]byte), imp *impairer, fromClient bool) {
	defer p.wg.Done()
	buf := make([]byte, proxyMaxPacket)
	for {
		if imp.holding() {
			c.SetReadDeadline(time.Now().Add(reorderHold))
		} else {
			c.SetReadDeadline(time.Time{})
		}
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				imp.release(out)
				continue
			}
			return
		}
		if fromClient && (p.client.Load() == nil || *p.client.Load() != from) {
			p.client.Store(&from)
		}
		imp.pass(buf[:n], out)
	}
}

// impairer applies proxyFaults to one direction's packets. Every packet
// draws the same four random numbers, so a seed fixes the pattern for a
// given sequence of packets.
type impairer struct {
	f    proxyFaults
	rng  *rand.Rand
	held []heldPacket
}

type heldPacket struct {
	b     []byte
	after int // packets still to overtake it
}

func newImpairer(f proxyFaults, seed uint64) *impairer {
	return &impairer{f: f, rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))}
}

func (im *impairer) holding() bool { return len(im.held) > 0 }

// pass impairs one packet (b is reused after pass returns) and hands what
// is left of it to out, then releases held packets it overtook.
func (im *impairer) pass(b []byte, out func([]byte)) {
	drop, corrupt, dup, hold := im.rng.Float64(), im.rng.Float64(), im.rng.Float64(), im.rng.Float64()
	at := im.rng.IntN(len(b))
	if drop >= im.f.drop {
		if corrupt < im.f.corrupt {
			b[at] ^= 0xff
		}
		copies := 1
		if dup < im.f.duplicate {
			copies = 2
		}
		if hold < im.f.reorder {
			for range copies {
				im.held = append(im.held, heldPacket{append([]byte(nil), b...), reorderAfter})
			}
		} else {
			for range copies {
				out(b)
			}
		}
	}
	k := 0
	for _, h := range im.held {
		if h.after--; h.after < 0 {
			out(h.b)
		} else {
			im.held[k] = h
			k++
		}
	}
	clear(im.held[k:])
	im.held = im.held[:k]
}

// release sends every held packet: no packet came to overtake them.
func (im *impairer) release(out func([]byte)) {
	for _, h := range im.held {
		out(h.b)
	}
	clear(im.held)
	im.held = im.held[:0]
}

// quicPipesVia is quicPipes with the client dialling the server through
// the proxy that via starts.
func quicPipesVia(tb testing.TB, via func(netip.AddrPort) netip.AddrPort) pipePair {
	tb.Helper()
	tc := quicTLS(nil)
	srv := newQUICServer(tb, tc)
	ctr := newQUICClient(tb)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	accepted := make(chan error, 1)
	var server *quic.Conn
	var in *quic.Stream
	go func() {
		c, err := srv.ln.Accept(ctx)
		if err != nil {
			accepted <- err
			return
		}
		server = c
		in, err = c.AcceptStream(ctx)
		if err == nil {
			in.SetReadDeadline(time.Now().Add(setupTimeout))
			_, err = io.ReadFull(in, make([]byte, len(hello)))
			in.SetReadDeadline(time.Time{})
		}
		accepted <- err
	}()
	proxy := via(srv.ln.Addr().(*net.UDPAddr).AddrPort())
	client, err := ctr.Dial(ctx, net.UDPAddrFromAddrPort(proxy), tc.client, quicConfig)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := client.OpenStreamSync(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := out.Write(hello); err != nil {
		tb.Fatal(err)
	}
	if err := <-accepted; err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			client.CloseWithError(0, "")
			if server != nil {
				server.CloseWithError(0, "")
			}
			ctr.Close()
			srv.close()
		})
	}
	tb.Cleanup(stop)
	return pipePair{client: quicPipe(out), server: quicPipe(in), stop: stop}
}

// meshPipesVia is meshPipes with the nodes connected through the proxy
// that via starts; base keeps their frames at the base size.
func meshPipesVia(tb testing.TB, via func(netip.AddrPort) netip.AddrPort, base bool) pipePair {
	tb.Helper()
	var a, b *mesh.Mesh
	if base {
		a, b = startBaseNode(tb), startBaseNode(tb)
	} else {
		a, b = testnode.Start(tb), testnode.Start(tb)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	setup, setupDone := context.WithTimeout(ctx, setupTimeout)
	defer setupDone()
	ab, err := a.Connect(setup, via(b.Addr()), mesh.Pin{Key: b.Identity().PublicKey()})
	if err != nil {
		tb.Fatal(err)
	}
	out, err := a.OpenStream(setup, ab, mesh.StreamConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := out.Send(setup, hello); err != nil {
		tb.Fatal(err)
	}
	in, _, err := b.AcceptStream(setup)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := in.ReadMessage(setup, nil); err != nil {
		tb.Fatal(err)
	}
	return pipePair{client: meshPipe(ctx, out), server: meshPipe(ctx, in), stop: cancel}
}

// noDF hides a socket's features from the mesh, which then does not know
// it sends with don't-fragment set and keeps stream frames at the base
// size (mesh.MaxDatagramSize).
type noDF struct{ udp.Conn }

// startBaseNode starts a node, as testnode.Start does, on a socket the
// mesh does not probe on.
func startBaseNode(tb testing.TB) *mesh.Mesh {
	tb.Helper()
	c, err := udp.Listen("udp4", loopback)
	if err != nil {
		tb.Fatal(err)
	}
	return testnode.Start(tb, func(cfg *mesh.Config) {
		cfg.ListenAddr = ""
		cfg.Conn = noDF{c}
	})
}
