package stream

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
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

// pump passes frames between two Muxes joined by captureLinks until done
// reports true (checked whenever no frame is on its way; delayed ACKs
// come from the timer goroutines), and fails the test after 10 s.
func pump(t *testing.T, a *Mux, al *captureLink, b *Mux, bl *captureLink, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ab, ba := al.takeBodies(), bl.takeBodies()
		for _, f := range ab {
			b.HandleFrame(f)
		}
		for _, f := range ba {
			a.HandleFrame(f)
		}
		if len(ab)+len(ba) > 0 {
			continue
		}
		if done() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("pump: the condition never came true")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// takeBodies returns the frame bodies l recorded and forgets them.
func (l *captureLink) takeBodies() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.frames
	l.frames = nil
	return b
}

// TestReservedMessageKeepsOutOfOrderFragments guards the promise that a
// message whose reservation fits always completes. Reservations alone
// can fill the budget exactly (64 messages of 1 MiB in a 64 MiB budget),
// and at the budget out-of-order fragments used to be dropped for every
// stream, the reserved ones included: after each loss the sender had to
// wait for a retransmission timeout per fragment, which with many
// streams piled up into persistent congestion, and the messages that
// could free the budget crawled. A reserved message's fragments within
// its window are now kept and selectively acknowledged.
func TestReservedMessageKeepsOutOfOrderFragments(t *testing.T) {
	ctx := context.Background()
	cfg := MuxConfig{MinRTO: 10 * time.Second} // no timer fires during the test
	sl := &captureLink{}
	snd := NewMux(sl, cfg)
	defer snd.Close()
	s, _ := snd.Open(ctx, Config{})
	msg := message(3, 64<<10)
	if err := s.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	data := sl.takeBodies()
	if len(data) < 10 {
		t.Fatalf("%d fragments sent, want the initial window", len(data))
	}

	cfg.RecvBudget = len(msg) // the message's reservation fills the budget
	rl := &captureLink{}
	rcv := NewMux(rl, cfg)
	defer rcv.Close()
	for i, f := range data[:10] {
		if i != 1 { // fragment 1 is lost
			rcv.HandleFrame(f)
		}
	}
	if st := rcv.Stats(); st.RecvHeld < st.RecvBudget || st.BudgetDrops != 0 {
		t.Fatalf("held %d of %d, %d fragments dropped for the budget; want the budget full and none dropped",
			st.RecvHeld, st.RecvBudget, st.BudgetDrops)
	}
	_, acks := rl.take(frameAck, s.key)
	if len(acks) == 0 {
		t.Fatal("no ACK for the out-of-order fragments")
	}
	last := acks[len(acks)-1]
	if last.Seq != 1 || last.NRanges != 1 || last.Ranges[0] != (ackRange{1, 9}) {
		t.Fatalf("last ACK: cum %d ranges %v, want cum 1 and fragments 2 to 9", last.Seq, last.Ranges[:last.NRanges])
	}

	rcv.HandleFrame(data[1])
	for _, f := range data[10:] {
		rcv.HandleFrame(f)
	}
	r, err := rcv.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pump(t, snd, sl, rcv, rl, func() bool { return r.Stats().RxMessages == 1 })
	got, err := r.Recv(ctx)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Recv: %d bytes, %v", len(got), err)
	}
}

