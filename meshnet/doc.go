// Package meshnet adapts netmesh to the standard library's network
// interfaces, so code written for package net runs over the mesh: a
// reliable stream is a net.Conn, a stream listener is a net.Listener, and
// the mesh's datagrams are a net.PacketConn. net/http, gRPC, crypto/tls
// and io.Copy work on them unchanged.
//
//	l, _ := meshnet.Listen(server, proto)
//	go http.Serve(l, handler)
//
//	c, _ := meshnet.Dial(ctx, client, server.ID(), proto)
//
// # Addresses
//
// An Addr names a node by its NodeID; its network is "netmesh". The remote
// address of a Conn, and the source of a datagram, is the NodeID the
// session authenticated: an http.Handler that reads Request.RemoteAddr
// knows which node is calling. A Dialer's DialContext takes the usual
// "host:port" form with the NodeID as host (the port is ignored), so a URL
// such as http://<node-id>/ reaches that node.
//
// # Streams as connections
//
// A Conn carries a byte stream over one reliable stream (package
// mesh/stream) on the protocol its listener was opened on. Write cuts the
// bytes into messages of at most 64 KiB and blocks while the stream's
// send window is full, until the write deadline; Read returns bytes of
// those messages in order, keeping the rest of a message it could not
// return whole for the next Read. The dialing side sends one empty
// message first, so the listener's Accept returns at once even for
// protocols where the server speaks first; Read skips empty messages.
// A stream on the protocol that is not reliable is refused. The dialing
// side resets a stream whose peer sends a message larger than 64 KiB; the
// accepting side takes what the mesh's Config.Streams.Accept allows.
//
// CloseWrite ends the sending side after the data written (the peer
// reads io.EOF) and leaves the receiving side open. Close ends both:
// it returns at once, pending calls fail with net.ErrClosed, and the
// stream finishes in the background, as a kernel finishes a closed TCP
// socket: the data written is delivered, then the peer's end of stream
// is awaited. Data from the peer that was never read or that arrives
// after Close resets the stream with ResetCodeClosed, as TCP answers it
// with a RST, and so does a peer that neither closes nor writes within
// the linger time (30 s).
//
// # Datagrams
//
// A PacketConn sends and receives the mesh's datagrams (Mesh.SendDatagram
// and Mesh.ReadDatagram): unreliable, at most mesh.MaxDatagramSize bytes,
// from and to any node. The mesh has one queue of received datagrams, so
// two PacketConns on one mesh share it and each datagram goes to one of
// them.
//
// # Protocols
//
// Streams are told apart by the mesh protocol they are opened on, like
// ports: a name such as "myapp/http" (mesh.NewProtocol), which both nodes
// must use.
//
// # Goroutines
//
// The package starts one goroutine per closed Conn, which ends when the
// stream finishes, at the latest after the linger time or when the mesh
// closes. Nothing else runs in the background.
package meshnet
