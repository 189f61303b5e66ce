package compare

import (
	"context"
	"encoding/binary"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// BenchmarkRTT64 measures a 64-byte request and a 64-byte response on an
// open connection, one at a time. One op is one round trip; p50-µs and
// p99-µs are the median and 99th percentile.
//
//   - quic: a quic-go bidirectional stream, echoed by the server.
//   - netmesh: datagrams on an established session, echoed by the server;
//     each request carries a sequence number so a stale reply is never
//     counted.
//   - udp-plain: raw net.UDPConn datagrams, the floor.
//
// A round trip stuck for over a second (a lost datagram) fails the
// benchmark instead of hanging it.
func BenchmarkRTT64(b *testing.B) {
	b.Run("impl=quic", quicRTT)
	b.Run("impl=netmesh", meshRTT)
	b.Run("impl=udp-plain", plainRTT)
}

// roundTrips runs b.N round trips of rt and reports their percentiles. rt
// gets the op number and returns an error if the reply did not arrive. A
// round trip stuck for over a second calls abort, which must make rt
// return.
func roundTrips(b *testing.B, abort func(), rt func(i int) error) {
	var progress atomic.Int64
	defer watchdog(b, &progress, time.Second, abort)()
	samples := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if err := rt(i); err != nil {
			b.Fatalf("round trip %d: %v", i, err)
		}
		samples[i] = time.Since(t0)
		progress.Add(1)
	}
	b.StopTimer()
	reportPercentiles(b, samples)
}

// reportPercentiles reports the median and the 90th, 99th and 99.9th
// percentiles of samples in microseconds: p90 shows a distribution's
// body, p99.9 the stalls every implementation shares on this machine.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	pct := func(p float64) float64 {
		i := int(float64(len(samples))*p+0.5) - 1
		i = max(0, min(i, len(samples)-1))
		return float64(samples[i]) / float64(time.Microsecond)
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(pct(0.90), "p90-µs")
	b.ReportMetric(pct(0.999), "p99.9-µs")
}

// quicRTT is BenchmarkRTT64/impl=quic and BenchmarkStreamRTT64/impl=quic:
// round trips on one quic-go stream.
func quicRTT(b *testing.B) { streamRoundTrips(b, quicPipes(b)) }

func meshRTT(b *testing.B) {
	client, server, peer := testnode.Pair(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		buf := make([]byte, mesh.MaxDatagramSize)
		for {
			n, from, err := server.ReadDatagram(ctx, buf)
			if err != nil {
				return
			}
			if err := server.SendDatagram(ctx, from, buf[:n]); err != nil && ctx.Err() != nil {
				return
			}
		}
	}()
	req, resp := make([]byte, rttSize), make([]byte, mesh.MaxDatagramSize)
	roundTrips(b, cancel, func(i int) error {
		binary.LittleEndian.PutUint64(req, uint64(i))
		if err := client.SendDatagram(ctx, peer, req); err != nil {
			return err
		}
		for {
			n, _, err := client.ReadDatagram(ctx, resp)
			if err != nil {
				return err
			}
			if n == rttSize && binary.LittleEndian.Uint64(resp) == uint64(i) {
				return nil
			}
		}
	})
	cancel()
	<-echoDone
}

func plainRTT(b *testing.B) {
	client, server := listenPlain(b), listenPlain(b)
	defer client.Close()
	defer server.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := server.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			server.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-ctx.Done()
		client.Close() // unblocks a read stuck on a lost datagram
	}()
	dst := server.LocalAddr().(*net.UDPAddr).AddrPort()
	req, resp := make([]byte, rttSize), make([]byte, 2048)
	roundTrips(b, cancel, func(i int) error {
		binary.LittleEndian.PutUint64(req, uint64(i))
		if _, err := client.WriteToUDPAddrPort(req, dst); err != nil {
			return err
		}
		for {
			n, _, err := client.ReadFromUDPAddrPort(resp)
			if err != nil {
				return err
			}
			if n == rttSize && binary.LittleEndian.Uint64(resp) == uint64(i) {
				return nil
			}
		}
	})
}
