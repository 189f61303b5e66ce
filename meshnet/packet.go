package meshnet

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// PacketConn is a net.PacketConn over the mesh's datagrams: unreliable,
// at most mesh.MaxDatagramSize bytes each, addressed by Addr. Its methods
// are safe for concurrent use.
type PacketConn struct {
	m     *mesh.Mesh
	local Addr
	deadlines
}

var _ net.PacketConn = (*PacketConn)(nil)

// ListenPacket returns a PacketConn for m's datagrams. The mesh has one
// queue of received datagrams: PacketConns on one mesh share it, and so
// does Mesh.ReadDatagram.
func ListenPacket(m *mesh.Mesh) *PacketConn {
	c := &PacketConn{m: m, local: Addr{Node: m.ID()}}
	c.open()
	return c
}

// ReadFrom waits for the next datagram and copies it into b; a datagram
// longer than b is truncated. addr is the sender's Addr.
func (c *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	ctx := c.rd.context()
	if err := ctx.Err(); err != nil {
		return 0, nil, c.opError("read", nil, context.Cause(ctx))
	}
	n, p, err := c.m.ReadDatagram(ctx, b)
	if err != nil {
		return 0, nil, c.opError("read", nil, cause(ctx, err))
	}
	return n, Addr{Node: p.ID()}, nil
}

// WriteTo sends b as one datagram to the node addr names (an Addr),
// connecting to it first if no session is up. When the send queue is
// full it retries until the write deadline. b longer than
// mesh.MaxDatagramSize fails with mesh.ErrTooLarge.
func (c *PacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ctx := c.wd.context()
	if err := ctx.Err(); err != nil {
		return 0, c.opError("write", addr, context.Cause(ctx))
	}
	id, err := nodeOf(addr)
	if err != nil {
		return 0, c.opError("write", addr, err)
	}
	p := c.m.Peer(id)
	if p == nil || !p.IsUp() {
		if p, err = c.m.ConnectNode(ctx, id, nil); err != nil {
			return 0, c.opError("write", addr, cause(ctx, err))
		}
	}
	wait := datagramRetryMin
	for {
		err := c.m.SendDatagram(ctx, p, b)
		if err == nil {
			return len(b), nil
		}
		if !errors.Is(err, mesh.ErrBackpressure) {
			return 0, c.opError("write", addr, cause(ctx, err))
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, c.opError("write", addr, context.Cause(ctx))
		}
		wait = min(2*wait, datagramRetryMax)
	}
}

// Close makes pending and later calls fail with net.ErrClosed. The mesh
// stays up. A second Close returns an error.
func (c *PacketConn) Close() error {
	if !c.close() {
		return c.opError("close", nil, net.ErrClosed)
	}
	return nil
}

// LocalAddr returns this node's address.
func (c *PacketConn) LocalAddr() net.Addr { return c.local }

// SetDeadline sets the read and write deadlines.
func (c *PacketConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for pending and future ReadFrom calls;
// the zero time means none.
func (c *PacketConn) SetReadDeadline(t time.Time) error {
	if err := c.setRead(t); err != nil {
		return c.opError("set", nil, err)
	}
	return nil
}

// SetWriteDeadline sets the deadline for pending and future WriteTo calls;
// the zero time means none.
func (c *PacketConn) SetWriteDeadline(t time.Time) error {
	if err := c.setWrite(t); err != nil {
		return c.opError("set", nil, err)
	}
	return nil
}

func (c *PacketConn) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: Network, Source: c.local, Addr: addr, Err: err}
}
