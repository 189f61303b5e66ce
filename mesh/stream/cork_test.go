package stream

import (
	"context"
	"sync"
	"testing"
	"time"
)

// corkingLink is a captureLink whose frames stay "queued" until the test
// writes them, like the mesh's socket queue; write calls Uncork as the
// mesh's writer does.
type corkingLink struct {
	captureLink
	qmu            sync.Mutex
	queued, writtn uint64
	want           bool
	mux            *Mux
}

func (l *corkingLink) SendFrame(head, data []byte) error {
	if err := l.captureLink.SendFrame(head, data); err != nil {
		return err
	}
	l.qmu.Lock()
	l.queued++
	l.qmu.Unlock()
	return nil
}

func (l *corkingLink) Queued() uint64 {
	l.qmu.Lock()
	defer l.qmu.Unlock()
	return l.queued
}

func (l *corkingLink) Pending(t uint64) bool {
	l.qmu.Lock()
	defer l.qmu.Unlock()
	if l.writtn >= t {
		return false
	}
	l.want = true
	return true
}

// write marks every queued frame written and uncorks the Mux if it asked.
func (l *corkingLink) write() {
	l.qmu.Lock()
	l.writtn = l.queued
	want := l.want
	l.want = false
	l.qmu.Unlock()
	if want {
		l.mux.Uncork()
	}
}

// writeSettled is write, then waits until the Mux has acted on its
// Uncork: a Mux whose lock another goroutine held at that instant (its
// timer goroutine) leaves the flush to its timer goroutine.
func (l *corkingLink) writeSettled() {
	l.write()
	m := l.mux
	m.mu.Lock()
	m.flushLocked(m.now())
	m.mu.Unlock()
}

// dataFrames returns the DATA frames of wire stream w sent since the last
// call.
func (l *corkingLink) dataFrames(w uint32) []frame {
	_, fs := l.take(frameData, w)
	return fs
}

