package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/rpc"
)

// TestShutdownLetsCallsFinish: Shutdown refuses new calls at once but
// lets a running one finish and deliver its reply.
func TestShutdownLetsCallsFinish(t *testing.T) {
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{})
	started, release := make(chan struct{}), make(chan struct{})
	if err := s.srv.Handle("slow", func(ctx context.Context, req []byte) ([]byte, error) {
		close(started)
		select {
		case <-release:
			return []byte("finished"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}); err != nil {
		t.Fatal(err)
	}
	reply := make(chan error, 1)
	go func() {
		b, err := s.c.Call(ctxT(t), s.sm.ID(), "slow", nil)
		if err == nil && string(b) != "finished" {
			err = errors.New("reply " + string(b))
		}
		reply <- err
	}()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- s.srv.Shutdown(ctxT(t)) }()
	eventually(t, 5*time.Second, "the tags to be withdrawn", func() bool { return len(s.srv.Tags()) == 0 })
	_, err := s.c.Call(ctxT(t), s.sm.ID(), "slow", nil)
	serverErr(t, err, rpc.StatusUnavailable)
	close(release)
	if err := <-reply; err != nil {
		t.Fatalf("the running call: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestShutdownCancelsWhenItsContextEnds: a handler still running when
// Shutdown's context ends is cancelled and its caller told unavailable.
func TestShutdownCancelsWhenItsContextEnds(t *testing.T) {
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{})
	started := make(chan struct{})
	if err := s.srv.Handle("stuck", func(ctx context.Context, req []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	reply := make(chan error, 1)
	go func() {
		_, err := s.c.Call(ctxT(t), s.sm.ID(), "stuck", nil)
		reply <- err
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- s.srv.Shutdown(ctx) }()
	cancel()
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
	serverErr(t, <-reply, rpc.StatusUnavailable)
}

// cutOffPair starts a server node and a caller node, connected, whose
// path the test can cut at the server's socket (fc.Block(cm.Addr()))
// without either node declaring the other down.
func cutOffPair(t *testing.T) (fc *meshtest.FaultConn, sm, cm *mesh.Mesh, srv *rpc.Server, c *rpc.Client) {
	fc = meshtest.Listen(t, meshtest.Options{})
	patient := func(c *mesh.Config) { c.DeadPeerTimeout = time.Hour }
	sm = newNode(t, patient, func(c *mesh.Config) { c.Conn = fc })
	cm = newNode(t, patient)
	srv = newServer(t, sm, rpc.ServerOptions{})
	c = rpc.NewClient(cm, rpc.ClientOptions{})
	connect(t, cm, sm)
	return fc, sm, cm, srv, c
}

// TestCloseDoesNotWaitForVanishedCaller: a caller that vanishes (its
// packets stop, its session is not known to be down) does not hold Close
// until the stall timeout: calls still waiting for their callers are
// reset shortly after the handlers were cancelled.
func TestCloseDoesNotWaitForVanishedCaller(t *testing.T) {
	fc, sm, cm, srv, c := cutOffPair(t)
	started := make(chan struct{})
	if err := srv.Handle("stuck", func(ctx context.Context, req []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	go c.Call(ctxT(t), sm.ID(), "stuck", nil)
	<-started
	fc.Block(cm.Addr()) // the caller vanishes
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second): // the stall timeout is 30 s
		t.Fatal("Close waits for a caller that vanished")
	}
	fc.Unblock(cm.Addr())
}

// TestUnaryReplyLeftToTheStream: once a unary handler has returned, no
// goroutine waits for the caller to acknowledge its reply: the stream
// delivers it (here once the caller's path is back) and the stream's end
// ends the call.
func TestUnaryReplyLeftToTheStream(t *testing.T) {
	fc, sm, cm, srv, c := cutOffPair(t)
	started, release := make(chan struct{}), make(chan struct{})
	if err := srv.Handle("held", func(context.Context, []byte) ([]byte, error) {
		close(started)
		<-release
		return []byte("done"), nil
	}); err != nil {
		t.Fatal(err)
	}
	reply := make(chan error, 1)
	go func() {
		resp, err := c.Call(ctxT(t), sm.ID(), "held", nil)
		if err == nil && string(resp) != "done" {
			err = fmt.Errorf("reply %q", resp)
		}
		reply <- err
	}()
	<-started
	fc.Block(cm.Addr()) // neither the reply nor its acknowledgement passes
	close(release)
	eventually(t, 5*time.Second, "the handler returns", func() bool { return srv.Stats().Active == 0 })
	// A goroutine that waited would be parked within microseconds of the
	// handler's return; look for one for a while.
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if strings.Contains(stacks, "rpc.(*Server).finish(") || strings.Contains(stacks, "stream.(*Stream).CloseContext(") {
			t.Fatalf("a goroutine waits for the caller's acknowledgement:\n%s", stacks)
		}
		runtime.Gosched()
	}
	fc.Unblock(cm.Addr())
	if err := <-reply; err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}
