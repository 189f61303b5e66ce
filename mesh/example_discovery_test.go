package mesh_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/mesh"
)

// startNodes starts n nodes on loopback for an example.
func startNodes(ctx context.Context, n int) []*mesh.Mesh {
	nodes := make([]*mesh.Mesh, n)
	for i := range nodes {
		m, err := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0"})
		if err != nil {
			log.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			log.Fatal(err)
		}
		nodes[i] = m
	}
	return nodes
}

// Waiting for a node: a worker announces a GPU after the watch began, and
// the watcher takes the first node that matches.
func ExampleMesh_WatchNodes() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes := startNodes(ctx, 2)
	watcher, worker := nodes[0], nodes[1]
	defer watcher.Close()
	defer worker.Close()

	if _, err := worker.Connect(ctx, watcher.Addr(), mesh.Pin{Key: watcher.Identity().PublicKey()}); err != nil {
		log.Fatal(err)
	}
	go worker.AnnounceCapabilities(capability.Set{Tags: []string{"gpu"}}) // meanwhile, elsewhere

	for change, n := range watcher.WatchNodes(ctx, capability.HasTag("gpu")) {
		fmt.Println(change, n.ID == worker.ID(), n.Set.Tags, n.Status)
		break // the first one will do
	}
	// Output: added true [gpu] online
}

// Finding nodes by what they announce: two workers announce GPUs of
// different sizes, and a third node picks by a filter and by a score.
func ExampleMesh_FindNodes() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes := startNodes(ctx, 3)
	a, big, small := nodes[0], nodes[1], nodes[2]
	for _, m := range nodes {
		defer m.Close()
	}
	for _, w := range []*mesh.Mesh{big, small} {
		if _, err := w.Connect(ctx, a.Addr(), mesh.Pin{Key: a.Identity().PublicKey()}); err != nil {
			log.Fatal(err)
		}
	}
	big.AnnounceCapabilities(capability.Set{Tags: []string{"gpu"}, Metadata: map[string]string{"gpu_mem_gb": "48"}})
	small.AnnounceCapabilities(capability.Set{Tags: []string{"gpu"}, Metadata: map[string]string{"gpu_mem_gb": "8"}})

	// Gossip takes a moment: wait until a has heard of both.
	seen := 0
	for range a.WatchNodes(ctx, capability.HasTag("gpu")) {
		if seen++; seen == 2 {
			break
		}
	}

	f, err := capability.ParseFilter("gpu && gpu_mem_gb>=24")
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range a.FindNodes(f) {
		fmt.Println("24 GB or more:", n.ID == big.ID(), n.Set.Metadata["gpu_mem_gb"])
	}
	best, _ := a.FindBestNode(capability.HasTag("gpu"), capability.Lowest("gpu_mem_gb"))
	fmt.Println("smallest GPU:", best.ID == small.ID())
	// Output:
	// 24 GB or more: true 48
	// smallest GPU: true
}

// Publish/subscribe: a sensor publishes readings on a channel; a
// dashboard subscribes to it by the publisher's NodeID.
func ExampleMesh_Publish() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes := startNodes(ctx, 2)
	sensor, dashboard := nodes[0], nodes[1]
	defer sensor.Close()
	defer dashboard.Close()

	if err := sensor.RegisterChannel("temperature", channel.Config{}); err != nil {
		log.Fatal(err)
	}
	if _, err := dashboard.Connect(ctx, sensor.Addr(), mesh.Pin{Key: sensor.Identity().PublicKey()}); err != nil {
		log.Fatal(err)
	}
	sub, err := dashboard.SubscribeChannel(ctx, sensor.ID(), "temperature", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Unsubscribe()

	for _, reading := range []string{"21.5 C", "21.7 C"} {
		report, err := sensor.Publish(ctx, "temperature", []byte(reading))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("delivered to", report.Delivered)
	}
	for range 2 {
		msg, err := sub.Recv(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(msg.Seq, string(msg.Payload), msg.Publisher == sensor.ID())
	}
	// Output:
	// delivered to 1
	// delivered to 1
	// 1 21.5 C true
	// 2 21.7 C true
}
