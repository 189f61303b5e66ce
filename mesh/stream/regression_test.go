package stream

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// captureLink is a Link that records every frame body a Mux sends, for
// tests that pass frames between Muxes by hand.
type captureLink struct {
	mu     sync.Mutex
	frames [][]byte
	refuse int // refuse this many frames with back-pressure, recording none
}

func (l *captureLink) SendFrame(head, data []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refuse > 0 {
		l.refuse--
		return ErrBackpressure
	}
	l.frames = append(l.frames, append(append([]byte(nil), head...), data...))
	return nil
}

// refuseNext makes l refuse its next n frames with back-pressure.
func (l *captureLink) refuseNext(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refuse = n
}

func (l *captureLink) MaxFrameSize() int { return testMTU }

// take returns the frames of type typ for wire stream id wire sent since
// the last take, each re-encoded as a body of its own, and forgets all
// frames sent so far.
func (l *captureLink) take(typ frameType, wire uint32) ([][]byte, []frame) {
	var bodies [][]byte
	var frames []frame
	for _, f := range l.takeAll() {
		if f.Type == typ && f.Stream == wire {
			bodies = append(bodies, appendFrame(nil, &f))
			frames = append(frames, f)
		}
	}
	return bodies, frames
}

// takeAll returns every frame l recorded since the last take, decoded,
// and forgets them.
func (l *captureLink) takeAll() []frame {
	var frames []frame
	for _, b := range l.takeDecoded() {
		frames = append(frames, b...)
	}
	return frames
}

// takeDecoded returns the frame bodies l recorded since the last take,
// each decoded, and forgets them.
func (l *captureLink) takeDecoded() [][]frame {
	var bodies [][]frame
	for _, b := range l.takeBodies() {
		var fs []frame
		for len(b) > 0 {
			var f frame
			n, err := decodeFrame(b, &f)
			if err != nil {
				break
			}
			b = b[n:]
			fs = append(fs, f)
		}
		bodies = append(bodies, fs)
	}
	return bodies
}

// ackBody is an ACK frame for the sender's stream key.
func ackBody(key uint32, cum uint64, window uint32) []byte {
	return appendFrame(nil, &frame{Type: frameAck, Stream: key, Seq: cum, Window: window})
}

