package stream

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"
)

// slowResetConfig is testMuxConfig with a 2 s RTO floor: a RESET nobody
// echoes is resent for minutes before its retries give up, so a Close
// that returns within a test's deadline was answered by the peer.
func slowResetConfig() MuxConfig {
	cfg := testMuxConfig()
	cfg.MinRTO, cfg.InitialRTT = 2*time.Second, time.Second
	return cfg
}

// dropStreamData makes l drop every DATA frame of the stream with wire id
// wire, and counts the RESET frames it is offered for it.
func dropStreamData(l *memLink, wire uint32) *atomic.Int64 {
	var resets atomic.Int64
	f := func(b []byte) bool {
		if len(b) < 6 || binary.LittleEndian.Uint32(b[2:]) != wire {
			return false
		}
		switch frameType(b[0]) {
		case frameData:
			return true
		case frameReset:
			resets.Add(1)
		}
		return false
	}
	l.drop.Store(&f)
	return &resets
}

// countResets makes l count the RESET frames it is offered for wire id
// wire, dropping nothing.
func countResets(l *memLink, wire uint32) *atomic.Int64 {
	var resets atomic.Int64
	f := func(b []byte) bool {
		if len(b) >= 6 && frameType(b[0]) == frameReset && binary.LittleEndian.Uint32(b[2:]) == wire {
			resets.Add(1)
		}
		return false
	}
	l.drop.Store(&f)
	return &resets
}

// closeWithin runs s.Close (whose CloseTimeout is long) and fails the test
// unless it returns nil before ctx ends: the peer must have answered.
func closeWithin(t *testing.T, ctx context.Context, s *Stream) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- s.Close() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Close still waits: the peer never echoed the end of a stream it never saw")
	}
}

