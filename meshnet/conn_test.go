package meshnet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/nettest"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/stream"
	"github.com/netmesh/netmesh/meshnet"
)

// TestConnConformance runs the standard net.Conn conformance suite on a
// Conn, with the dialing end first and with the accepting end first, on
// a direct and on a relayed path.
func TestConnConformance(t *testing.T) {
	for _, path := range []struct {
		name string
		pair func(testing.TB) (*mesh.Mesh, *mesh.Mesh)
	}{{"direct", directPair}, {"relayed", relayedPair}} {
		t.Run(path.name, func(t *testing.T) {
			a, b := path.pair(t)
			l := listen(t, b)
			for _, dialerFirst := range []bool{true, false} {
				name := "dialer"
				if !dialerFirst {
					name = "acceptor"
				}
				t.Run(name, func(t *testing.T) {
					nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
						ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
						defer cancel()
						dc, err := meshnet.Dial(ctx, a, b.ID(), testProto)
						if err != nil {
							return nil, nil, nil, err
						}
						ac, err := l.Accept()
						if err != nil {
							dc.Close()
							return nil, nil, nil, err
						}
						stop = func() { dc.Close(); ac.Close() }
						if dialerFirst {
							return dc, ac, stop, nil
						}
						return ac, dc, stop, nil
					})
				})
			}
		})
	}
}

// TestConnAddrs checks that both ends name the nodes by NodeID.
func TestConnAddrs(t *testing.T) {
	a, b := directPair(t)
	ac, bc := dialAccept(t, a, b, listen(t, b))
	for _, c := range []struct {
		got  net.Addr
		want string
	}{
		{ac.LocalAddr(), a.ID().String()}, {ac.RemoteAddr(), b.ID().String()},
		{bc.LocalAddr(), b.ID().String()}, {bc.RemoteAddr(), a.ID().String()},
	} {
		if c.got.Network() != "netmesh" || c.got.String() != c.want {
			t.Errorf("address %s/%s, want netmesh/%s", c.got.Network(), c.got, c.want)
		}
	}
	if bc.Peer().ID() != a.ID() {
		t.Errorf("accepted conn's peer is %s, want %s", bc.Peer().ID().Short(), a.ID().Short())
	}
}

// TestConnHalfClose checks CloseWrite: the peer reads everything then
// io.EOF, and can still answer on the other direction.
func TestConnHalfClose(t *testing.T) {
	a, b := directPair(t)
	ac, bc := dialAccept(t, a, b, listen(t, b))
	req := make([]byte, 300<<10)
	rand.Read(req)
	go func() {
		if _, err := ac.Write(req); err != nil {
			t.Error(err)
		}
		if err := ac.CloseWrite(); err != nil {
			t.Error(err)
		}
	}()
	got, err := io.ReadAll(bc)
	if err != nil || !bytes.Equal(got, req) {
		t.Fatalf("read %d bytes (equal %t), %v; want %d bytes, io.EOF", len(got), bytes.Equal(got, req), err, len(req))
	}
	if _, err := bc.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	if err := bc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(ac)
	if err != nil || string(got) != "answer" {
		t.Fatalf("read %q, %v; want %q", got, err, "answer")
	}
	if _, err := ac.Write([]byte("x")); err == nil {
		t.Fatal("Write after CloseWrite succeeded")
	}
}

// TestConnCloseFinishesStream checks that a closed pair leaves no stream
// state and no goroutine behind on either node.
func TestConnCloseFinishesStream(t *testing.T) {
	a, b := directPair(t)
	ac, bc := dialAccept(t, a, b, listen(t, b))
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	if _, err := ac.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(bc, buf); err != nil {
		t.Fatal(err)
	}
	ac.Close()
	if _, err := bc.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer's close: %v, want io.EOF", err)
	}
	bc.Close()
	waitEnded(t, ac, bc)
	for _, c := range []net.Conn{ac, bc} {
		if err := meshnet.StreamOf(c).Err(); err != nil {
			t.Errorf("stream ended with %v, want a graceful end", err)
		}
	}
}

// TestConnCloseWithUnreadDataResets checks the TCP rule: closing with the
// peer's data unread resets the stream, so the peer learns its data was
// not taken.
func TestConnCloseWithUnreadDataResets(t *testing.T) {
	a, b := directPair(t)
	ac, bc := dialAccept(t, a, b, listen(t, b))
	if _, err := bc.Write([]byte("never read")); err != nil {
		t.Fatal(err)
	}
	// Close a only once the data is there, unread.
	waitFor(t, "the data reaches a", func() bool {
		return meshnet.StreamOf(ac).Stats().RxMessages == 1
	})
	ac.Close()
	_, err := bc.Read(make([]byte, 10))
	var re *stream.ResetError
	if !errors.As(err, &re) || re.Code != meshnet.ResetCodeClosed || !re.Remote {
		t.Fatalf("read after the peer closed with unread data: %v, want a remote reset with code %d", err, meshnet.ResetCodeClosed)
	}
	waitEnded(t, ac, bc)
}