// corkedStream opens a stream on a Mux over a corkingLink.
func corkedStream(t *testing.T, maxAckDelay time.Duration) (*corkingLink, *Mux, *Stream) {
	t.Helper()
	l := &corkingLink{}
	m := NewMux(l, MuxConfig{MinRTO: 10 * time.Second, MaxAckDelay: maxAckDelay})
	t.Cleanup(func() { m.Close() })
	l.mux = m
	s, err := m.Open(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	return l, m, s
}

// TestAutocorkCoalescesWhileQueued: a stream's message sent while its
// previous frame waits in the Link's queue joins a held fragment, which
// goes, with the messages sent meanwhile, when the Link has written the
// queue; an idle Link sends at once.
func TestAutocorkCoalescesWhileQueued(t *testing.T) {
	ctx := context.Background()
	l, m, s := corkedStream(t, time.Hour)
	w := s.key ^ 1
	send := func(b byte) {
		t.Helper()
		if err := s.Send(ctx, message(uint64(b), 300)); err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	if fs := l.dataFrames(w); len(fs) != 1 {
		t.Fatalf("first message on an idle link: %d DATA frames, want 1 at once", len(fs))
	}
	for i := byte(2); i <= 4; i++ {
		send(i)
	}
	if fs := l.dataFrames(w); len(fs) != 0 {
		t.Fatalf("messages sent behind a queued frame: %d DATA frames before the queue was written, want 0", len(fs))
	}
	l.writeSettled()
	fs := l.dataFrames(w)
	if len(fs) != 1 || fs[0].Seq != 1 || len(fs[0].Data) != 3*302 {
		t.Fatalf("after the write: %d DATA frames, want one fragment (seq 1) with the 3 messages", len(fs))
	}
	if n := m.Stats().Corked; n != 1 {
		t.Fatalf("Stats.Corked %d, want 1", n)
	}
	l.writeSettled()
	send(6)
	if fs := l.dataFrames(w); len(fs) != 1 {
		t.Fatalf("message on a written link: %d DATA frames, want 1 at once", len(fs))
	}
}

// TestAutocorkFillsWholeFragments: small messages sent behind a queued
// frame go in whole fragments, not in the small chunks a lone small
// message takes: only the first held fragment is small, and the partly
// filled last one waits for the write.
func TestAutocorkFillsWholeFragments(t *testing.T) {
	ctx := context.Background()
	l, m, s := corkedStream(t, time.Hour)
	w := s.key ^ 1
	const n, size = 40, 100 // 101 bytes each with the length prefix
	for i := range n {
		if err := s.Send(ctx, message(uint64(i), size)); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	fc := s.fragCapLocked()
	m.mu.Unlock()
	fs := l.dataFrames(w)
	held := len(fs)
	l.writeSettled()
	fs = append(fs, l.dataFrames(w)...)
	rest := (n-1)*(size+1) - smallChunkSize // after the first message and the small chunk
	if want := 2 + (rest+fc-1)/fc; len(fs) != want || held != want-1 {
		t.Fatalf("%d DATA frames, %d of them before the write; want %d, %d before", len(fs), held, want, want-1)
	}
	for i, f := range fs {
		want := fc
		switch i {
		case 0:
			want = size + 1
		case 1:
			want = smallChunkSize
		case len(fs) - 1:
			want = rest - (len(fs)-3)*fc
		}
		if len(f.Data) != want {
			t.Fatalf("DATA frame %d carries %d bytes, want %d", i, len(f.Data), want)
		}
	}
}

// heldRequests sends one message on s, which the Link queues, then a
// request (one message and FIN) on each of n new streams behind it.
func heldRequests(t *testing.T, m *Mux, s *Stream, n int) {
	t.Helper()
	ctx := context.Background()
	if err := s.Send(ctx, message(1, 100)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r, err := m.Open(ctx, Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.SendAndClose(ctx, message(uint64(i), 100)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAutocorkPacksStreams: requests of many streams sent while the
// Mux's previous frame waits in the Link's queue go, once it is written,
// in one frame body.
func TestAutocorkPacksStreams(t *testing.T) {
	const n = 5
	l, m, s := corkedStream(t, time.Hour)
	heldRequests(t, m, s, n)
	if b := l.takeDecoded(); len(b) != 1 {
		t.Fatalf("%d frame bodies before the write, want 1 (the first message)", len(b))
	}
	l.writeSettled()
	bodies := l.takeDecoded()
	if len(bodies) != 1 || len(bodies[0]) != n {
		t.Fatalf("after the write: %d frame bodies, want 1 with the %d requests", len(bodies), n)
	}
	for _, f := range bodies[0] {
		if f.Type != frameData || f.Flags&flagFin == 0 || len(f.Data) != 101 {
			t.Fatalf("packed frame %+v, want a DATA frame with FIN and one message", f.Type)
		}
	}
	if c := m.Stats().Corked; c != n {
		t.Fatalf("Stats.Corked %d, want %d", c, n)
	}
}

// TestAutocorkPackRefused: a packed body the Link refuses with
// back-pressure changes nothing; the frames go once, later, and none
// counts as retransmitted.
func TestAutocorkPackRefused(t *testing.T) {
	const n = 5
	l, m, s := corkedStream(t, time.Hour)
	heldRequests(t, m, s, n)
	l.takeDecoded()
	l.refuseNext(1)
	l.writeSettled()
	got := map[uint32]int{}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("after a refused pack: %d of %d requests sent", len(got), n)
		}
		time.Sleep(time.Millisecond)
		for _, b := range l.takeDecoded() {
			for _, f := range b {
				if f.Type == frameData {
					got[f.Stream]++
				}
			}
		}
	}
	for id, k := range got {
		if k != 1 {
			t.Fatalf("stream %d: %d DATA frames, want 1", id, k)
		}
	}
	if st := m.Stats(); st.LinkBackpressure == 0 {
		t.Fatalf("stats %+v: the refusal was not counted", st)
	}
}

// sendTwo sends two small messages on s: on a corked stream's idle link
// the first goes at once, and the second's fragment is held behind it.
func sendTwo(t *testing.T, s *Stream) {
	t.Helper()
	for i := range 2 {
		if err := s.Send(context.Background(), message(uint64(i), 100)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAutocorkFallback: a Link that never reports its queue written
// delays a held fragment by MaxAckDelay, not forever.
func TestAutocorkFallback(t *testing.T) {
	l, m, s := corkedStream(t, time.Millisecond)
	w := s.key ^ 1
	sendTwo(t, s)
	got := len(l.dataFrames(w))
	deadline := time.Now().Add(10 * time.Second)
	for got < 2 {
		if time.Now().After(deadline) {
			t.Fatal("a held fragment never went on a link that never drained")
		}
		time.Sleep(time.Millisecond)
		got += len(l.dataFrames(w))
	}
	if n := m.Stats().Corked; n != 1 {
		t.Fatalf("Stats.Corked %d, want 1: the second message's fragment waits for the timer", n)
	}
}

// TestUncorkNeverWaits: a Link's writer calling Uncork while another
// goroutine holds the Mux does not wait for it; the held fragment goes
// once the Mux is free, without the MaxAckDelay fallback.
func TestUncorkNeverWaits(t *testing.T) {
	l, m, s := corkedStream(t, time.Hour)
	w := s.key ^ 1
	sendTwo(t, s)
	if fs := l.dataFrames(w); len(fs) != 1 {
		t.Fatalf("%d DATA frames before the write, want 1", len(fs))
	}
	m.mu.Lock()
	wrote := make(chan struct{})
	go func() {
		l.write()
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		m.mu.Unlock()
		t.Fatal("Uncork waited for the Mux's lock")
	}
	m.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for len(l.dataFrames(w)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the held fragment never went after an Uncork that found the Mux busy")
		}
		time.Sleep(time.Millisecond)
	}
}
