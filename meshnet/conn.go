package meshnet

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// Conn is a net.Conn over one reliable mesh stream. Its methods are safe
// for concurrent use; concurrent Reads (and concurrent Writes) are served
// one at a time, each Write's bytes contiguous.
type Conn struct {
	s      *mesh.Stream
	peer   *mesh.Peer
	local  Addr
	remote Addr

	deadlines

	// rlock and wlock serialise Reads and Writes: a one-slot channel, so
	// that waiting for it ends with the deadline.
	rlock, wlock chan struct{}
	// rbuf is the buffer of the last message read and pending the part
	// of it no Read has returned yet; rlock guards them.
	rbuf, pending []byte
	// writeClosed is set by CloseWrite; wlock guards it.
	writeClosed bool
}

var _ net.Conn = (*Conn)(nil)

func newConn(m *mesh.Mesh, s *mesh.Stream, p *mesh.Peer) *Conn {
	c := &Conn{
		s:      s,
		peer:   p,
		local:  Addr{Node: m.ID()},
		remote: Addr{Node: p.ID()},
		rlock:  make(chan struct{}, 1),
		wlock:  make(chan struct{}, 1),
	}
	c.open()
	return c
}

// Read reads bytes the peer wrote. It returns io.EOF after the peer's
// CloseWrite or Close once every byte was read.
func (c *Conn) Read(b []byte) (int, error) {
	ctx := c.rd.context()
	if err := ctx.Err(); err != nil {
		return 0, c.opError("read", context.Cause(ctx))
	}
	if err := acquire(ctx, c.rlock); err != nil {
		return 0, c.opError("read", err)
	}
	defer release(c.rlock)
	if len(b) == 0 {
		return 0, nil
	}
	for len(c.pending) == 0 {
		if cap(c.rbuf) > maxKeptReadBuffer {
			c.rbuf = nil
		}
		msg, err := c.s.ReadMessage(ctx, c.rbuf)
		c.rbuf = msg[:0]
		if err == io.EOF {
			return 0, io.EOF
		}
		if err != nil {
			return 0, c.opError("read", cause(ctx, err))
		}
		c.pending = msg
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write writes b to the peer. It blocks while the stream's send window is
// full, until the write deadline; on an error it returns how many bytes
// were queued whole before it.
func (c *Conn) Write(b []byte) (int, error) {
	ctx := c.wd.context()
	if err := ctx.Err(); err != nil {
		return 0, c.opError("write", context.Cause(ctx))
	}
	if err := acquire(ctx, c.wlock); err != nil {
		return 0, c.opError("write", err)
	}
	defer release(c.wlock)
	if c.writeClosed {
		return 0, c.opError("write", net.ErrClosed)
	}
	n := 0
	for n < len(b) {
		chunk := b[n:min(len(b), n+maxWriteMessage)]
		if err := c.s.SendBlocking(ctx, chunk); err != nil {
			return n, c.opError("write", cause(ctx, err))
		}
		n += len(chunk)
	}
	return n, nil
}

// CloseWrite ends the sending side: the peer reads what was written, then
// io.EOF. Reading goes on until the peer ends its side. It waits for room
// in the send window for the end of stream, at most until the write
// deadline.
func (c *Conn) CloseWrite() error {
	ctx := c.wd.context()
	if err := acquire(ctx, c.wlock); err != nil {
		return c.opError("close", err)
	}
	defer release(c.wlock)
	if c.writeClosed {
		return nil
	}
	for {
		// The end of stream rides on an empty message, which Read
		// skips; when the window has no room for it, wait for room.
		err := c.s.SendAndClose(ctx, nil)
		if errors.Is(err, mesh.ErrBackpressure) {
			err = c.s.SendBlocking(ctx, nil)
			if err == nil {
				continue
			}
		}
		if err != nil {
			return c.opError("close", cause(ctx, err))
		}
		c.writeClosed = true
		return nil
	}
}

// Close closes the connection: pending and later calls fail with
// net.ErrClosed, and the stream finishes in the background (see the
// package documentation). A second Close returns an error.
func (c *Conn) Close() error {
	if !c.close() {
		return c.opError("close", net.ErrClosed)
	}
	go c.linger(lingerTimeout)
	return nil
}

// linger finishes the stream of a closed Conn within timeout. With data
// from the peer unread it resets the stream at once. Otherwise it ends
// the sending side after the data written, waits for the peer to
// acknowledge it, then for the peer's end of stream; data arriving
// meanwhile, or a peer that does not end in time, resets the stream.
func (c *Conn) linger(timeout time.Duration) {
	if c.unread() {
		c.s.Reset(ResetCodeClosed)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.s.CloseContext(ctx); err != nil {
		return // reset (on timeout by CloseContext itself) or the mesh closed
	}
	for msg, err := range c.s.Messages(ctx) {
		if err != nil || len(msg) > 0 {
			c.s.Reset(ResetCodeClosed)
			return
		}
	}
}

// unread reports whether a closed Conn holds data from the peer that no
// Read returned: the rest of a message, whole messages, or fragments of
// one. It drops what it finds.
func (c *Conn) unread() bool {
	c.rlock <- struct{}{} // pending Reads return: the conn is closed
	defer release(c.rlock)
	unread := len(c.pending) > 0
	c.pending, c.rbuf = nil, nil
	for !unread {
		msg, err := c.s.ReadMessage(c.closed, nil) // c.closed has ended: no wait
		if err != nil {
			break
		}
		unread = len(msg) > 0
	}
	return unread || c.s.Stats().RecvBuffered > 0
}

// LocalAddr returns this node's address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address: the NodeID its session
// authenticated.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Peer returns the peer at the other end.
func (c *Conn) Peer() *mesh.Peer { return c.peer }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for pending and future Reads; the zero
// time means none. A Read past it fails with an error whose Timeout method
// returns true (os.ErrDeadlineExceeded).
func (c *Conn) SetReadDeadline(t time.Time) error {
	if err := c.setRead(t); err != nil {
		return c.opError("set", err)
	}
	return nil
}

// SetWriteDeadline sets the deadline for pending and future Writes and
// CloseWrite; the zero time means none.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if err := c.setWrite(t); err != nil {
		return c.opError("set", err)
	}
	return nil
}

// opError wraps err as package net does, naming op and both ends.
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: Network, Source: c.local, Addr: c.remote, Err: err}
}

// acquire takes the one-slot lock l, or returns why ctx ended first.
func acquire(ctx context.Context, l chan struct{}) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func release(l chan struct{}) { <-l }