// TestUnreliableCloseAllMessagesLost reproduces Close of an unreliable
// stream all of whose messages were lost: the peer never saw the stream
// id, so it did not echo the GRACEFUL RESET, and Close waited until the
// RESET's retries gave up (about 51 s with the default RTO) or its
// CloseTimeout ran out. The peer now echoes a RESET for an id of its
// peer's it never saw, as for a stream that opened and ended at once.
func TestUnreliableCloseAllMessagesLost(t *testing.T) {
	p := newPair(t, faults{}, 51, slowResetConfig())
	ctx := ctxT(t, 30*time.Second) // the RESET's retries take minutes
	s, err := p.a.Open(ctx, Config{Reliability: Unreliable, CloseTimeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	sent := dropStreamData(p.ab, s.ID()^1)
	echoes := countResets(p.ba, s.ID())
	for i := range 3 {
		if err := s.Send(ctx, message(uint64(i), 3000)); err != nil { // 3 fragments each
			t.Fatal(err)
		}
	}
	closeWithin(t, ctx, s)
	if n := echoes.Load(); n != 1 {
		t.Fatalf("b sent %d RESETs for the stream, want 1 echo", n)
	}
	if n := sent.Load(); n < 1 {
		t.Fatalf("a sent %d RESETs", n)
	}
	st := p.b.Stats()
	if st.Accepted != 0 || len(st.Streams) != 0 {
		t.Fatalf("b accepted %d streams and holds %d; the stream only ended", st.Accepted, len(st.Streams))
	}
	if n := len(p.a.Stats().Streams); n != 0 {
		t.Fatalf("a still holds %d streams", n)
	}
	// The id is used up: the next stream opens normally.
	p.ab.drop.Store(nil)
	transfer(t, p, [][]byte{[]byte("next")}, 10*time.Second)
}

// A reliable stream reset after all its data was lost is unknown to the
// peer too: the peer echoes the RESET and the resetting side forgets the
// stream after one round trip instead of eight retries.
func TestReliableResetAllDataLost(t *testing.T) {
	p := newPair(t, faults{}, 52, slowResetConfig())
	ctx := ctxT(t, 30*time.Second)
	s, err := p.a.Open(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	dropStreamData(p.ab, s.ID()^1)
	echoes := countResets(p.ba, s.ID())
	if err := s.Send(ctx, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	s.Reset(77)
	for len(p.a.Stats().Streams) != 0 {
		if ctx.Err() != nil {
			t.Fatal("a still holds the reset stream: the peer never echoed its RESET")
		}
		time.Sleep(time.Millisecond)
	}
	if n := echoes.Load(); n != 1 {
		t.Fatalf("b sent %d RESETs for the stream, want 1 echo", n)
	}
	if st := p.b.Stats(); st.Accepted != 0 || len(st.Streams) != 0 {
		t.Fatalf("b accepted %d streams and holds %d", st.Accepted, len(st.Streams))
	}
}

// resetBody is a RESET frame body as the peer sends it for wire id wire.
func resetBody(wire uint32, flags uint8, code uint32) []byte {
	return appendFrame(nil, &frame{Type: frameReset, Flags: flags, Stream: wire, Code: code})
}

// wantEcho checks that l recorded exactly one frame since the last take:
// the echo of a RESET for key with flags and code.
func wantEcho(t *testing.T, l *captureLink, what string, key uint32, flags uint8, code uint32) {
	t.Helper()
	got := l.takeAll()
	if len(got) != 1 || got[0].Type != frameReset || got[0].Stream != key^1 || got[0].Flags != flags || got[0].Code != code {
		t.Fatalf("%s: sent %+v, want one echo of the RESET for key %d", what, got, key)
	}
}

// wantSilence checks that l recorded nothing since the last take.
func wantSilence(t *testing.T, l *captureLink, what string) {
	t.Helper()
	if got := l.takeAll(); len(got) != 0 {
		t.Fatalf("%s: sent %+v, want nothing", what, got)
	}
}

// TestUnknownResetRules drives one Mux with RESETs for stream ids it does
// not hold. One for a peer id never seen is echoed and uses the id up, as
// a stream that opened and ended at once; its retransmission is echoed by
// the tombstone; a late DATA frame of it gets no answer and opens
// nothing. RESETs for our own unknown ids and for peer ids seen before
// are ignored, so two Muxes never echo each other's echoes. Ids far
// ahead cost only bounded bookkeeping.
func TestUnknownResetRules(t *testing.T) {
	l := &captureLink{}
	cfg := MuxConfig{MinRTO: 10 * time.Second, MaxStreams: 1}
	m := NewMux(l, cfg)
	defer m.Close()
	state := func() (highest uint32, skipped, streams, peerOpen int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.highestPeer, len(m.skipped), len(m.streams), m.peerOpen
	}

	m.HandleFrame(resetBody(3, flagGraceful, 0))
	wantEcho(t, l, "RESET for a new peer id", 3, flagGraceful, 0)
	if h, sk, n, _ := state(); h != 3 || sk != 0 || n != 0 {
		t.Fatalf("highest %d, %d skipped, %d streams; want 3, 0, 0", h, sk, n)
	}
	m.HandleFrame(resetBody(3, flagGraceful, 0))
	wantEcho(t, l, "resent RESET (echo lost)", 3, flagGraceful, 0)
	m.HandleFrame(appendFrame(nil, &frame{Type: frameData, Flags: flagUnreliable, Stream: 3, Seq: 1, FragCount: 1, Data: []byte("late")}))
	wantSilence(t, l, "late DATA of a stream whose RESET came first")

	for _, wire := range []uint32{2, 4, 6} { // our own ids, never opened
		m.HandleFrame(resetBody(wire, 0, 9))
	}
	wantSilence(t, l, "RESETs for our own unknown ids")

	// A stream of the peer's takes the one MaxStreams slot; a RESET for
	// a new id needs none.
	m.HandleFrame(appendFrame(nil, &frame{Type: frameData, Stream: 5, Data: []byte{1, 'x'}}))
	l.takeAll()
	m.HandleFrame(resetBody(11, 0, 7)) // skips 7 and 9
	wantEcho(t, l, "RESET for a new id at MaxStreams", 11, 0, 7)
	if h, sk, n, open := state(); h != 11 || sk != 2 || n != 1 || open != 1 {
		t.Fatalf("highest %d, %d skipped, %d streams, %d peer streams open; want 11, 2, 1, 1", h, sk, n, open)
	}
	m.HandleFrame(resetBody(9, 0, 8)) // skipped: never seen
	wantEcho(t, l, "RESET for a skipped id", 9, 0, 8)
	m.HandleFrame(resetBody(9, 0, 8))
	wantEcho(t, l, "resent RESET for a skipped id", 9, 0, 8)
	// The peer's echo of our refusal (or of our RESET) names an id we saw:
	// ignored.
	m.HandleFrame(appendFrame(nil, &frame{Type: frameData, Stream: 13, Data: []byte{1, 'x'}}))
	refusal := l.takeAll()
	if len(refusal) != 1 || refusal[0].Type != frameReset || refusal[0].Code != CodeRefused {
		t.Fatalf("stream 13 beyond MaxStreams: sent %+v, want a refusal", refusal)
	}
	m.HandleFrame(resetBody(13, 0, CodeRefused))
	wantSilence(t, l, "the echo of our refusal")
	m.HandleFrame(resetBody(5, 0, 8)) // the live stream: the peer resets it
	wantEcho(t, l, "RESET for a live stream", 5, 0, 8)
	m.HandleFrame(resetBody(1, 0, 8)) // below every peer id
	wantSilence(t, l, "RESET for peer id 1")
	if st := m.Stats(); st.Refused != 1 || st.Accepted != 1 {
		t.Fatalf("accepted %d, refused %d; want 1, 1 (stream 13)", st.Accepted, st.Refused)
	}

	// Far ahead: beyond maxStreamIDJump is malformed and ignored; within
	// it, the skipped set stays bounded however often the peer jumps.
	h0, sk0, _, _ := state()
	m.HandleFrame(resetBody(h0+2*(maxStreamIDJump+1), 0, 1))
	wantSilence(t, l, "RESET beyond maxStreamIDJump")
	if h, sk, _, _ := state(); h != h0 || sk != sk0 || m.Stats().Malformed != 1 {
		t.Fatalf("a RESET too far ahead moved highest %d -> %d, skipped %d -> %d", h0, h, sk0, sk)
	}
	for range 64 {
		h, _, _, _ := state()
		m.HandleFrame(resetBody(h+2*maxStreamIDJump, 0, 1))
		wantEcho(t, l, "RESET at maxStreamIDJump", h+2*maxStreamIDJump, 0, 1)
		m.HandleFrame(resetBody(h+2*maxStreamIDJump+2*(skippedIDLimit/2), 0, 1))
		l.takeAll()
	}
	if _, sk, n, _ := state(); sk > skippedIDLimit || n != 0 {
		t.Fatalf("%d ids skipped (limit %d), %d streams held", sk, skippedIDLimit, n)
	}
	m.mu.Lock()
	tombWords := len(m.tombs.ack) + len(m.tombs.echo)
	m.mu.Unlock()
	if tombWords != 2*2*tombWindow/64 {
		t.Fatalf("tombstones take %d words, want %d", tombWords, 2*2*tombWindow/64)
	}
}

// A skipped id older than the tombstone window is echoed once, but gets
// no tombstone: its bits belong to a newer id, which must not start
// echoing RESETs it never echoed.
func TestUnknownResetOutsideTombWindow(t *testing.T) {
	l := &captureLink{}
	m := NewMux(l, MuxConfig{MinRTO: 10 * time.Second})
	defer m.Close()
	m.HandleFrame(resetBody(7, 0, 1)) // skips 3 and 5
	for h := uint32(7); h < 5+2*tombWindow+2*maxStreamIDJump; h += 2 * maxStreamIDJump {
		m.HandleFrame(resetBody(h+2*maxStreamIDJump, 0, 1))
	}
	l.takeAll()
	alias := uint32(5 + 2*tombWindow) // shares 5's bits; skipped beyond the limit, never seen
	m.mu.Lock()
	_, skipped := m.skipped[5]
	inWindow := m.inTombWindowLocked(alias) && !m.inTombWindowLocked(5)
	m.mu.Unlock()
	if !skipped || !inWindow {
		t.Fatalf("setup: 5 skipped %v, only its alias in the window %v", skipped, inWindow)
	}
	m.HandleFrame(resetBody(5, 0, 2))
	wantEcho(t, l, "RESET for a skipped id older than the window", 5, 0, 2)
	m.HandleFrame(resetBody(5, 0, 2))
	wantSilence(t, l, "its retransmission (no tombstone)")
	m.HandleFrame(resetBody(alias, 0, 3))
	wantSilence(t, l, "RESET for the alias, seen as skipped beyond the limit")
	m.mu.Lock()
	kind := m.tombLocked(alias)
	m.mu.Unlock()
	if kind != tombNone {
		t.Fatalf("the alias of an old id has tombstone %d", kind)
	}
}

// When the end of an unreliable stream overtakes its messages, the peer
// echoes the end and drops the late messages without refusing them: the
// sender's Close returns nil even if the late frames' answers arrive
// first. Frames then pass between the two Muxes until neither sends
// anything: no RESET is ever answered by a RESET of the other side's.
func TestUnreliableResetOvertakesData(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	cfg := MuxConfig{MinRTO: 10 * time.Second} // no retry during the test
	la, lb := &captureLink{}, &captureLink{}
	a, b := NewMux(la, cfg), NewMux(lb, cfg)
	defer a.Close()
	defer b.Close()
	s, _ := a.Open(ctx, Config{Reliability: Unreliable, CloseTimeout: 10 * time.Minute})
	if err := s.Send(ctx, []byte("overtaken")); err != nil {
		t.Fatal(err)
	}
	data := la.takeAll()
	errc := make(chan error, 1)
	go func() { errc <- s.Close() }()
	var end []frame
	for len(end) == 0 {
		if ctx.Err() != nil {
			t.Fatal("Close sent no RESET")
		}
		time.Sleep(time.Millisecond)
		end = la.takeAll()
	}
	for _, f := range append(end, data...) { // the RESET first
		b.HandleFrame(appendFrame(nil, &f))
	}
	answers := lb.takeAll()
	if len(answers) != 1 || answers[0].Type != frameReset || answers[0].Flags != flagGraceful {
		t.Fatalf("b answered %+v, want one graceful echo", answers)
	}
	for i := len(answers) - 1; i >= 0; i-- { // in reverse, for good measure
		a.HandleFrame(appendFrame(nil, &answers[i]))
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Close still waits after the echo")
	}
	for round := 0; ; round++ {
		fa, fb := la.takeAll(), lb.takeAll()
		if len(fa)+len(fb) == 0 {
			break
		}
		if round == 4 {
			t.Fatalf("still exchanging frames after %d rounds: a %+v, b %+v", round, fa, fb)
		}
		for _, f := range fa {
			b.HandleFrame(appendFrame(nil, &f))
		}
		for _, f := range fb {
			a.HandleFrame(appendFrame(nil, &f))
		}
	}
	if st := b.Stats(); st.Accepted != 0 || len(st.Streams) != 0 || len(a.Stats().Streams) != 0 {
		t.Fatalf("b accepted %d streams and holds %d; a holds %d", st.Accepted, len(st.Streams), len(a.Stats().Streams))
	}
}
