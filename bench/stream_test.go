package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// BenchmarkStreamThroughput: one reliable stream between two meshes on
// loopback, 1 MiB messages sent with SendBlocking; b.N messages; MB/s is
// what the receiver read.
func BenchmarkStreamThroughput(b *testing.B) {
	a, peer, ab := testnode.Pair(b)
	streamBulk(b, a, peer, ab)
}

// streamBulk sends b.N 1 MiB messages from a to peer on one reliable
// stream and reports what the receiver read.
func streamBulk(b *testing.B, a, peer *mesh.Mesh, ab *mesh.Peer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := a.OpenStream(ctx, ab, mesh.StreamConfig{})
	if err != nil {
		b.Fatal(err)
	}
	const size = 1 << 20
	msg := make([]byte, size)
	done := make(chan int64, 1)
	go func() {
		rs, _, err := peer.AcceptStream(ctx)
		if err != nil {
			done <- 0
			return
		}
		var n int64
		buf := make([]byte, 0, size)
		for {
			m, err := rs.ReadMessage(ctx, buf[:0])
			if err != nil {
				done <- n
				return
			}
			n += int64(len(m))
		}
	}()
	b.SetBytes(size)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := s.SendBlocking(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.CloseContext(ctx); err != nil {
		b.Fatal(err)
	}
	got := <-done
	b.StopTimer()
	if got != int64(b.N)*size {
		b.Fatalf("received %d of %d bytes", got, int64(b.N)*size)
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds()/1e6, "MB/s-recv")
	b.ReportMetric(float64(s.Stats().Retransmits), "retransmits")
	if drops := peer.Stats().Drops; len(drops) > 0 {
		b.Logf("receiver drops: %v; sender drops: %v, send back-pressure %d", drops, a.Stats().Drops, a.Stats().SendBackpressure)
	}
}

// BenchmarkStreamRTT64: 64-byte request and response on one open reliable
// stream, one at a time; reports p50 and p99 round trips.
func BenchmarkStreamRTT64(b *testing.B) {
	a, peer, ab := testnode.Pair(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := a.OpenStream(ctx, ab, mesh.StreamConfig{})
	if err != nil {
		b.Fatal(err)
	}
	req := make([]byte, 64)
	if err := s.Send(ctx, req); err != nil {
		b.Fatal(err)
	}
	rs, _, err := peer.AcceptStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	go func() { // echo server
		buf := make([]byte, 0, 64)
		for {
			m, err := rs.ReadMessage(ctx, buf[:0])
			if err != nil || rs.Send(ctx, m) != nil {
				return
			}
		}
	}()
	buf := make([]byte, 0, 64)
	if _, err := s.ReadMessage(ctx, buf[:0]); err != nil { // the first echo
		b.Fatal(err)
	}
	rtts := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := s.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
		if _, err := s.ReadMessage(ctx, buf[:0]); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Nanoseconds())/1e3, "p99-µs")
}
