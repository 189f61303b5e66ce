package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// BenchmarkHubIdlePeers measures what an idle peer costs the node it is
// connected to (issue 20 keeps it at most 2.5 KB): n nodes dial one hub,
// then the hub is closed and dropped, and heap-B/peer is the live heap
// this gave back, less what the hub held before anyone dialled, divided
// by n. The dialling nodes' own state stays live throughout, so it is
// not counted.
func BenchmarkHubIdlePeers(b *testing.B) {
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.ReportMetric(hubPerPeer(b, n), "heap-B/peer")
			}
		})
	}
}

// hubPerPeer connects n spokes to a hub and returns the hub's live heap
// per peer.
func hubPerPeer(b *testing.B, n int) float64 {
	nodes := make([]*mesh.Mesh, n+1)
	for i := range n {
		nodes[i] = testnode.Start(b)
	}
	defer func() {
		for _, m := range nodes[:n] {
			m.Close()
		}
	}()
	before := heapInUse()
	hub, err := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0"}) // not testnode's: its cleanup would keep the hub live
	if err != nil {
		b.Fatal(err)
	}
	if err := hub.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	nodes[n] = hub
	alone := heapInUse() - before
	links := make([][2]int, n)
	for i := range links {
		links[i] = [2]int{i, n}
	}
	testnode.ConnectGraph(b, nodes, links)
	if got := len(hub.Peers()); got != n {
		b.Fatalf("the hub has %d peers, want %d", got, n)
	}
	connected := heapInUse()
	hub.Close()
	hub, nodes[n] = nil, nil // the collector may have it now
	held := connected - heapInUse()
	return float64(held-alone) / float64(n)
}