// TestWindowUpdateRetriedAfterBackpressure guards a stalled sender's
// wake-up: the ACK that reopens a closed window is the only thing the
// sender waits for, and one the Link refused because its socket queue
// was full used to be dropped, leaving the sender to its zero-window
// probe, whose back-off grows to a minute. It is now resent after
// LinkRetry.
func TestWindowUpdateRetriedAfterBackpressure(t *testing.T) {
	ctx := context.Background()
	cfg := MuxConfig{MinRTO: 10 * time.Second} // only LinkRetry fires
	cfg.Accept.RecvWindow = initialWindowFragments * chunkSize
	sl := &captureLink{}
	snd := NewMux(sl, cfg)
	defer snd.Close()
	s, _ := snd.Open(ctx, Config{})
	for i := range 4 {
		if err := s.Send(ctx, message(uint64(i), 16<<10)); err != nil {
			t.Fatal(err)
		}
	}
	rl := &captureLink{}
	rcv := NewMux(rl, cfg)
	defer rcv.Close()
	var limit uint64
	pump(t, snd, sl, rcv, rl, func() bool { // the unread messages close the window
		snd.mu.Lock()
		defer snd.mu.Unlock()
		limit = s.peerLimit
		return s.sent >= s.peerLimit && s.sent < s.nxt && s.inflight == 0
	})
	r, err := rcv.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}

	rl.refuseNext(1) // the socket queue is full when the window opens
	if _, err := r.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, acks := rl.take(frameAck, s.key)
		if len(acks) > 0 && acks[len(acks)-1].Seq+uint64(acks[len(acks)-1].Window) > limit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the refused window update was never sent again")
		}
		time.Sleep(time.Millisecond)
	}
	if st := rcv.Stats(); st.LinkBackpressure != 1 {
		t.Fatalf("LinkBackpressure %d, want 1", st.LinkBackpressure)
	}
}

// TestSendBudgetBoundsSendBuffers guards the sender's memory against a
// peer that never acknowledges: each stream's send window used to be the
// only bound, 4 MiB times as many streams as the application opens (or
// answers, for streams the peer opens). The Mux's send budget now bounds
// them together; a Send it refuses is woken when the budget frees, and a
// message alone in an empty Mux always goes through.
func TestSendBudgetBoundsSendBuffers(t *testing.T) {
	ctx := context.Background()
	const budget = 256 << 10
	l := &captureLink{} // a peer that never acknowledges
	m := NewMux(l, MuxConfig{SendBudget: budget, MinRTO: 10 * time.Second})
	defer m.Close()
	big := make([]byte, 512<<10)
	first, _ := m.Open(ctx, Config{})
	if err := first.Send(ctx, big); err != nil {
		t.Fatalf("a message larger than the budget, alone in the Mux: %v", err)
	}
	if err := first.Send(ctx, []byte("x")); !errors.Is(err, ErrBackpressure) {
		t.Fatalf("Send beyond the budget: %v, want ErrBackpressure", err)
	}
	for first.Stats().BytesInFlight != 0 { // the peer takes it all

		m.mu.Lock()
		sent := first.sent
		m.mu.Unlock()
		m.HandleFrame(ackBody(first.key, sent, 1<<20))
	}

	var streams []*Stream
	accepted := 0
	for range 8 {
		s, _ := m.Open(ctx, Config{})
		streams = append(streams, s)
		for range 16 { // 1 MiB per stream, 8 MiB in all
			if s.Send(ctx, make([]byte, 64<<10)) == nil {
				accepted++
			}
		}
	}
	st := m.Stats()
	if st.SendHeld > budget || st.SendHeld < budget/2 {
		t.Fatalf("the streams hold %d bytes to send; budget %d", st.SendHeld, budget)
	}
	if st.SendBudgetFull == 0 {
		t.Fatal("no Send refused for the budget")
	}
	t.Logf("%d messages of 64 KiB accepted, %d bytes held", accepted, st.SendHeld)

	blocked := make(chan error, 1)
	go func() { blocked <- streams[7].SendBlocking(ctx, make([]byte, 64<<10)) }()
	for m.Stats().SendBudgetFull == st.SendBudgetFull { // until it waits
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-blocked:
		t.Fatalf("SendBlocking returned %v with the budget full", err)
	default:
	}
	s := streams[0]
	m.mu.Lock()
	sent := s.sent
	m.mu.Unlock()
	m.HandleFrame(ackBody(s.key, sent, 0)) // the peer acknowledges some data
	if err := <-blocked; err != nil {
		t.Fatalf("SendBlocking after the budget freed: %v", err)
	}
}

