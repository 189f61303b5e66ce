package mesh_test

import (
	"bytes"
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

// A request/response service on a protocol of the application's own:
// b runs a handler per stream; a opens a stream, sends a request with the
// end of its side, and reads the reply.
func ExampleMesh_HandleStreams() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _ := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0"})
	b, _ := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0"})
	a.Start(ctx)
	b.Start(ctx)
	defer a.Close()
	defer b.Close()

	upper := mesh.MustProtocol("example/upper") // the application's protocol
	b.HandleStreams(upper, func(s *mesh.Stream, from *mesh.Peer) {
		req, err := s.Recv(ctx)
		if err != nil {
			return
		}
		s.SendAndClose(ctx, bytes.ToUpper(req))
		<-s.Done() // the reply was acknowledged (or the stream reset)
	})

	peer, err := a.Connect(ctx, b.Addr(), mesh.Pin{Key: b.Identity().PublicKey()})
	if err != nil {
		log.Fatal(err)
	}
	s, err := a.OpenStreamOn(ctx, peer, upper, mesh.StreamConfig{})
	if err != nil {
		log.Fatal(err)
	}
	s.SendAndClose(ctx, []byte("hello"))
	reply, err := s.Recv(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", reply)
	// Output: HELLO
}
