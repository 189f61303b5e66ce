package stream

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// dropFirst makes l drop the first n frames of type typ, and counts every
// frame of that type it is offered.
func dropFirst(l *memLink, typ frameType, n int64) *atomic.Int64 {
	var seen atomic.Int64
	f := func(b []byte) bool {
		return frameType(b[0]) == typ && seen.Add(1) <= n
	}
	l.drop.Store(&f)
	return &seen
}

// A stream is forgotten the moment it ends: when the FIN's ACK is lost,
// the tombstone acknowledges the resent FIN, and Close succeeds.
func TestTombstoneAcksResentFIN(t *testing.T) {
	p := newPair(t, faults{}, 1, testMuxConfig())
	ctx := ctxT(t, 10*time.Second)
	s, _ := p.a.Open(ctx, Config{})
	if err := s.Send(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseContext(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := p.b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := r.Recv(ctx); err != nil || string(m) != "x" {
		t.Fatalf("recv %q %v", m, err)
	}
	if _, err := r.Recv(ctx); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
	acks := dropFirst(p.ab, frameAck, 1) // a's ACK of b's FIN
	if err := r.CloseContext(ctx); err != nil {
		t.Fatalf("close after a lost ACK: %v", err)
	}
	if n := acks.Load(); n < 2 {
		t.Fatalf("a sent %d ACKs; the first was dropped, so the FIN must have been acknowledged again", n)
	}
	if st := r.Stats(); st.Retransmits == 0 {
		t.Fatal("the FIN was never retransmitted: the test did not exercise the tombstone")
	}
	if n := len(p.a.Stats().Streams) + len(p.b.Stats().Streams); n != 0 {
		t.Fatalf("%d finished streams still held", n)
	}
}

// When the echo of a RESET is lost, the tombstone of the echoing side
// echoes the resent RESET, so the resetting side forgets the stream after
// one retry instead of eight.
func TestTombstoneEchoesResentReset(t *testing.T) {
	p := newPair(t, faults{}, 2, testMuxConfig())
	ctx := ctxT(t, 10*time.Second)
	s, _ := p.a.Open(ctx, Config{})
	if err := s.Send(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	r, err := p.b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	echoes := dropFirst(p.ab, frameReset, 1) // a's echo
	var resets atomic.Int64
	count := func(b []byte) bool {
		if frameType(b[0]) == frameReset {
			resets.Add(1)
		}
		return false
	}
	p.ba.drop.Store(&count)
	r.Reset(7)
	var re *ResetError
	if _, err := s.Recv(ctx); !errors.As(err, &re) || re.Code != 7 || !re.Remote {
		t.Fatalf("a: want remote reset 7, got %v", err)
	}
	deadline := time.Now().Add(time.Second) // 8 retries would take 5 s
	for len(p.b.Stats().Streams) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("b still holds the stream after %d RESETs", resets.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if got := resets.Load(); got != 2 {
		t.Fatalf("b sent %d RESETs, want 2 (the first echo was dropped)", got)
	}
	if echoes.Load() != 2 {
		t.Fatalf("a echoed %d times, want 2", echoes.Load())
	}
}

// Finished streams leave the Mux at once and stop counting against
// MaxStreams: streams opened one after another never hit a limit of 2.
func TestFinishedStreamsFreeTheirSlot(t *testing.T) {
	cfg := testMuxConfig()
	cfg.MaxStreams = 2
	p := newPair(t, faults{}, 3, cfg)
	for i := range 20 {
		transfer(t, p, [][]byte{[]byte("request")}, 5*time.Second)
		if n := len(p.b.Stats().Streams); n != 0 {
			t.Fatalf("exchange %d: the receiver still holds %d finished streams", i, n)
		}
	}
	if st := p.b.Stats(); st.Refused != 0 || st.Accepted != 20 {
		t.Fatalf("accepted %d, refused %d; want 20, 0", st.Accepted, st.Refused)
	}
}

// The highest peer stream id, 0xFFFFFFFF, opens a stream like any other:
// clearing the tombstones of the ids coming into use must not wrap.
func TestTopPeerStreamID(t *testing.T) {
	p := newPair(t, faults{}, 8, testMuxConfig())
	p.b.mu.Lock()
	p.b.highestPeer = 0xFFFFFFFF - 4
	p.b.tombs.ack = make([]uint64, 2*tombWindow/64) // as after a forgotten stream
	p.b.tombs.echo = make([]uint64, 2*tombWindow/64)
	p.b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.b.HandleFrame(appendFrame(nil, &frame{Type: frameData, Stream: 0xFFFFFFFF, Data: []byte{1, 'x'}}))
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("HandleFrame never returned for stream id 0xFFFFFFFF")
	}
	if st := p.b.Stats(); st.Accepted != 1 {
		t.Fatalf("accepted %d streams, want 1", st.Accepted)
	}
}
