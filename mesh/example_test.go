package mesh_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// Two nodes on loopback: a connects to b knowing b's key (Noise IK, one
// round trip) and sends it a datagram.
func ExampleMesh_Connect() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _ := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0"})
	b, _ := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0"})
	a.Start(ctx)
	b.Start(ctx)
	defer a.Close()
	defer b.Close()

	peer, err := a.Connect(ctx, b.Addr(), mesh.Pin{Key: b.Identity().PublicKey()})
	if err != nil {
		log.Fatal(err)
	}
	a.SendDatagram(ctx, peer, []byte("hello"))

	buf := make([]byte, mesh.MaxDatagramSize)
	n, from, err := b.ReadDatagram(ctx, buf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s from a: %v\n", buf[:n], from.ID() == a.ID())
	// Output: hello from a: true
}
