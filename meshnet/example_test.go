package meshnet_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/meshnet"
)

// startExampleNode starts a node on a random port of 127.0.0.1.
func startExampleNode(ctx context.Context) *mesh.Mesh {
	m, err := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	if err := m.Start(ctx); err != nil {
		panic(err)
	}
	return m
}

// An HTTP server and client talking over the mesh. The URL's host is the
// server's NodeID, and the handler learns the caller's NodeID, which the
// session authenticated, from RemoteAddr.
func Example_http() {
	ctx := context.Background()
	server, client := startExampleNode(ctx), startExampleNode(ctx)
	defer server.Close()
	defer client.Close()
	if _, err := client.Connect(ctx, server.Addr(), mesh.Pin{Key: server.Identity().PublicKey()}); err != nil {
		panic(err)
	}

	proto := mesh.MustProtocol("example/http") // the protocol both sides agree on, like a port
	l, err := meshnet.Listen(server, proto)
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, caller is the client: %t", r.RemoteAddr == client.ID().String())
	}))

	tr := &http.Transport{DialContext: (&meshnet.Dialer{Mesh: client, Protocol: proto}).DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + server.ID().String() + "/")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status)
	fmt.Println(string(body))
	// Output:
	// 200 OK
	// hello, caller is the client: true
}

// A byte stream between two nodes: the server echoes one line.
func ExampleDial() {
	ctx := context.Background()
	server, client := startExampleNode(ctx), startExampleNode(ctx)
	defer server.Close()
	defer client.Close()
	if _, err := client.Connect(ctx, server.Addr(), mesh.Pin{Key: server.Identity().PublicKey()}); err != nil {
		panic(err)
	}

	proto := mesh.MustProtocol("example/echo")
	l, err := meshnet.Listen(server, proto)
	if err != nil {
		panic(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo until the client closes its side
	}()

	c, err := meshnet.Dial(ctx, client, server.ID(), proto)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	io.WriteString(c, "hello over the mesh\n")
	c.CloseWrite()
	echo, _ := io.ReadAll(c)
	fmt.Print(string(echo))
	// Output: hello over the mesh
}

// Datagrams between two nodes as a net.PacketConn.
func ExampleListenPacket() {
	ctx := context.Background()
	a, b := startExampleNode(ctx), startExampleNode(ctx)
	defer a.Close()
	defer b.Close()
	if _, err := a.Connect(ctx, b.Addr(), mesh.Pin{Key: b.Identity().PublicKey()}); err != nil {
		panic(err)
	}
	pa, pb := meshnet.ListenPacket(a), meshnet.ListenPacket(b)
	defer pa.Close()
	defer pb.Close()

	// Datagrams can be lost: send until one arrives.
	sent := make(chan struct{})
	defer close(sent)
	go func() {
		for {
			if _, err := pa.WriteTo([]byte("ping"), meshnet.Addr{Node: b.ID()}); err != nil {
				return
			}
			select {
			case <-sent:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	buf := make([]byte, mesh.MaxDatagramSize)
	n, from, err := pb.ReadFrom(buf)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s from a: %t\n", buf[:n], from.String() == a.ID().String())
	// Output: ping from a: true
}
