//go:build nat

package mesh_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// NAT traversal (build tag nat): two nodes that meet through a relay,
// each having dialled out to it, ask it to coordinate a hole punch and
// move their session to a direct path. Here all three run on loopback,
// where the punch always succeeds; behind real NATs it succeeds unless
// both are symmetric (NATType), and the session then stays relayed.
func ExampleMesh_ConnectDirect() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relay := startNodes(ctx, 1)[0]
	defer relay.Close()
	viaRelay := func(c *mesh.Config) {
		c.ListenAddr = "127.0.0.1:0"
		c.Relays = []mesh.Relay{{Addr: relay.Addr(), Pin: mesh.Pin{Key: relay.Identity().PublicKey()}}}
	}
	var nodes [2]*mesh.Mesh
	for i := range nodes {
		var cfg mesh.Config
		viaRelay(&cfg)
		m, err := mesh.New(cfg)
		if err != nil {
			log.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			log.Fatal(err)
		}
		defer m.Close()
		nodes[i] = m
	}
	a, b := nodes[0], nodes[1]
	// a knows b only by its NodeID and key: the session goes through the
	// relay.
	for _, m := range nodes {
		for p := m.Peer(relay.ID()); p == nil || !p.IsUp(); p = m.Peer(relay.ID()) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	peer, err := a.ConnectNode(ctx, b.ID(), b.Identity().PublicKey())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("before:", peer.Stats().Path)

	if err := a.ConnectDirect(ctx, peer, a.Peer(relay.ID())); err != nil {
		// A *mesh.NATError; the path stays relayed and says why.
		fmt.Println("stays relayed:", peer.Stats().PathReason, "this NAT:", a.NATType())
		return
	}
	fmt.Println("after:", peer.Stats().Path)
	// Output:
	// before: relayed
	// after: direct
}
