package stream

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestIdleStreamsReset guards against a peer that parks streams: one
// frame opens a stream, and the reader (an engine's goroutine, say)
// waited on it forever. A stream the peer opened and left silent while
// it waits on the peer is now reset with CodeIdle after IdleTimeout; one
// that waits only on the local application, and streams this side
// opened, are left alone. The timer is driven by hand.
func TestIdleStreamsReset(t *testing.T) {
	ctx := context.Background()
	const idle = 10 * time.Second // the timer goroutine stays out of it
	l := &captureLink{}
	m := NewMux(l, MuxConfig{IdleTimeout: idle})
	defer m.Close()
	open := func(key uint32, fin bool) *Stream {
		t.Helper()
		f := &frame{Type: frameData, Stream: key, Data: []byte{5, 'h', 'e'}} // 2 of a message's 5 bytes
		if fin {
			f.Data = []byte{2, 'h', 'i'}
			f.Flags = flagFin
		}
		m.HandleFrame(appendFrame(nil, f))
		s, err := m.Accept(ctx)
		if err != nil || s.ID() != key {
			t.Fatalf("accept: %v, %v", s, err)
		}
		return s
	}
	silent := open(3, false)         // waits for the rest of its message
	finished := open(5, true)        // the peer ended it: it waits on us
	mine, _ := m.Open(ctx, Config{}) // ours, never used
	active := open(7, false)

	m.mu.Lock()
	for _, s := range []*Stream{silent, finished, mine, active} {
		s.lastActive = 0 // the clock starts here
	}
	m.mu.Unlock()
	tick := func(at time.Duration) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range []*Stream{silent, finished, mine, active} {
			if !s.removed {
				s.onTimerLocked(int64(at))
			}
		}
	}
	tick(idle - time.Millisecond)
	if st := m.Stats(); st.IdleResets != 0 {
		t.Fatalf("%d streams reset before IdleTimeout", st.IdleResets)
	}
	m.mu.Lock()
	active.lastActive = int64(idle / 2) // a frame arrived half way
	m.mu.Unlock()
	tick(idle + time.Millisecond)

	var re *ResetError
	if err := silent.Err(); !errors.As(err, &re) || re.Code != CodeIdle || re.Remote {
		t.Fatalf("silent stream: %v, want a local reset with CodeIdle", err)
	}
	if _, err := silent.Recv(ctx); !errors.As(err, &re) || re.Code != CodeIdle {
		t.Fatalf("Recv on the silent stream: %v", err)
	}
	for _, s := range []*Stream{finished, mine, active} {
		if err := s.Err(); err != nil {
			t.Fatalf("stream %d reset: %v", s.ID(), err)
		}
	}
	if st := m.Stats(); st.IdleResets != 1 {
		t.Fatalf("IdleResets %d, want 1", st.IdleResets)
	}
	if _, resets := l.take(frameReset, 3^1); len(resets) != 1 || resets[0].Code != CodeIdle {
		t.Fatalf("RESETs sent to the peer: %+v, want one with CodeIdle", resets)
	}
	tick(idle + idle/2 + time.Millisecond)
	if err := active.Err(); !errors.As(err, &re) || re.Code != CodeIdle {
		t.Fatalf("the active stream, silent since: %v, want CodeIdle", err)
	}
	if err := finished.Err(); err != nil {
		t.Fatalf("a stream waiting on the application was reset: %v", err)
	}
	if got, err := finished.Recv(ctx); err != nil || string(got) != "hi" {
		t.Fatalf("the finished stream's message: %q, %v", got, err)
	}
}

// TestIdleTimeoutEndToEnd: with the real timer, a peer that opens a
// stream with one frame and goes silent gets the stream reset, and the
// goroutine reading it returns; the opener sees the reset too.
func TestIdleTimeoutEndToEnd(t *testing.T) {
	cfg := testMuxConfig()
	cfg.IdleTimeout = 100 * time.Millisecond
	p := newPair(t, faults{}, 9, cfg)
	ctx := ctxT(t, 20*time.Second)
	s, _ := p.a.Open(ctx, Config{})
	if err := s.Send(ctx, []byte("one message, then silence")); err != nil {
		t.Fatal(err)
	}
	r, err := p.b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	var re *ResetError
	if _, err := r.Recv(ctx); !errors.As(err, &re) || re.Code != CodeIdle || re.Remote {
		t.Fatalf("Recv on the idle stream: %v, want a local reset with CodeIdle", err)
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("the opener never saw the reset")
	}
	if err := s.Err(); !errors.As(err, &re) || re.Code != CodeIdle || !re.Remote {
		t.Fatalf("opener: %v, want the peer's reset with CodeIdle", err)
	}
	if st := p.b.Stats(); st.IdleResets != 1 {
		t.Fatalf("IdleResets %d, want 1", st.IdleResets)
	}
	for len(p.b.Stats().Streams) != 0 { // forgotten once the opener echoed the reset
		if ctx.Err() != nil {
			t.Fatal("the idle stream was never forgotten")
		}
		time.Sleep(time.Millisecond)
	}
}
