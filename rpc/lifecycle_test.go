package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/rpc"
)

// TestStreamTailOutlivesServer guards the end of a successful stream
// against a slow consumer: once the caller acknowledged the final frame,
// the server is done with the call (Close does not wait for the caller or
// cut it off), and the caller reads every chunk and io.EOF whenever it
// gets to them.
func TestStreamTailOutlivesServer(t *testing.T) {
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{})
	const n = 8
	finished := make(chan struct{})
	if err := s.srv.HandleStream("tail", func(ctx context.Context, req []byte, w *rpc.ResponseWriter) error {
		for i := range n {
			if err := w.Send(ctx, []byte(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		close(finished)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st, err := s.c.Stream(ctxT(t), s.sm.ID(), "tail", nil) // credit 16 > n
	if err != nil {
		t.Fatal(err)
	}
	if b, err := st.Recv(); err != nil || string(b) != "0" {
		t.Fatalf("first chunk: %q, %v", b, err)
	}
	<-finished
	// The consumer is slow: the server finishes the call meanwhile.
	if err := s.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// A round trip: whatever the server sent the caller before Close
	// returned (a reset, say) has arrived.
	if _, err := s.cm.Ping(ctxT(t), s.peer); err != nil {
		t.Fatal(err)
	}
	got := 1
	for {
		b, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d of %d chunks: %v", got, n, err)
		}
		if string(b) != fmt.Sprint(got) {
			t.Fatalf("chunk %d is %q", got, b)
		}
		got++
	}
	if got != n {
		t.Fatalf("got %d chunks, want %d", got, n)
	}
	if cs := s.c.Stats(); cs.Failures != 0 || cs.Outstanding != 0 {
		t.Fatalf("client stats %+v", cs)
	}
}

// TestRecvAfterCloseIsCanceled guards the documented kind of a stream the
// caller closed: Recv then fails with KindCancelled matching
// context.Canceled.
func TestRecvAfterCloseIsCanceled(t *testing.T) {
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{})
	if err := s.srv.HandleStream("inf", func(ctx context.Context, req []byte, w *rpc.ResponseWriter) error {
		for {
			if err := w.Send(ctx, []byte("x")); err != nil {
				return err
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	st, err := s.c.Stream(ctxT(t), s.sm.ID(), "inf", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	_, err = st.Recv()
	if re := rpcErr(t, err, rpc.KindCancelled); !errors.Is(re, context.Canceled) {
		t.Fatalf("Recv after Close: %v does not match context.Canceled", err)
	}
}

// TestTypedStreamDecodeFailure guards the accounting of a chunk that does
// not decode: a KindCodec failure, not a cancellation.
func TestTypedStreamDecodeFailure(t *testing.T) {
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{})
	if err := s.srv.HandleStream("bad", func(ctx context.Context, req []byte, w *rpc.ResponseWriter) error {
		return w.Send(ctx, []byte("{nope"))
	}); err != nil {
		t.Fatal(err)
	}
	ts, err := rpc.StreamTyped[int](ctxT(t), s.c, s.sm.ID(), "bad", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ts.Recv()
	rpcErr(t, err, rpc.KindCodec)
	_, err = ts.Recv()
	rpcErr(t, err, rpc.KindCodec) // sticky
	if cs := s.c.Stats(); cs.Failures != 1 || cs.Cancelled != 0 || cs.Outstanding != 0 {
		t.Fatalf("client stats %+v", cs)
	}
}

// TestStalledRequestTimesOut guards the server against a caller that
// sends the first fragments of a request and no more: after
// RequestTimeout the call is refused and its goroutines end. The server's
// acknowledgements are lost, so the caller cannot send past its initial
// window.
func TestStalledRequestTimesOut(t *testing.T) {
	fc := meshtest.Listen(t, meshtest.Options{})
	patient := func(c *mesh.Config) { c.DeadPeerTimeout = time.Minute }
	sm := newNode(t, patient, func(c *mesh.Config) { c.Conn = fc })
	cm := newNode(t, patient)
	srv := newServer(t, sm, rpc.ServerOptions{RequestTimeout: 100 * time.Millisecond})
	peer := connect(t, cm, sm)
	ctx := ctxT(t)
	st, err := cm.OpenStreamOn(ctx, peer, mesh.MustProtocol(rpc.ProtocolName), mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	fc.SetFaults(meshtest.Faults{Loss: 1})
	if err := st.Send(ctx, make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the stalled request to be refused", func() bool {
		return srv.Stats().Refused == 1
	})
	fc.SetFaults(meshtest.Faults{})
	if err := srv.Close(); err != nil { // returns: no goroutine waits for the request
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Calls != 0 || st.Active != 0 {
		t.Fatalf("server stats %+v", st)
	}
}