// allocatedRecvLocked is what m's streams really hold for received data:
// every buffer, by its capacity, except the message of an admitted
// reservation, which the reservation counts by its length.
func (m *Mux) allocatedRecvLocked() int {
	n := 0
	for _, s := range m.streams {
		for i := range s.ooo.len() {
			if c := *s.ooo.at(i); c != nil {
				n += cap(c.b)
			}
		}
		for i := range s.held.len() {
			n += cap((*s.held.at(i)).b)
		}
		for i := range s.ready.len() {
			n += cap((*s.ready.at(i)).b)
		}
		if s.cur != nil {
			if s.resOK {
				n += len(s.cur.b)
			} else {
				n += cap(s.cur.b)
			}
		}
		for i := range s.partials {
			n += s.partials[i].bytes
		}
	}
	return n
}

// TestWaitingReservationsHoldOnlyCountedMemory guards the receive budget
// against messages that wait for it: a stream whose reservation did not
// fit used to go on assembling the message from the fragments its window
// still took (32 jumbo fragments of the initial window, or a window
// granted before), in a buffer the budget did not count: 512 KiB per
// stream, 2 GiB for MaxStreams streams. The fragments now wait, counted,
// until the reservation is admitted.
func TestWaitingReservationsHoldOnlyCountedMemory(t *testing.T) {
	const budget, streams = 1 << 20, 32
	m := NewMux(discardLink{}, MuxConfig{RecvBudget: budget, MinRTO: 10 * time.Second})
	defer m.Close()
	fragment := func(key uint32, seq uint64, pre int) []byte {
		data := make([]byte, jumboChunkSize)
		binary.PutUvarint(data, uint64(pre))
		return appendFrame(nil, &frame{Type: frameData, Stream: key, Seq: seq, Data: data})
	}
	m.HandleFrame(fragment(3, 0, budget)) // admitted: the budget is full
	for i := range streams {
		key := uint32(5 + 2*i)
		for seq := range uint64(initialWindowFragments) {
			m.HandleFrame(fragment(key, seq, DefaultMaxMessageSize))
		}
	}
	m.mu.Lock()
	alloc, held := m.allocatedRecvLocked(), m.held
	m.mu.Unlock()
	if alloc > held {
		t.Fatalf("the streams hold %d bytes, the budget counts %d", alloc, held)
	}
	// RecvBudget, plus the initial windows, which the protocol grants
	// before any ACK.
	if limit := budget + (streams+1)*initialWindowFragments*jumboChunkSize; held > limit {
		t.Fatalf("held %d bytes, limit %d", held, limit)
	}
	t.Logf("%d streams waiting for budget hold %d bytes, all counted", streams, alloc)
}

// TestAdvertisedWindowsStayWithinBudget guards the receive budget against
// windows granted one stream at a time: each stream's window was capped
// by its share of the budget among the streams open when it was granted,
// and never shrinks, so a peer that opened streams one by one, each
// getting a window while the budget was empty, was promised the sum of
// the shares, RecvBudget times a harmonic number (three times the budget
// here, beyond the initial windows; about 7 times with the defaults), and
// could then fill it all.
// The windows the Mux advertises beyond the initial ones now never add
// up, with what it holds, to more than the budget.
func TestAdvertisedWindowsStayWithinBudget(t *testing.T) {
	const budget, streams = 4 << 20, 256
	cfg := MuxConfig{RecvBudget: budget, MinRTO: 10 * time.Second}
	cfg.Accept.RecvWindow = 1 << 20
	m := NewMux(discardLink{}, cfg)
	defer m.Close()
	ctx := context.Background()
	for i := range streams {
		key := uint32(3 + 2*i)
		m.HandleFrame(appendFrame(nil, &frame{Type: frameData, Stream: key, Data: []byte{1, 'x'}}))
		r, err := m.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Recv(ctx); err != nil { // read: the budget is empty again
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	promised := 0
	for _, s := range m.streams {
		if base := max(s.rcvNext, initialWindowFragments); s.rcvLimit > base {
			promised += int(s.rcvLimit-base) * s.rxChunk
		}
	}
	m.mu.Unlock()
	if promised > budget {
		t.Fatalf("%d streams were promised %d bytes of window beyond the initial ones; budget %d", streams, promised, budget)
	}
}
