package rpc_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/rpc"
)

// A node serves a typed "greet" service; another connects and calls it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := func() *mesh.Mesh {
		m, err := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0"})
		if err != nil {
			log.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			log.Fatal(err)
		}
		return m
	}
	serverNode, clientNode := start(), start()
	defer serverNode.Close()
	defer clientNode.Close()

	srv, err := rpc.NewServer(serverNode, rpc.ServerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	err = rpc.HandleTyped(srv, "greet", func(ctx context.Context, name string) (string, error) {
		return "hello, " + name, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("advertised:", srv.Tags())

	if _, err := clientNode.Connect(ctx, serverNode.Addr(), mesh.Pin{}); err != nil {
		log.Fatal(err)
	}
	c := rpc.NewClient(clientNode, rpc.ClientOptions{})
	reply, err := rpc.CallTyped[string](ctx, c, serverNode.ID(), "greet", "mesh")
	fmt.Println(reply, err)

	_, err = c.Call(ctx, serverNode.ID(), "nosuch", nil)
	fmt.Println(err.(*rpc.Error).Status)
	// Output:
	// advertised: [rpc:greet]
	// hello, mesh <nil>
	// unknown service
}
