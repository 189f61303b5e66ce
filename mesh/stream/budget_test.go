package stream

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// sendAll sends msgs on a new stream from p.a and closes it; errors go to
// errc.
func sendAll(ctx context.Context, m *Mux, msgs [][]byte, errc chan<- error) {
	s, err := m.Open(ctx, Config{})
	if err != nil {
		errc <- err
		return
	}
	for _, msg := range msgs {
		if err := s.SendBlocking(ctx, msg); err != nil {
			errc <- err
			return
		}
	}
	errc <- s.CloseContext(ctx)
}

// A receiver that does not read holds at most about the Mux's budget,
// however many streams send; once it reads, everything arrives intact.
func TestRecvBudgetBoundsUnreadData(t *testing.T) {
	cfg := testMuxConfig()
	cfg.RecvBudget = 1 << 20
	p := newPair(t, faults{}, 6, cfg)
	ctx := ctxT(t, 30*time.Second)
	const streams, perStream = 8, 48
	msgs := make([][]byte, perStream) // 3 MiB per stream, 24 MiB in all
	for i := range msgs {
		msgs[i] = message(uint64(i), 64<<10)
	}
	errc := make(chan error, streams)
	for range streams {
		go sendAll(ctx, p.a, msgs, errc)
	}
	// Let the senders run into the budget, then check what b holds.
	var peak int
	for still := 0; still < 20; {
		time.Sleep(10 * time.Millisecond)
		if h := p.b.Stats().RecvHeld; h > peak {
			peak, still = h, 0
		} else {
			still++
		}
	}
	if limit := 2 * cfg.RecvBudget; peak > limit {
		t.Fatalf("the receiver holds %d bytes of unread data; budget %d", peak, cfg.RecvBudget)
	}
	if peak < cfg.RecvBudget/2 {
		t.Fatalf("the receiver holds only %d bytes: the senders never reached the budget", peak)
	}
	var wg sync.WaitGroup
	for range streams {
		r, err := p.b.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range perStream {
				m, err := r.Recv(ctx)
				if err != nil || !bytes.Equal(m, msgs[i]) {
					t.Errorf("stream %d message %d: %d bytes, %v", r.ID(), i, len(m), err)
					return
				}
			}
		})
	}
	wg.Wait()
	for range streams {
		if err := <-errc; err != nil {
			t.Fatalf("sender: %v", err)
		}
	}
	if h := p.b.Stats().RecvHeld; h != 0 {
		t.Fatalf("%d bytes still counted as held after every message was read", h)
	}
}

// Messages that together exceed the budget all complete when read
// concurrently: a message whose reservation fits can always finish, and
// the others wait for the memory it frees.
func TestRecvBudgetLargeMessages(t *testing.T) {
	cfg := testMuxConfig()
	cfg.RecvBudget = 1 << 20
	p := newPair(t, faults{}, 7, cfg)
	ctx := ctxT(t, 30*time.Second)
	const streams = 3
	errc := make(chan error, streams)
	want := make(map[byte][]byte)
	for i := range streams {
		msg := message(uint64(100+i), 800<<10) // 3 x 800 KiB against a 1 MiB budget
		msg[0] = byte(i)
		want[byte(i)] = msg
		go sendAll(ctx, p.a, [][]byte{msg}, errc)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := 0
	for range streams {
		r, err := p.b.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			m, err := r.Recv(ctx)
			mu.Lock()
			peak = max(peak, p.b.Stats().RecvHeld)
			mu.Unlock()
			if err != nil || len(m) == 0 || !bytes.Equal(m, want[m[0]]) {
				t.Errorf("stream %d: %d bytes, %v", r.ID(), len(m), err)
			}
		})
	}
	wg.Wait()
	for range streams {
		if err := <-errc; err != nil {
			t.Fatalf("sender: %v", err)
		}
	}
	if peak > 2*cfg.RecvBudget {
		t.Fatalf("held %d bytes at a message's delivery; budget %d", peak, cfg.RecvBudget)
	}
}