// TestConnLingerBound checks that a closed Conn whose peer never ends its
// side resets the stream after the linger time instead of holding it.
func TestConnLingerBound(t *testing.T) {
	meshnet.ShrinkLinger(t, 200*time.Millisecond)
	a, b := directPair(t)
	l := listen(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	// The peer is a raw stream that never closes.
	pa := a.Peer(b.ID())
	s, err := a.OpenStreamOn(ctx, pa, testProto, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, nil); err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := s.Recv(ctx); err != io.EOF {
		t.Fatalf("raw peer read %v, want io.EOF", err)
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("the stream did not end after the linger time")
	}
	var re *stream.ResetError
	if err := s.Err(); !errors.As(err, &re) || re.Code != meshnet.ResetCodeClosed {
		t.Fatalf("stream ended with %v, want a reset with code %d", err, meshnet.ResetCodeClosed)
	}
}

// TestConnReadBufferBounded checks that a peer's huge message does not
// leave a huge buffer in the Conn once read.
func TestConnReadBufferBounded(t *testing.T) {
	a, b := directPair(t)
	l := listen(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	s, err := a.OpenStreamOn(ctx, a.Peer(b.ID()), testProto, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 4<<20)
	if err := s.SendBlocking(ctx, big); err != nil {
		t.Fatal(err)
	}
	if err := s.SendBlocking(ctx, []byte("small")); err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(c, make([]byte, len(big))); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "small" {
		t.Fatalf("read %q, %v; want %q", buf[:n], err, "small")
	}
	if kept := meshnet.KeptReadBuffer(c.(*meshnet.Conn)); kept > meshnet.MaxKeptReadBuffer {
		t.Fatalf("conn keeps a %d-byte read buffer, limit %d", kept, meshnet.MaxKeptReadBuffer)
	}
}

// TestDialWithoutListener checks that a stream to a protocol nobody
// listens on fails on first use with the refusal.
func TestDialWithoutListener(t *testing.T) {
	a, b := directPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := meshnet.Dial(ctx, a, b.ID(), testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Read(make([]byte, 1))
	var re *stream.ResetError
	if !errors.As(err, &re) || re.Code != stream.CodeRefused {
		t.Fatalf("read on a refused stream: %v, want a reset with CodeRefused", err)
	}
}

// TestAcceptRefusesUnreliable checks that the listener resets an
// unreliable stream instead of handing it out as a byte stream.
func TestAcceptRefusesUnreliable(t *testing.T) {
	a, b := directPair(t)
	l := listen(t, b)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	s, err := a.OpenStreamOn(ctx, a.Peer(b.ID()), testProto, mesh.StreamConfig{Reliability: mesh.Unreliable})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, []byte("datagram")); err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv(ctx)
	var re *stream.ResetError
	if !errors.As(err, &re) || re.Code != stream.CodeRefused {
		t.Fatalf("unreliable stream read %v, want a reset with CodeRefused", err)
	}
	dc, err := meshnet.Dial(ctx, a, b.ID(), testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	c := <-accepted
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	if c.RemoteAddr().String() != a.ID().String() {
		t.Fatalf("accepted a conn from %s", c.RemoteAddr())
	}
}

// TestListenerClose checks that Close ends a pending Accept with
// net.ErrClosed and that the protocol can be listened on again.
func TestListenerClose(t *testing.T) {
	_, b := directPair(t)
	l, err := meshnet.Listen(b, testProto)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meshnet.Listen(b, testProto); err == nil {
		t.Fatal("second Listen on one protocol succeeded")
	}
	done := make(chan error)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	l.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	l2, err := meshnet.Listen(b, testProto)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
}

// TestConnClosedErrors checks the errors after Close: net.ErrClosed from
// every call, a timeout from none.
func TestConnClosedErrors(t *testing.T) {
	a, b := directPair(t)
	ac, _ := dialAccept(t, a, b, listen(t, b))
	if err := ac.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{
		"Close":       ac.Close(),
		"SetDeadline": ac.SetDeadline(time.Now()),
	}
	_, checks["Read"] = ac.Read(make([]byte, 1))
	_, checks["Write"] = ac.Write([]byte("x"))
	for call, err := range checks {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", call, err)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s after Close is a timeout", call)
		}
	}
}

// TestConnDeadlineMovedLater checks that a Read blocked under a deadline
// sees the deadline moved later and then cleared.
func TestConnDeadlineMovedLater(t *testing.T) {
	a, b := directPair(t)
	ac, bc := dialAccept(t, a, b, listen(t, b))
	ac.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	ac.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := ac.Read(make([]byte, 1))
		done <- err
	}()
	// Past the first deadline, the Read is still waiting: prove it by
	// making it return with data, not a timeout.
	timer := time.NewTimer(100 * time.Millisecond)
	defer timer.Stop()
	select {
	case err := <-done:
		t.Fatalf("Read returned %v under a cleared deadline", err)
	case <-timer.C:
	}
	if _, err := bc.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Read: %v", err)
	}
	ac.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := ac.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
}

// waitEnded waits until the streams of the conns ended: the nodes hold
// nothing for them any more.
func waitEnded(t *testing.T, conns ...net.Conn) {
	t.Helper()
	timer := time.NewTimer(setupTimeout)
	defer timer.Stop()
	for _, c := range conns {
		select {
		case <-meshnet.StreamOf(c).Done():
		case <-timer.C:
			t.Fatal("a closed conn's stream never ended")
		}
	}
}

// TestDialerRefusesHugeMessages checks that the dialing side does not
// buffer a message larger than a Conn ever writes: the stream is reset.
func TestDialerRefusesHugeMessages(t *testing.T) {
	a, b := directPair(t)
	l, err := b.ListenStreams(testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	c, err := meshnet.Dial(ctx, a, b.ID(), testProto)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, _, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendBlocking(ctx, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read(make([]byte, 10))
	var re *stream.ResetError
	if !errors.As(err, &re) || re.Code != stream.CodeTooLarge {
		t.Fatalf("read of a 1 MiB message: %v, want a reset with CodeTooLarge", err)
	}
}
