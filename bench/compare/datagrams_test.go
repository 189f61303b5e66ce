package compare

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
	"github.com/netmesh/netmesh/mesh/udp"
)

// errBackpressure is what a link's send returns when the transport refused
// a datagram for now (only netmesh does; the others block or drop).
var errBackpressure = errors.New("back-pressure")

// link is one datagram transport under test, reduced to what
// runDatagrams needs.
type link struct {
	// send sends up to n datagrams of payloadSize bytes and returns how
	// many it sent, with errBackpressure if the transport refused the
	// rest for now.
	send func(n int) (int, error)
	// recv blocks until at least one datagram arrives and returns how
	// many arrived. It fails once stop was called.
	recv func() (int, error)
	// stop unblocks recv and releases the link.
	stop func()
}

// BenchmarkDatagrams sends b.N datagrams of payloadSize bytes from one
// endpoint to another over loopback: a sender pushes as fast as the
// transport lets it (blocking sends block, refused sends back off and are
// counted) and a receiver reads. pkts/s and MB/s count what arrived, from
// the first send to the last arrival; loss-% is what did not arrive.
//
//   - quic: quic-go DATAGRAM frames (RFC 9221) on one connection; quic-go
//     uses GSO and recvmmsg itself.
//   - netmesh: mesh.SendDatagram/ReadDatagram on an established session.
//   - udp-gso: mesh/udp BatchConn, 64 datagrams per WriteBatch (one GSO
//     send), GRO and recvmmsg on receive: no crypto, no framing.
//   - udp-plain: net.UDPConn, one datagram per system call.
func BenchmarkDatagrams(b *testing.B) {
	b.Run("impl=quic", func(b *testing.B) { runDatagrams(b, newQUICLink(b)) })
	b.Run("impl=netmesh", func(b *testing.B) { runDatagrams(b, newMeshLink(b)) })
	b.Run("impl=udp-gso", func(b *testing.B) { runDatagrams(b, newGSOLink(b)) })
	b.Run("impl=udp-plain", func(b *testing.B) { runDatagrams(b, newPlainLink(b)) })
}

func runDatagrams(b *testing.B, l link) {
	want := int64(b.N)
	var received, lastAt atomic.Int64
	done := make(chan struct{})
	b.SetBytes(payloadSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer close(done)
		for {
			n, err := l.recv()
			if err != nil {
				return
			}
			lastAt.Store(int64(time.Since(start)))
			if received.Add(int64(n)) >= want {
				return
			}
		}
	}()
	var refused, streak int
	for sent := 0; sent < b.N; {
		n, err := l.send(min(sendBatch, b.N-sent))
		sent += n
		switch {
		case err == nil:
			streak = 0
		case errors.Is(err, errBackpressure):
			refused++
			backoff(streak)
			streak++
		default:
			b.Fatal(err)
		}
	}
	waitReceived(&received, want, 100*time.Millisecond, 5*time.Second)
	b.StopTimer()
	l.stop()
	<-done

	got := min(received.Load(), want)
	elapsed := time.Duration(lastAt.Load()).Seconds()
	if got == 0 || elapsed <= 0 {
		b.Fatalf("nothing received out of %d datagrams", b.N)
	}
	b.ReportMetric(float64(got)/elapsed, "pkts/s")
	b.ReportMetric(float64(got)*payloadSize/elapsed/1e6, "MB/s")
	b.ReportMetric(100*float64(want-got)/float64(want), "loss-%")
	b.ReportMetric(float64(refused)/float64(b.N), "backpressure/op")
}

// backoff waits after the n-th consecutive refused send: it yields for the
// first few, then sleeps briefly so the sender does not spin on a core the
// transport needs to drain its queue.
func backoff(n int) {
	if n < 4 {
		runtime.Gosched()
		return
	}
	time.Sleep(20 * time.Microsecond)
}

