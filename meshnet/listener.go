package meshnet

import (
	"context"
	"errors"
	"net"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/stream"
)

// Listener is a net.Listener for the streams peers open on one protocol.
type Listener struct {
	l      *mesh.StreamListener
	m      *mesh.Mesh
	addr   Addr
	closed context.Context
	close  context.CancelFunc
}

var _ net.Listener = (*Listener)(nil)

// Listen listens on m for connections on proto (not listened on
// already), which Dial opens.
func Listen(m *mesh.Mesh, proto mesh.Protocol) (*Listener, error) {
	sl, err := m.ListenStreams(proto)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: Network, Addr: Addr{Node: m.ID()}, Err: err}
	}
	l := &Listener{l: sl, m: m, addr: Addr{Node: m.ID()}}
	l.closed, l.close = context.WithCancel(context.Background())
	return l, nil
}

// Accept waits for the next connection. After Close it fails with an
// error wrapping net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		s, p, err := l.l.Accept(l.closed)
		if err != nil {
			if l.closed.Err() != nil || errors.Is(err, mesh.ErrClosed) {
				err = net.ErrClosed
			}
			return nil, &net.OpError{Op: "accept", Net: Network, Addr: l.addr, Err: err}
		}
		if s.Reliability() != mesh.Reliable {
			s.Reset(stream.CodeRefused)
			continue
		}
		return newConn(l.m, s, p), nil
	}
}

// Close stops listening: Accept fails, and streams peers open on the
// protocol from now on are refused. Connections already accepted stay
// open.
func (l *Listener) Close() error {
	l.close()
	return l.l.Close()
}

// Addr returns this node's address.
func (l *Listener) Addr() net.Addr { return l.addr }

// Dial opens a connection to the node id on proto, connecting to the node
// first if no session is up (mesh.ConnectNode: directly or through a
// relay). It returns once the stream is open, without waiting for the
// peer: a node that does not listen on proto resets the stream, and the
// first Read or Write after that fails.
func Dial(ctx context.Context, m *mesh.Mesh, id identity.NodeID, proto mesh.Protocol) (*Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: Network, Source: Addr{Node: m.ID()}, Addr: Addr{Node: id}, Err: err}
	}
	p, err := m.ConnectNode(ctx, id, nil)
	if err != nil {
		return nil, opErr(err)
	}
	// Conns write messages of at most maxWriteMessage: a peer that sends
	// larger ones only makes this side buffer more, so they reset the
	// stream.
	s, err := m.OpenStreamOn(ctx, p, proto, mesh.StreamConfig{MaxMessageSize: maxWriteMessage})
	if err != nil {
		return nil, opErr(err)
	}
	// The empty opening message makes the listener's Accept return now,
	// not when this side first writes.
	if err := s.Send(ctx, nil); err != nil {
		s.Reset(ResetCodeClosed)
		return nil, opErr(err)
	}
	return newConn(m, s, p), nil
}

// Dialer dials one protocol on one mesh with the signature net/http and
// gRPC take (http.Transport.DialContext, grpc.WithContextDialer).
type Dialer struct {
	Mesh     *mesh.Mesh
	Protocol mesh.Protocol
}

// DialContext dials the node address names: a NodeID, or
// "<node-id>:<port>" with the port ignored. network is ignored too (HTTP
// clients pass "tcp").
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	id, err := ParseAddress(address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: Network, Err: err}
	}
	return Dial(ctx, d.Mesh, id, d.Protocol)
}