// TestAckAtBudgetNeverCoversMissingFragment guards the receive path's
// consistency when freeing memory reopens windows: a stream with a hole,
// frozen at the budget, drains its out-of-order fragments when the
// missing one arrives. The memory that frees used to send the stream its
// window update at once, from inside the drain, with rcvNext not yet
// advanced past the popped fragment: its selective ranges came out one
// fragment low and acknowledged the missing fragment, which the sender
// then freed for good. Window updates now go out once the operation is
// complete.
func TestAckAtBudgetNeverCoversMissingFragment(t *testing.T) {
	ctx := context.Background()
	cfg := MuxConfig{MinRTO: 10 * time.Second} // no timer fires during the test
	sl := &captureLink{}
	snd := NewMux(sl, cfg)
	defer snd.Close()
	snd.Open(ctx, Config{}) // key 2, never used: the peer's stream 3 is crafted below
	s, _ := snd.Open(ctx, Config{})
	msg := message(1, 4000)
	if err := s.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	data, _ := sl.take(frameData, s.key^1)
	if len(data) != 4 {
		t.Fatalf("the message took %d fragments, want 4", len(data))
	}

	rl := &captureLink{}
	// The budget holds the two out-of-order chunks and four unread 16 KiB
	// message buffers of another stream exactly.
	cfg.RecvBudget = 2*chunkSize + 4*16384
	rcv := NewMux(rl, cfg)
	defer rcv.Close()
	rcv.HandleFrame(data[1]) // fragment 2 is lost
	rcv.HandleFrame(data[3])
	for i := range 4 { // stream 3: unread messages fill the budget
		big := append([]byte{0xa8, 0x46}, make([]byte, 9000)...) // uvarint 9000
		rcv.HandleFrame(appendFrame(nil, &frame{Type: frameData, Stream: 3, Seq: uint64(i), Data: big}))
	}
	rcv.HandleFrame(data[3]) // a retransmission: its ACK finds the budget full, the window freezes
	rcv.HandleFrame(data[0]) // the drain frees memory and reopens the window

	acks, frames := rl.take(frameAck, s.key)
	for _, f := range frames {
		for _, r := range f.Ranges[:f.NRanges] {
			if f.Seq+uint64(r.Start) <= 2 && 2 < f.Seq+uint64(r.End) {
				t.Errorf("ACK cum %d ranges %v acknowledges fragment 2, never received", f.Seq, f.Ranges[:f.NRanges])
			}
		}
	}
	for _, b := range acks {
		snd.HandleFrame(b)
	}
	snd.mu.Lock()
	kept := s.una <= 2 && s.frag(2).state != fragAcked
	snd.mu.Unlock()
	if !kept {
		t.Fatal("the sender freed fragment 2: it would never be resent")
	}

	rcv.HandleFrame(data[2])
	var r *Stream
	for range 2 {
		a, err := rcv.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a.ID() == s.key^1 {
			r = a
			continue
		}
		for range 4 { // the message waits for the budget these hold
			if _, err := a.Recv(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := r.Recv(ctxT(t, 5*time.Second))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Recv: %d bytes, %v", len(got), err)
	}
}

// TestTinyMessagesBoundedByWindowAndBudget guards against memory
// amplification by tiny messages: a zero-length message is one byte on
// the wire but a whole pooled message buffer at the receiver, so the
// fragments of the initial window alone used to become tens of MiB of
// unread messages, whatever RecvWindow and RecvBudget said. Parsing now
// stops while the stream's unread messages fill its window or the Mux
// its budget, and the rest waits in the fragments' chunks; every message
// still arrives once read.
func TestTinyMessagesBoundedByWindowAndBudget(t *testing.T) {
	const frags = 8 // of the 32 the initial window accepts
	for _, c := range []struct {
		name        string
		window, bgt int
	}{
		{"budget", 4 << 20, 1 << 20},
		{"window", 64 << 10, 64 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := MuxConfig{RecvBudget: c.bgt}
			cfg.Accept.RecvWindow = c.window
			m := NewMux(discardLink{}, cfg)
			defer m.Close()
			zeros := make([]byte, jumboChunkSize) // 9216 zero-length messages each
			for i := range frags {
				m.HandleFrame(appendFrame(nil, &frame{Type: frameData, Stream: 3, Seq: uint64(i), Data: zeros}))
			}
			held := m.Stats().RecvHeld
			if limit := min(c.window, c.bgt) + smallChunkSize + frags*jumboChunkSize; held > limit {
				t.Fatalf("%d bytes of zero-length messages hold %d bytes, limit %d", frags*jumboChunkSize, held, limit)
			}
			r, err := m.Accept(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // take only what is ready
			n := 0
			for buf := []byte(nil); ; n++ {
				if buf, err = r.ReadMessage(ctx, buf); err != nil {
					break
				}
			}
			if n != frags*jumboChunkSize {
				t.Fatalf("read %d messages, want %d", n, frags*jumboChunkSize)
			}
			if held := m.Stats().RecvHeld; held != 0 {
				t.Fatalf("%d bytes held after every message was read", held)
			}
		})
	}
}

// TestUnreliableFragCountCharged guards against a peer sizing the
// receiver's reassembly tables: the fragment count of an unreliable
// message is the peer's claim, and a 21-byte frame claiming 65,535
// fragments used to make a 512 KiB table, uncharged and kept for the
// stream's life. A count that cannot fit the receive window is dropped,
// a table is charged to the window and the budget, and a large one is
// freed with its message.
func TestUnreliableFragCountCharged(t *testing.T) {
	m := NewMux(discardLink{}, MuxConfig{})
	defer m.Close()
	frag := func(key uint32, id uint64, count uint16) []byte {
		return appendFrame(nil, &frame{Type: frameData, Flags: flagUnreliable, Stream: key, Seq: id, FragCount: count, Data: []byte{1}})
	}
	fits := uint16(DefaultRecvWindow / (smallChunkSize + ptrSize)) // the largest count that can complete
	for i := range 8 {
		key := uint32(3 + 2*i)
		for id := uint64(1); id <= maxUnreliablePartials; id++ {
			m.HandleFrame(frag(key, id, 65535))
			m.HandleFrame(frag(key, 10+id, fits))
		}
	}
	check := func(when string, maxTable int) {
		t.Helper()
		m.mu.Lock()
		defer m.mu.Unlock()
		held := 0
		for _, s := range m.streams {
			held += s.rxHeldLocked()
			for _, p := range s.partials {
				if c := cap(p.frags); c > maxTable || c > partialFragsKept && c*ptrSize > p.bytes {
					t.Fatalf("%s: a table for %d fragments, %d bytes charged", when, c, p.bytes)
				}
			}
		}
		if held != m.held {
			t.Fatalf("%s: the Mux counts %d bytes held, its streams hold %d", when, m.held, held)
		}
	}
	check("reassembling", int(fits))
	for i := range 8 { // a newer whole message drops the partial ones
		m.HandleFrame(appendFrame(nil, &frame{Type: frameData, Flags: flagUnreliable, Stream: uint32(3 + 2*i), Seq: 100, FragCount: 1}))
	}
	check("dropped", partialFragsKept)
}

// TestZeroWindowProbeNotCongestion guards the sender against mistaking
// a slow reader for congestion: a zero-window probe the receiver drops
// because its window is still closed used to time out as a lost
// fragment, halving the congestion window, and its second timeout
// counted as persistent congestion (window collapsed to 2 frames, path
// MTU back to the base for PathProbeInterval), though nothing was lost.
// The timeouts are driven by hand, so nothing depends on timing.
func TestZeroWindowProbeNotCongestion(t *testing.T) {
	ctx := context.Background()
	l := &captureLink{}
	m := NewMux(l, MuxConfig{MinRTO: 10 * time.Second}) // the timer goroutine stays out of it
	defer m.Close()
	s, _ := m.Open(ctx, Config{})
	if err := s.Send(ctx, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	// The receiver acknowledges everything but never opens its window
	// beyond the initial one.
	for {
		m.mu.Lock()
		sent, closed := s.sent, s.sent >= s.peerLimit && s.inflight == 0
		m.mu.Unlock()
		if closed {
			break
		}
		m.HandleFrame(ackBody(s.key, sent, 0))
	}
	before := m.Stats()
	l.take(frameData, s.key^1)
	for round := range 5 {
		m.mu.Lock()
		now := m.now()
		s.onRTOLocked(now) // the persist timer, then the probe's timeout
		m.flushLocked(now)
		sent := s.sent
		m.mu.Unlock()
		if _, probes := l.take(frameData, s.key^1); len(probes) != 1 || probes[0].Seq != sent-1 {
			t.Fatalf("round %d: %d probes sent, want 1 of fragment %d", round, len(probes), sent-1)
		}
		m.HandleFrame(ackBody(s.key, sent-1, 0)) // dropped: the window is still closed
	}
	after := m.Stats()
	if after.LossEvents != before.LossEvents || after.PersistentCongestion != 0 || after.CongestionWindow != before.CongestionWindow {
		t.Fatalf("window probes taken for congestion: loss events %d -> %d, persistent congestion %d, cwnd %d -> %d",
			before.LossEvents, after.LossEvents, after.PersistentCongestion, before.CongestionWindow, after.CongestionWindow)
	}
	m.mu.Lock()
	limit := s.peerLimit
	m.mu.Unlock()
	m.HandleFrame(ackBody(s.key, limit+1, 16)) // the reader caught up, the probe arrived
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.una != limit+1 || s.sent <= limit+1 {
		t.Fatalf("after the window opened: una %d sent %d, want %d and more", s.una, s.sent, limit+1)
	}
}

// TestUnreliableCloseUnusedStream guards Close of an unreliable stream
// that never sent anything: the peer has no stream to echo its end, so
// Close used to wait out CloseTimeout and fail.
func TestUnreliableCloseUnusedStream(t *testing.T) {
	p := newPair(t, faults{}, 9, testMuxConfig())
	s, err := p.a.Open(context.Background(), Config{Reliability: Unreliable, CloseTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close of an unused unreliable stream: %v", err)
	}
}

// TestUnreliableCloseGivesUp guards Close when the peer never echoes the
// end of an unreliable stream (the path died): once the RESET's retries
// give up, Close returns instead of waiting out CloseTimeout.
func TestUnreliableCloseGivesUp(t *testing.T) {
	cfg := testMuxConfig()
	cfg.MaxRTO = 20 * time.Millisecond // 8 retries in about 200 ms
	p := newPair(t, faults{}, 10, cfg)
	ctx := ctxT(t, 10*time.Second)
	s, err := p.a.Open(ctx, Config{Reliability: Unreliable, CloseTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p.ab.blackout.Store(true)
	if err := s.Send(ctx, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after the retries gave up: %v", err)
	}
}

// TestAnsweredProbesLeaveCongestionWindow guards streams with an open
// window against streams waiting for theirs. A zero-window probe used to
// count in the congestion window shared by all streams of the Mux until
// its own (backed-off) timeout, though the receiver had answered that it
// dropped it: with many streams waiting for receive budget, their probes
// filled the window and the streams that could complete, and free the
// budget, could hardly send; after a collapse to the minimum window one
// jumbo probe held the whole Mux for seconds. A probe now leaves the
// window when the receiver's ACK shows its window still closed.
func TestAnsweredProbesLeaveCongestionWindow(t *testing.T) {
	ctx := context.Background()
	l := &captureLink{}
	m := NewMux(l, MuxConfig{MinRTO: 10 * time.Second}) // the timer goroutine stays out of it
	defer m.Close()
	const waiting = 20
	for range waiting {
		s, _ := m.Open(ctx, Config{})
		if err := s.Send(ctx, make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		for { // the receiver takes the initial window and opens it no further
			m.mu.Lock()
			sent, closed := s.sent, s.sent >= s.peerLimit && s.inflight == 0
			m.mu.Unlock()
			if closed {
				break
			}
			m.HandleFrame(ackBody(s.key, sent, 0))
		}
		m.mu.Lock()
		now := m.now()
		s.onRTOLocked(now) // the persist timer sends a probe
		m.flushLocked(now)
		sent, probing := s.sent, s.inflight == 1 && s.sent > s.peerLimit
		m.mu.Unlock()
		if !probing {
			t.Fatal("no zero-window probe in flight")
		}
		m.HandleFrame(ackBody(s.key, sent-1, 0)) // dropped: the window is still closed
	}
	l.takeAll()
	m.mu.Lock()
	m.cc.cwnd = m.cc.minWindow() // as after persistent congestion
	m.mu.Unlock()
	if st := m.Stats(); st.BytesInFlight != 0 {
		t.Fatalf("%d answered probes count %d bytes in flight", waiting, st.BytesInFlight)
	}
	s, _ := m.Open(ctx, Config{})
	if err := s.Send(ctx, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if _, data := l.take(frameData, s.key^1); len(data) != minWindowPackets {
		t.Fatalf("a stream with an open window sent %d fragments beside the probes, want %d (the minimum window)", len(data), minWindowPackets)
	}
}