// waitReceived waits until got reaches want or stops growing for idle, and
// bounds the whole wait by max.
func waitReceived(got *atomic.Int64, want int64, idle, max time.Duration) {
	deadline := time.Now().Add(max)
	last, lastChange := got.Load(), time.Now()
	for {
		n := got.Load()
		now := time.Now()
		if n >= want || now.After(deadline) {
			return
		}
		if n != last {
			last, lastChange = n, now
		} else if now.Sub(lastChange) > idle {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// listenPlain opens a net.UDPConn on 127.0.0.1 with socketBuffer-sized
// buffers (forced past rmem_max/wmem_max when running as root, as mesh/udp
// does).
func listenPlain(tb testing.TB) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		tb.Fatal(err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer)
			}
		}
	})
	return c
}

func newPlainLink(tb testing.TB) link {
	tx, rx := listenPlain(tb), listenPlain(tb)
	dst := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	out := make([]byte, payloadSize)
	in := make([]byte, 2048)
	return link{
		send: func(n int) (int, error) {
			for i := range n {
				if _, err := tx.WriteToUDPAddrPort(out, dst); err != nil {
					return i, err
				}
			}
			return n, nil
		},
		recv: func() (int, error) {
			_, _, err := rx.ReadFromUDPAddrPort(in)
			return 1, err
		},
		stop: func() {
			tx.Close()
			rx.Close()
		},
	}
}

func newGSOLink(tb testing.TB) link {
	tx, err := udp.Listen("udp4", loopback)
	if err != nil {
		tb.Fatal(err)
	}
	rx, err := udp.Listen("udp4", loopback)
	if err != nil {
		tb.Fatal(err)
	}
	if f := tx.Features(); !f.GSO || !rx.Features().GRO {
		tb.Logf("udp-gso runs without the offloads: %v", f)
	}
	out := make([]udp.Message, sendBatch)
	for i := range out {
		out[i] = udp.Message{Buf: make([]byte, payloadSize), Addr: rx.LocalAddr()}
	}
	in := make([]udp.Message, sendBatch)
	return link{
		send: func(n int) (int, error) { return tx.WriteBatch(out[:n]) },
		recv: func() (int, error) { return rx.ReadBatch(in) },
		stop: func() {
			tx.Close()
			rx.Close()
		},
	}
}

func newMeshLink(tb testing.TB) link {
	tx, rx, peer := testnode.Pair(tb)
	ctx, cancel := context.WithCancel(context.Background())
	out := make([]byte, payloadSize)
	in := make([]byte, mesh.MaxDatagramSize)
	return link{
		send: func(n int) (int, error) {
			for i := range n {
				if err := tx.SendDatagram(ctx, peer, out); err != nil {
					if errors.Is(err, mesh.ErrBackpressure) {
						err = errBackpressure
					}
					return i, err
				}
			}
			return n, nil
		},
		recv: func() (int, error) {
			_, _, err := rx.ReadDatagram(ctx, in)
			return 1, err
		},
		stop: cancel,
	}
}

func newQUICLink(tb testing.TB) link {
	client, server, stop := quicPair(tb, quicTLS(nil))
	out := make([]byte, payloadSize)
	if err := client.SendDatagram(make([]byte, 1<<14)); err != nil {
		var tooLarge *quic.DatagramTooLargeError
		if errors.As(err, &tooLarge) && tooLarge.MaxDatagramPayloadSize < payloadSize {
			tb.Fatalf("quic-go carries datagrams of at most %d bytes, less than %d", tooLarge.MaxDatagramPayloadSize, payloadSize)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return link{
		send: func(n int) (int, error) {
			for i := range n {
				// Blocks while quic-go's send queue (32 frames) is full.
				if err := client.SendDatagram(out); err != nil {
					return i, err
				}
			}
			return n, nil
		},
		recv: func() (int, error) {
			_, err := server.ReceiveDatagram(ctx)
			return 1, err
		},
		stop: func() {
			cancel()
			stop()
		},
	}
}
