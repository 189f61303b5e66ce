package stream

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// The request/response pattern costs one packet each way: the request's
// FIN rides on its fragment, the reply carries the request's ACK, and the
// reply's ACK rides on the next request. Only the last ACK goes alone.
func TestSendAndCloseOnePacketEachWay(t *testing.T) {
	cfg := testMuxConfig()
	cfg.MaxAckDelay = 50 * time.Millisecond // no delayed ACK falls due between calls
	cfg.MinRTO = 500 * time.Millisecond     // nor a retransmission before the last ACK
	cfg.finAckDelay = cfg.MaxAckDelay       // nor the request's ACK before its reply
	p := newPair(t, faults{}, 4, cfg)
	ctx := ctxT(t, 10*time.Second)
	const calls = 10
	for i := range calls {
		s, _ := p.a.Open(ctx, Config{})
		req := fmt.Sprintf("request %d", i)
		if err := s.SendAndClose(ctx, []byte(req)); err != nil {
			t.Fatal(err)
		}
		r, err := p.b.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := r.Recv(ctx); err != nil || string(m) != req {
			t.Fatalf("request %d: %q %v", i, m, err)
		}
		if _, err := r.Recv(ctx); err != io.EOF {
			t.Fatalf("request %d: want EOF, got %v", i, err)
		}
		if err := r.SendAndClose(ctx, []byte("reply")); err != nil {
			t.Fatal(err)
		}
		if m, err := s.Recv(ctx); err != nil || string(m) != "reply" {
			t.Fatalf("reply %d: %q %v", i, m, err)
		}
		if _, err := s.Recv(ctx); err != io.EOF {
			t.Fatalf("reply %d: want EOF, got %v", i, err)
		}
		<-s.Done() // the reply acknowledged the request and ended the stream
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(p.b.Stats().Streams) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the last reply was never acknowledged")
		}
		time.Sleep(time.Millisecond)
	}
	if ab, ba := p.ab.sent.Load(), p.ba.sent.Load(); ab != calls+1 || ba != calls {
		t.Fatalf("sent %d packets a->b and %d b->a for %d calls; want %d and %d", ab, ba, calls, calls+1, calls)
	}
}

// Done fires for a graceful end and for a reset, including a reset that
// comes after the peer's end of stream; Err tells them apart.
func TestDone(t *testing.T) {
	p := newPair(t, faults{}, 5, testMuxConfig())
	ctx := ctxT(t, 10*time.Second)

	s, _ := p.a.Open(ctx, Config{})
	if err := s.SendAndClose(ctx, []byte("only")); err != nil {
		t.Fatal(err)
	}
	r, _ := p.b.Accept(ctx)
	if _, err := r.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Recv(ctx); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
	done := r.Done()
	select {
	case <-done:
		t.Fatal("Done fired while the receiver's side is open")
	case <-time.After(20 * time.Millisecond):
	}
	s.Reset(9) // after the receiver read EOF
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Done never fired for a reset after EOF")
	}
	var re *ResetError
	if err := r.Err(); !errors.As(err, &re) || re.Code != 9 || !re.Remote {
		t.Fatalf("Err = %v, want a remote reset with code 9", err)
	}

	s2, _ := p.a.Open(ctx, Config{})
	if err := s2.SendAndClose(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	r2, _ := p.b.Accept(ctx)
	if err := r2.SendAndClose(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Stream{s2, r2} {
		select {
		case <-st.Done():
		case <-ctx.Done():
			t.Fatalf("stream %d: Done never fired after both sides closed", st.ID())
		}
		if err := st.Err(); err != nil {
			t.Fatalf("stream %d: Err = %v after a graceful end", st.ID(), err)
		}
	}
	if err := s2.SendAndClose(ctx, []byte("again")); !errors.Is(err, ErrClosed) {
		t.Fatalf("SendAndClose after close: %v, want ErrClosed", err)
	}
}

// AfterEnd runs its function when the stream ends (here by the peer's
// reset after EOF, as rpc uses it), not when it was stopped first, and at
// once for a stream that has ended.
func TestAfterEnd(t *testing.T) {
	p := newPair(t, faults{}, 1, testMuxConfig())
	ctx := ctxT(t, 10*time.Second)
	s, _ := p.a.Open(ctx, Config{})
	if err := s.SendAndClose(ctx, []byte("only")); err != nil {
		t.Fatal(err)
	}
	r, _ := p.b.Accept(ctx)
	if _, err := r.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 2)
	r.AfterEnd(func() { ran <- r.Err() })
	stopped := r.AfterEnd(func() { ran <- errors.New("a stopped function ran") })
	if !stopped() {
		t.Fatal("stop reported the function already started")
	}
	if stopped() {
		t.Fatal("a second stop reported stopping it again")
	}
	s.Reset(9)
	var re *ResetError
	select {
	case err := <-ran:
		if !errors.As(err, &re) || re.Code != 9 {
			t.Fatalf("the function ran with Err = %v, want the reset", err)
		}
	case <-ctx.Done():
		t.Fatal("AfterEnd's function never ran after the reset")
	}
	late := r.AfterEnd(func() { ran <- nil })
	if err := <-ran; err != nil {
		t.Fatalf("after the end: %v", err)
	}
	if late() {
		t.Fatal("stop after the end reported stopping it")
	}
	select {
	case err := <-ran:
		t.Fatalf("a function ran twice, or the stopped one ran: %v", err)
	default:
	}
}

// TestOnEnd: OnEnd's function runs once when the stream ends, before
// Done's channel closes; only the last one given runs; and on a stream
// that has ended it runs at once.
func TestOnEnd(t *testing.T) {
	p := newPair(t, faults{}, 1, testMuxConfig())
	ctx := ctxT(t, 10*time.Second)
	s, _ := p.a.Open(ctx, Config{})
	if err := s.SendAndClose(ctx, []byte("request")); err != nil {
		t.Fatal(err)
	}
	r, _ := p.b.Accept(ctx)
	if _, err := r.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	var first, last atomic.Int32
	r.OnEnd(func() { first.Add(1) })
	r.OnEnd(func() { last.Add(1) }) // replaces the first
	if err := r.SendAndClose(ctx, []byte("reply")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
	case <-ctx.Done():
		t.Fatal("the acknowledged stream never ended")
	}
	if first.Load() != 0 || last.Load() != 1 {
		t.Fatalf("the replaced function ran %d times, the last %d times; want 0 and 1", first.Load(), last.Load())
	}
	ran := false
	r.OnEnd(func() { ran = true })
	if !ran {
		t.Fatal("OnEnd on an ended stream did not run its function at once")
	}
	if last.Load() != 1 {
		t.Fatalf("the function ran %d times", last.Load())
	}
}
