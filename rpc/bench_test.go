package rpc_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/rpc"
)

// reportLatency reports the median and 99th percentile of lat in µs.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	us := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(us(0.50), "p50-µs")
	b.ReportMetric(us(0.99), "p99-µs")
}

// BenchmarkUnary measures a unary call with a 16-byte request and reply
// between two nodes on loopback, from 1 and 64 concurrent callers.
func BenchmarkUnary(b *testing.B) {
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := newSetup(b, rpc.ServerOptions{}, rpc.ClientOptions{})
			if err := s.srv.Handle("echo", func(_ context.Context, req []byte) ([]byte, error) { return req, nil }); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			req := make([]byte, 16)
			node := s.sm.ID()
			for range 100 { // warm up the stream engine's RTT estimate
				if _, err := s.c.Call(ctx, node, "echo", req); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			var failed atomic.Pointer[error]
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t0 := time.Now()
						if _, err := s.c.Call(ctx, node, "echo", req); err != nil {
							failed.Store(&err)
							return
						}
						lat[i] = time.Since(t0)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if err := failed.Load(); err != nil {
				b.Fatal(*err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
			reportLatency(b, lat)
		})
	}
}

// BenchmarkRawRTT measures mesh.Ping on the same kind of pair: the raw
// session round trip a unary call is compared with.
func BenchmarkRawRTT(b *testing.B) {
	s := newSetup(b, rpc.ServerOptions{}, rpc.ClientOptions{})
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := s.cm.Ping(ctx, s.peer); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	reportLatency(b, lat)
}
