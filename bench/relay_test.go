package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// relayedPair starts a — r — b on loopback where a and b cannot reach
// each other (their conns block each other's address) and connects a to b
// by NodeID through r. It returns a's Peer for b.
func relayedPair(b *testing.B) (a, peer *mesh.Mesh, ab *mesh.Peer) {
	b.Helper()
	ca := meshtest.Listen(b, meshtest.Options{Seed: 1})
	cb := meshtest.Listen(b, meshtest.Options{Seed: 2})
	r := testnode.Start(b)
	peer = testnode.Start(b, func(c *mesh.Config) { c.Conn = cb })
	a = testnode.Start(b, func(c *mesh.Config) { c.Conn, c.Relays = ca, []mesh.Relay{{Addr: r.Addr()}} })
	ca.Block(peer.Addr())
	cb.Block(a.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := peer.Connect(ctx, r.Addr(), mesh.Pin{}); err != nil {
		b.Fatal(err)
	}
	for {
		if p := a.Peer(r.ID()); p != nil && p.IsUp() {
			break
		}
		if ctx.Err() != nil {
			b.Fatal("a never reached its relay")
		}
		time.Sleep(time.Millisecond)
	}
	ab, err := a.ConnectNode(ctx, peer.ID(), peer.Identity().PublicKey())
	if err != nil {
		b.Fatal(err)
	}
	if ab.Stats().Path != "relayed" {
		b.Fatalf("path %q, want relayed", ab.Stats().Path)
	}
	return a, peer, ab
}

// BenchmarkPath compares a direct session with one relayed through a third
// node, in the same run: stream bulk throughput (1 MiB messages, MB/s) and
// ping round trips (p50, p99). Both ends and the relay share the machine,
// so the relayed numbers include the relay's CPU.
func BenchmarkPath(b *testing.B) {
	paths := []struct {
		name  string
		setup func(*testing.B) (*mesh.Mesh, *mesh.Mesh, *mesh.Peer)
	}{
		{"direct", func(b *testing.B) (*mesh.Mesh, *mesh.Mesh, *mesh.Peer) { return testnode.Pair(b) }},
		{"relayed", relayedPair},
	}
	for _, p := range paths {
		b.Run(p.name+"/stream", func(b *testing.B) {
			a, peer, ab := p.setup(b)
			streamBulk(b, a, peer, ab)
		})
		b.Run(p.name+"/ping", func(b *testing.B) {
			a, _, ab := p.setup(b)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rtts := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				rtt, err := a.Ping(ctx, ab)
				if err != nil {
					b.Fatal(err)
				}
				rtts = append(rtts, rtt)
			}
			b.StopTimer()
			slices.Sort(rtts)
			b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(rtts[len(rtts)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}
