package compare

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
	"github.com/netmesh/netmesh/rpc"
)

// unarySize is the request and reply size of BenchmarkUnary.
const unarySize = 16

// unaryWarmup is how many calls each run makes untimed before the measured
// ones, so both transports start from an RTT estimate (as rpc's own
// BenchmarkUnary does).
const unaryWarmup = 100

// unary is one request/response service under test: call sends req and
// returns the reply; stop makes calls in progress fail and releases the
// service. stop may be called more than once.
type unary struct {
	call func(req []byte) ([]byte, error)
	stop func()
	// writes, if set, counts the system calls that wrote packets on both
	// ends (netmesh): writes/call shows how well sends batch.
	writes func() uint64
}

// BenchmarkUnary measures unary calls with a 16-byte request and a
// 16-byte reply, echoed, between two endpoints on loopback sharing one
// connection, from 1 caller or 64 concurrent callers. calls/s is the rate
// of calls completed; p50-µs and p99-µs the percentiles of one call's
// latency; cpu-ns/op the process's CPU time (user and system, both ends
// and for NATS the broker) per call, which other jobs on a shared machine
// disturb far less than the wall time; writes/call (netmesh) the system
// calls that wrote packets, on both ends, per call.
//
//   - quic: the way gRPC uses a connection: each call opens a new quic-go
//     stream, writes the request, closes its side and reads the reply to
//     EOF; the server handles each stream in its own goroutine.
//   - nats: a request on a subject through an embedded nats-server, one
//     broker hop each way (nats_test.go);
//   - netmesh: rpc.Client.Call on a service registered with rpc.Server.
//
// Each run first makes unaryWarmup calls untimed. No call completing for
// stallTimeout fails the benchmark instead of hanging it.
func BenchmarkUnary(b *testing.B) {
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			b.Run("impl=quic", func(b *testing.B) { runUnary(b, callers, quicUnary(b)) })
			b.Run("impl=nats", func(b *testing.B) { runUnary(b, callers, natsUnary(b)) })
			b.Run("impl=netmesh", func(b *testing.B) { runUnary(b, callers, meshUnary(b)) })
		})
	}
}

func runUnary(b *testing.B, callers int, u unary) {
	defer u.stop()
	req := []byte("0123456789abcdef")[:unarySize]
	call := func() error {
		resp, err := u.call(req)
		if err == nil && !bytes.Equal(resp, req) {
			err = fmt.Errorf("reply %q to %q", resp, req)
		}
		return err
	}
	var done atomic.Int64
	defer watchdog(b, &done, stallTimeout, u.stop)()
	for range unaryWarmup {
		if err := call(); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
		done.Add(1)
	}
	lat := make([]time.Duration, b.N)
	var writes0 uint64
	if u.writes != nil {
		writes0 = u.writes()
	}
	var next atomic.Int64
	errs := make(chan error, callers)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := call(); err != nil {
					errs <- fmt.Errorf("call %d: %w", i, err)
					return
				}
				lat[i] = time.Since(t0)
				done.Add(1)
			}
		})
	}
	wg.Wait()
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	if u.writes != nil {
		b.ReportMetric(float64(u.writes()-writes0)/float64(b.N), "writes/call")
	}
	reportPercentiles(b, lat)
}

// quicUnary serves unary calls over one quic-go connection, a stream per
// call.
func quicUnary(tb testing.TB) unary {
	client, server, stop := quicPair(tb, quicTLS(nil))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			s, err := server.AcceptStream(ctx)
			if err != nil {
				return
			}
			wg.Go(func() { quicEcho(s) })
		}
	}()
	abort := func() {
		cancel()
		stop()
	}
	tb.Cleanup(func() {
		abort()
		<-served
	})
	return unary{
		call: func(req []byte) ([]byte, error) {
			s, err := client.OpenStreamSync(ctx)
			if err != nil {
				return nil, err
			}
			if _, err := s.Write(req); err != nil {
				return nil, err
			}
			if err := s.Close(); err != nil { // the write side only
				return nil, err
			}
			return io.ReadAll(s)
		},
		stop: abort,
	}
}

// quicEcho reads a request to EOF and writes it back on the same stream.
func quicEcho(s *quic.Stream) {
	req, err := io.ReadAll(s)
	if err != nil {
		s.CancelWrite(0)
		return
	}
	s.Write(req)
	s.Close()
}

// meshUnary serves unary calls with package rpc between two connected
// nodes.
func meshUnary(tb testing.TB) unary {
	cm, sm, _ := testnode.Pair(tb)
	srv, err := rpc.NewServer(sm, rpc.ServerOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	if err := srv.Handle("echo", func(_ context.Context, req []byte) ([]byte, error) { return req, nil }); err != nil {
		tb.Fatal(err)
	}
	c := rpc.NewClient(cm, rpc.ClientOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	node := sm.ID()
	return unary{
		call:   func(req []byte) ([]byte, error) { return c.Call(ctx, node, "echo", req) },
		stop:   cancel,
		writes: func() uint64 { return cm.Stats().SocketWrites + sm.Stats().SocketWrites },
	}
}
