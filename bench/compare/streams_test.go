package compare

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// bulkChunk is the size of one message (netmesh) or write and read
// (quic-go) of BenchmarkStreamBulk.
const bulkChunk = 64 << 10

// stallTimeout is how long BenchmarkStreamBulk and BenchmarkUnary wait
// without progress before they fail.
const stallTimeout = 10 * time.Second

// pipe is one end of an open reliable stream, reduced to what the stream
// benchmarks need.
type pipe struct {
	// send sends msg, waiting while flow or congestion control holds it
	// back.
	send func(msg []byte) error
	// recv fills buf with the next len(buf) bytes: on netmesh one whole
	// message, which must be exactly that long.
	recv func(buf []byte) error
}

// pipePair is the two ends of one stream, already known to both sides.
type pipePair struct {
	client, server pipe
	// stop unblocks both ends' calls, which then fail, and releases the
	// stream. It may be called more than once.
	stop func()
}

// hello is what a stream's opener sends so the other side accepts it
// before the measurement: neither transport tells the peer of a stream
// before its first data.
var hello = []byte("hello")

// BenchmarkStreamBulk sends b.N messages of bulkChunk bytes on one
// reliable stream, as fast as flow and congestion control let the sender,
// to a receiver that reads them. The time runs until the receiver has read
// the last byte; MB/s is the stream's goodput.
//
//   - quic: one quic-go stream, written and read in bulkChunk pieces.
//   - netmesh: one mesh stream, SendBlocking and ReadMessage of whole
//     bulkChunk messages.
//
// No progress for stallTimeout fails the benchmark instead of hanging it.
func BenchmarkStreamBulk(b *testing.B) {
	b.Run("impl=quic", func(b *testing.B) { runBulk(b, quicPipes(b)) })
	b.Run("impl=netmesh", func(b *testing.B) { runBulk(b, meshPipes(b)) })
}

// BenchmarkStreamRTT64 measures a 64-byte request and a 64-byte response on
// one open reliable stream, one at a time, as BenchmarkRTT64 does; p50-µs
// and p99-µs are the median and 99th percentile. Each request carries a
// sequence number the echo must return.
//
//   - quic: a quic-go bidirectional stream (the same measurement as
//     BenchmarkRTT64/impl=quic), read 64 bytes at a time.
//   - netmesh: a mesh stream, one 64-byte message each way.
func BenchmarkStreamRTT64(b *testing.B) {
	b.Run("impl=quic", quicRTT)
	b.Run("impl=netmesh", func(b *testing.B) { streamRoundTrips(b, meshPipes(b)) })
}

func runBulk(b *testing.B, p pipePair) {
	defer p.stop()
	var received atomic.Int64
	defer watchdog(b, &received, stallTimeout, p.stop)()
	msg, buf := make([]byte, bulkChunk), make([]byte, bulkChunk)
	done := make(chan error, 1)
	b.SetBytes(bulkChunk)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for range b.N {
			if err := p.server.recv(buf); err != nil {
				done <- err
				return
			}
			received.Add(1)
		}
		done <- nil
	}()
	for i := range b.N {
		if err := p.client.send(msg); err != nil {
			b.Fatalf("send %d of %d: %v", i, b.N, err)
		}
	}
	err := <-done
	b.StopTimer()
	if err != nil {
		b.Fatalf("received %d of %d messages: %v", received.Load(), b.N, err)
	}
}

// streamRoundTrips runs roundTrips on p: the client sends rttSize bytes
// carrying the op number and the server echoes them.
func streamRoundTrips(b *testing.B, p pipePair) {
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		buf := make([]byte, rttSize)
		for p.server.recv(buf) == nil && p.server.send(buf) == nil {
		}
	}()
	defer func() {
		p.stop()
		<-echoDone
	}()
	req, resp := make([]byte, rttSize), make([]byte, rttSize)
	roundTrips(b, p.stop, func(i int) error {
		binary.LittleEndian.PutUint64(req, uint64(i))
		if err := p.client.send(req); err != nil {
			return err
		}
		if err := p.client.recv(resp); err != nil {
			return err
		}
		if binary.LittleEndian.Uint64(resp) != uint64(i) {
			return errors.New("reply out of order")
		}
		return nil
	})
}

// quicPipes opens a quic-go stream on a fresh connection.
func quicPipes(tb testing.TB) pipePair {
	tb.Helper()
	client, server, stop := quicPair(tb, quicTLS(nil))
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	out, err := client.OpenStreamSync(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := out.Write(hello); err != nil {
		tb.Fatal(err)
	}
	in, err := server.AcceptStream(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	in.SetReadDeadline(time.Now().Add(setupTimeout))
	if _, err := io.ReadFull(in, make([]byte, len(hello))); err != nil {
		tb.Fatal(err)
	}
	in.SetReadDeadline(time.Time{})
	return pipePair{client: quicPipe(out), server: quicPipe(in), stop: stop}
}

func quicPipe(s *quic.Stream) pipe {
	return pipe{
		send: func(msg []byte) error {
			_, err := s.Write(msg)
			return err
		},
		recv: func(buf []byte) error {
			_, err := io.ReadFull(s, buf)
			return err
		},
	}
}

// meshPipes opens a reliable mesh stream between two fresh nodes.
func meshPipes(tb testing.TB) pipePair {
	tb.Helper()
	a, peer, ab := testnode.Pair(tb)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	setup, setupDone := context.WithTimeout(ctx, setupTimeout)
	defer setupDone()
	out, err := a.OpenStream(setup, ab, mesh.StreamConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := out.Send(setup, hello); err != nil {
		tb.Fatal(err)
	}
	in, _, err := peer.AcceptStream(setup)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := in.ReadMessage(setup, nil); err != nil {
		tb.Fatal(err)
	}
	return pipePair{client: meshPipe(ctx, out), server: meshPipe(ctx, in), stop: cancel}
}

// meshPipe is s with its calls bound by ctx.
func meshPipe(ctx context.Context, s *mesh.Stream) pipe {
	return pipe{
		send: func(msg []byte) error { return s.SendBlocking(ctx, msg) },
		recv: func(buf []byte) error {
			m, err := s.ReadMessage(ctx, buf[:0])
			if err == nil && len(m) != len(buf) {
				err = fmt.Errorf("got a %d-byte message, want %d bytes", len(m), len(buf))
			}
			return err
		},
	}
}
