package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// message returns a deterministic message of n bytes.
func message(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// transfer sends msgs on a new reliable stream from p.a to p.b, closes it,
// and checks that p.b reads every message once, in order, byte-exact.
func transfer(t *testing.T, p *pair, msgs [][]byte, timeout time.Duration) {
	t.Helper()
	transferDir(t, p.a, p.b, msgs, timeout)
}

// transferDir is transfer from one Mux to the other.
func transferDir(t *testing.T, from, to *Mux, msgs [][]byte, timeout time.Duration) {
	t.Helper()
	ctx := ctxT(t, timeout)
	sums := make([][32]byte, len(msgs))
	for i, m := range msgs {
		sums[i] = sha256.Sum256(m)
	}
	errc := make(chan error, 1)
	go func() {
		s, err := from.Open(ctx, Config{})
		if err != nil {
			errc <- err
			return
		}
		for _, m := range msgs {
			if err := s.SendBlocking(ctx, m); err != nil {
				errc <- err
				return
			}
		}
		errc <- s.CloseContext(ctx)
	}()
	s, err := to.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		m, err := s.Recv(ctx)
		if err == io.EOF {
			if i != len(msgs) {
				t.Fatalf("EOF after %d of %d messages", i, len(msgs))
			}
			break
		}
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i >= len(msgs) {
			t.Fatalf("extra message %d (%d bytes)", i, len(m))
		}
		if sha256.Sum256(m) != sums[i] {
			t.Fatalf("message %d: %d bytes, want %d, checksum mismatch", i, len(m), len(msgs[i]))
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("sender: %v", err)
	}
	if err := s.CloseContext(ctx); err != nil {
		t.Fatalf("receiver close: %v", err)
	}
}

func TestReliableClean(t *testing.T) {
	p := newPair(t, faults{}, 1, testMuxConfig())
	var msgs [][]byte
	for i, n := range []int{0, 1, 2, 100, testMTU - 20, testMTU, 5000, 64 << 10, 300 << 10} {
		msgs = append(msgs, message(uint64(i), n))
	}
	transfer(t, p, msgs, 20*time.Second)
}

// TestReliableLossy is the acceptance test: 10 % loss, 5 %
// reordering, 1 % duplication, 1 % corruption (dropped like the AEAD
// would), sizes from 1 byte to 4 MiB.
func TestReliableLossy(t *testing.T) {
	f := faults{loss: 0.10, reorder: 0.05, dup: 0.01, corrupt: 0.01}
	p := newPair(t, f, 42, testMuxConfig())
	var msgs [][]byte
	sizes := []int{1, 7, 64, 500, testMTU - 17, testMTU, 3000, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20}
	for i, n := range sizes {
		msgs = append(msgs, message(uint64(i), n))
		for j := range 20 { // interleave small messages, which share fragments
			msgs = append(msgs, message(uint64(1000*i+j), 1+j*13))
		}
	}
	transfer(t, p, msgs, 50*time.Second)
	st := p.a.Stats()
	if st.LossEvents == 0 {
		t.Errorf("no loss events at 10%% loss: %+v", st)
	}
	if p.ab.dropped.Load() == 0 || p.ab.reordered.Load() == 0 || p.ab.dups.Load() == 0 {
		t.Errorf("faults not applied: dropped %d reordered %d dup %d", p.ab.dropped.Load(), p.ab.reordered.Load(), p.ab.dups.Load())
	}
	t.Logf("cwnd %d ssthresh %d losses %d persistent %d srtt %v", st.CongestionWindow, st.SlowStartThreshold, st.LossEvents, st.PersistentCongestion, st.SmoothedRTT)
}

func TestSendTooLarge(t *testing.T) {
	p := newPair(t, faults{}, 1, testMuxConfig())
	ctx := ctxT(t, 5*time.Second)
	s, _ := p.a.Open(ctx, Config{MaxMessageSize: 1000})
	if err := s.Send(ctx, make([]byte, 1001)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Send 1001 bytes with limit 1000: %v", err)
	}
}

// TestReceiverRejectsTooLarge: a message over the receiver's limit resets
// the stream.
func TestReceiverRejectsTooLarge(t *testing.T) {
	cfg := testMuxConfig()
	cfg.Accept.MaxMessageSize = 1000
	p := newPair(t, faults{}, 1, cfg)
	ctx := ctxT(t, 5*time.Second)
	s, _ := p.a.Open(ctx, Config{})
	if err := s.Send(ctx, make([]byte, 2000)); err != nil {
		t.Fatal(err)
	}
	r, err := p.b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var re *ResetError
	if _, err := r.Recv(ctx); !errors.As(err, &re) || re.Code != CodeTooLarge {
		t.Fatalf("receiver: %v", err)
	}
	if err := s.SendBlocking(ctx, []byte("x")); !errors.As(err, &re) || re.Code != CodeTooLarge || !re.Remote {
		for err == nil {
			time.Sleep(time.Millisecond)
			err = s.Send(ctx, []byte("x"))
		}
		if !errors.As(err, &re) || re.Code != CodeTooLarge || !re.Remote {
			t.Fatalf("sender: %v", err)
		}
	}
}

func TestCloseSemantics(t *testing.T) {
	p := newPair(t, faults{loss: 0.05}, 3, testMuxConfig())
	ctx := ctxT(t, 10*time.Second)
	s, _ := p.a.Open(ctx, Config{})
	for i := range 50 {
		if err := s.SendBlocking(ctx, message(uint64(i), 3000)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.CloseContext(ctx) }()
	r, err := p.b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, err := range r.Messages(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 50 {
		t.Fatalf("read %d messages before EOF, want 50", n)
	}
	if err := <-done; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := s.Stats(); st.BytesInFlight != 0 {
		t.Fatalf("Close returned with %d bytes unacknowledged", st.BytesInFlight)
	}
	if err := s.Send(ctx, []byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if _, err := r.Recv(ctx); err != io.EOF {
		t.Fatalf("Recv after EOF: %v", err)
	}
	// Half-close: the receiver can still send back until it closes.
	if err := r.Send(ctx, []byte("reply")); err != nil {
		t.Fatal(err)
	}
	if err := r.CloseContext(ctx); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(ctx); err != nil || string(m) != "reply" {
		t.Fatalf("reply: %q %v", m, err)
	}
	if _, err := s.Recv(ctx); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
	// Both sides done: the streams leave their Muxes (once the last ACK
	// arrives, on the side that closed first).
	deadline := time.Now().Add(5 * time.Second)
	for len(p.a.Stats().Streams)+len(p.b.Stats().Streams) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("streams not released: %d, %d", len(p.a.Stats().Streams), len(p.b.Stats().Streams))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReset(t *testing.T) {
	for _, rel := range []Reliability{Reliable, Unreliable} {
		t.Run(rel.String(), func(t *testing.T) {
			p := newPair(t, faults{loss: 0.2}, 5, testMuxConfig())
			ctx := ctxT(t, 10*time.Second)
			s, _ := p.a.Open(ctx, Config{Reliability: rel})
			var r *Stream
			for r == nil { // unreliable messages may be lost: resend until accepted
				if err := s.Send(ctx, []byte("hello")); err != nil {
					t.Fatal(err)
				}
				actx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				r, _ = p.b.Accept(actx)
				cancel()
			}
			recvErr := make(chan error, 1)
			go func() {
				for {
					if _, err := r.Recv(ctx); err != nil {
						recvErr <- err
						return
					}
				}
			}()
			s.Reset(77)
			var re *ResetError
			if err := <-recvErr; !errors.As(err, &re) || re.Code != 77 || !re.Remote {
				t.Fatalf("peer Recv after Reset: %v", err)
			}
			if err := r.Send(ctx, []byte("x")); !errors.As(err, &re) || re.Code != 77 {
				t.Fatalf("peer Send after Reset: %v", err)
			}
			if err := s.Send(ctx, []byte("x")); !errors.As(err, &re) || re.Code != 77 || re.Remote {
				t.Fatalf("local Send after Reset: %v", err)
			}
		})
	}
}

// TestBackpressure: a sender that ignores ErrBackpressure cannot grow
// memory; SendBlocking resumes when the reader drains.
func TestBackpressure(t *testing.T) {
	cfg := testMuxConfig()
	cfg.Accept.RecvWindow = 128 << 10
	p := newPair(t, faults{}, 7, cfg)
	ctx := ctxT(t, 20*time.Second)
	const window = 256 << 10
	s, _ := p.a.Open(ctx, Config{SendWindow: window, RecvWindow: window})
	msg := make([]byte, 10000)
	var ok, bp int
	for range 20000 { // 200 MB offered to a reader that does not read
		switch err := s.Send(ctx, msg); {
		case err == nil:
			ok++
		case errors.Is(err, ErrBackpressure):
			bp++
		default:
			t.Fatal(err)
		}
	}
	r, err := p.b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the receive window fill
	for s.Send(ctx, msg) == nil {     // then the send window
		ok++
	}
	bp++
	st := s.Stats()
	if st.BytesInFlight > window+2*chunkSize*10 {
		t.Fatalf("sender holds %d bytes, window %d", st.BytesInFlight, window)
	}
	rs := r.Stats()
	// Memory is charged in power-of-two buffers: at most twice the window.
	if rs.RecvBuffered > 2*cfg.Accept.RecvWindow {
		t.Fatalf("receiver holds %d bytes", rs.RecvBuffered)
	}
	if bp == 0 || st.BackpressureEvents != uint64(bp) {
		t.Fatalf("back-pressure: %d returned, %d counted", bp, st.BackpressureEvents)
	}
	t.Logf("accepted %d messages, refused %d; sender holds %d B, receiver %d B", ok, bp, st.BytesInFlight, rs.RecvBuffered)

	// SendBlocking waits while the window is full and resumes when the
	// reader drains.
	sent := make(chan error, 1)
	last := append([]byte("last"), msg...)
	go func() { sent <- s.SendBlocking(ctx, last) }()
	select {
	case err := <-sent:
		t.Fatalf("SendBlocking returned %v with a full window", err)
	case <-time.After(50 * time.Millisecond):
	}
	for i := 0; i < ok; i++ {
		if _, err := r.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if m, err := r.Recv(ctx); err != nil || !bytes.Equal(m, last) {
		t.Fatalf("last message: %q %v", m, err)
	}
}

func TestManyStreams(t *testing.T) {
	cfg := testMuxConfig()
	cfg.AcceptBacklog = 1000
	p := newPair(t, faults{loss: 0.02, reorder: 0.02}, 11, cfg)
	ctx := ctxT(t, 40*time.Second)
	const n = 1000
	var wg sync.WaitGroup
	errc := make(chan error, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := p.a.Open(ctx, Config{})
			if err != nil {
				errc <- err
				return
			}
			for j := range 3 {
				if err := s.SendBlocking(ctx, message(uint64(i*3+j), 100+i)); err != nil {
					errc <- err
					return
				}
			}
			errc <- s.CloseContext(ctx)
		}()
	}
	for range n {
		r, err := p.b.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := 0
			for m, err := range r.Messages(ctx) {
				if err != nil {
					errc <- err
					return
				}
				if len(m) < 100 {
					errc <- errors.New("short message")
				}
				k++
			}
			if k != 3 {
				errc <- errors.New("wrong message count")
			}
			errc <- r.CloseContext(ctx)
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := p.b.Stats(); st.Accepted != n || st.Refused != 0 {
		t.Fatalf("accepted %d refused %d", st.Accepted, st.Refused)
	}
}

func TestAcceptBacklogRefuses(t *testing.T) {
	cfg := testMuxConfig()
	cfg.AcceptBacklog = 2
	p := newPair(t, faults{}, 13, cfg)
	ctx := ctxT(t, 5*time.Second)
	var ss []*Stream
	for range 5 {
		s, _ := p.a.Open(ctx, Config{})
		if err := s.Send(ctx, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	refused := 0
	for _, s := range ss {
		_, err := s.Recv(ctxT(t, 200*time.Millisecond))
		var re *ResetError
		if errors.As(err, &re) && re.Code == CodeRefused && re.Remote {
			refused++
		}
	}
	if refused != 3 || p.b.Stats().Refused != 3 {
		t.Fatalf("refused %d streams (counted %d), want 3", refused, p.b.Stats().Refused)
	}
}

// TestUnreliable: at loss, messages with a lost fragment are dropped and
// counted, and nothing is delivered twice or out of order.
func TestUnreliable(t *testing.T) {
	f := faults{loss: 0.05, reorder: 0.1, dup: 0.05}
	p := newPair(t, f, 17, testMuxConfig())
	ctx := ctxT(t, 20*time.Second)
	s, _ := p.a.Open(ctx, Config{Reliability: Unreliable})
	const n = 2000
	go func() {
		for i := range n {
			size := 8 + (i%5)*1000 // 1 to 5 fragments
			m := message(uint64(i), size)
			m[0], m[1], m[2], m[3] = byte(i), byte(i>>8), 0, 0
			for s.Send(ctx, m) == ErrBackpressure {
				time.Sleep(100 * time.Microsecond)
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		time.Sleep(300 * time.Millisecond)
		s.Close()
	}()
	r, err := p.b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last, got := -1, 0
	for {
		m, err := r.Recv(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		i := int(m[0]) | int(m[1])<<8
		if i <= last {
			t.Fatalf("message %d after %d: stale or duplicate", i, last)
		}
		want := message(uint64(i), 8+(i%5)*1000)
		if !bytes.Equal(m[4:], want[4:]) {
			t.Fatalf("message %d corrupted", i)
		}
		last = i
		got++
	}
	st := r.Stats()
	if got == n || st.Dropped == 0 {
		t.Fatalf("delivered %d of %d, dropped %d: loss not visible", got, n, st.Dropped)
	}
	if got < n/2 {
		t.Fatalf("delivered only %d of %d", got, n)
	}
	t.Logf("delivered %d of %d; dropped %d, stale %d, dups %d", got, n, st.Dropped, st.Stale, st.Duplicates)
}

// TestCongestionBacksOff: under loss the shared window halves; without
// loss it does not.
func TestCongestionBacksOff(t *testing.T) {
	cfg := testMuxConfig()
	cfg.MinRTO = time.Second // no spurious timeouts on a slow -race run
	clean := newPair(t, faults{}, 19, cfg)
	transfer(t, clean, [][]byte{message(1, 2<<20)}, 10*time.Second)
	if st := clean.a.Stats(); st.LossEvents != 0 {
		t.Fatalf("loss events on a clean link: %d", st.LossEvents)
	}
	lossy := newPair(t, faults{loss: 0.05}, 19, testMuxConfig())
	transfer(t, lossy, [][]byte{message(1, 2<<20)}, 20*time.Second)
	st := lossy.a.Stats()
	if st.LossEvents == 0 || st.SlowStartThreshold > 1<<30 {
		t.Fatalf("no back-off under loss: %+v", st)
	}
	cst := clean.a.Stats()
	if st.CongestionWindow >= cst.CongestionWindow {
		t.Fatalf("lossy cwnd %d not below clean cwnd %d", st.CongestionWindow, cst.CongestionWindow)
	}
}

// TestFairShare: two bulk streams through one rate-limited, tail-dropping
// link share it roughly equally.
func TestFairShare(t *testing.T) {
	f := faults{rate: 20 << 20, tailDrop: true}
	p := newPair(t, f, 23, testMuxConfig())
	ctx := ctxT(t, 10*time.Second)
	var got [2]int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 2 {
		s, _ := p.a.Open(ctx, Config{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := make([]byte, 8<<10)
			for {
				select {
				case <-stop:
					s.Reset(0)
					return
				default:
				}
				sctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				s.SendBlocking(sctx, msg)
				cancel()
			}
		}()
		r, err := p.b.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := r.Recv(ctx)
				if err != nil {
					return
				}
				got[i] += int64(len(m))
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	ratio := float64(got[0]) / float64(max(got[1], 1))
	t.Logf("stream 0: %d B, stream 1: %d B, ratio %.2f, cwnd %d, losses %d", got[0], got[1], ratio, p.a.Stats().CongestionWindow, p.a.Stats().LossEvents)
	if ratio < 0.5 || ratio > 2 {
		t.Fatalf("unfair share: ratio %.2f", ratio)
	}
}

func TestSendWithRetry(t *testing.T) {
	cfg := testMuxConfig()
	cfg.Accept.RecvWindow = 64 << 10
	p := newPair(t, faults{}, 29, cfg)
	ctx := ctxT(t, 10*time.Second)
	s, _ := p.a.Open(ctx, Config{SendWindow: 64 << 10})
	msg := make([]byte, 30<<10)
	n := 0
	for { // fill both windows: the peer does not read yet
		sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err := s.SendBlocking(sctx, msg)
		cancel()
		if err != nil {
			break
		}
		n++
	}
	if err := s.SendWithRetry(ctx, msg, RetryPolicy{MaxAttempts: 3}); !errors.Is(err, ErrBackpressure) {
		t.Fatalf("bounded retry: %v", err)
	}
	r, _ := p.b.Accept(ctx)
	go func() {
		time.Sleep(20 * time.Millisecond)
		for range n + 1 {
			r.Recv(ctx)
		}
	}()
	if err := s.SendWithRetry(ctx, msg, RetryPolicy{}); err != nil {
		t.Fatalf("retry until drained: %v", err)
	}
}

func TestMuxClose(t *testing.T) {
	p := newPair(t, faults{}, 31, testMuxConfig())
	ctx := ctxT(t, 5*time.Second)
	s, _ := p.a.Open(ctx, Config{})
	s.Send(ctx, []byte("x"))
	r, err := p.b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.Recv(ctx)
	p.a.Close()
	var re *ResetError
	if _, err := s.Recv(ctx); !errors.As(err, &re) || re.Code != CodeMuxClosed {
		t.Fatalf("local Recv after Mux.Close: %v", err)
	}
	if _, err := r.Recv(ctx); !errors.As(err, &re) || re.Code != CodeMuxClosed || !re.Remote {
		t.Fatalf("peer Recv after Mux.Close: %v", err)
	}
	if _, err := p.a.Open(ctx, Config{}); !errors.Is(err, ErrMuxClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
	if _, err := p.a.Accept(ctx); !errors.Is(err, ErrMuxClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

// TestAllocs: the steady-state send and receive paths of messages below
// the frame size allocate nothing.
func TestAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("alloc counts are noisy under -short parallel runs")
	}
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	p := newPair(t, faults{}, 37, testMuxConfig())
	ctx := context.Background()
	s, _ := p.a.Open(ctx, Config{})
	msg := make([]byte, 1000)
	buf := make([]byte, 0, 2000)
	s.Send(ctx, msg)
	r, err := p.b.Accept(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	round := func() {
		if err := s.SendBlocking(ctx, msg); err != nil {
			t.Fatal(err)
		}
		var err error
		if buf, err = r.ReadMessage(ctx, buf); err != nil || len(buf) != len(msg) {
			t.Fatal(err)
		}
	}
	for range 2000 {
		round()
	}
	if a := testing.AllocsPerRun(2000, round); a != 0 {
		t.Fatalf("%.2f allocations per message", a)
	}
}

// TestLengthPrefixNoAmplification: a peer announcing a 16 MiB message
// makes the receiver allocate only for bytes that actually arrive.
func TestLengthPrefixNoAmplification(t *testing.T) {
	p := newPair(t, faults{}, 43, testMuxConfig())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 64 { // 64 streams, each a bare 16 MiB length prefix
		body := appendFrame(nil, &frame{Type: frameData, Stream: uint32(3 + 2*i), Data: []byte{0x80, 0x80, 0x80, 0x08}})
		p.b.HandleFrame(body)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("64 length prefixes allocated %d bytes", grew)
	}
	if n := len(p.b.acceptCh); n != 64 {
		t.Fatalf("%d streams opened", n)
	}
}

// TestPathMTUProbe: with a ProbeLink the Mux finds the path MTU above
// the 1131-byte base and cuts fragments to it: 1400 on an Ethernet-like
// path, 8000 on a jumbo one.
func TestPathMTUProbe(t *testing.T) {
	for _, path := range []int{1400, 8000} {
		t.Run(strconv.Itoa(path), func(t *testing.T) {
			p := newProbePair(t, faults{loss: 0.01}, 47, probeMuxConfig(), dataHeaderSize+jumboChunkSize)
			p.ab.pathMTU.Store(int64(path))
			p.ba.pathMTU.Store(int64(path))
			// Probes ride on demand: transfer until the search is done (a
			// few rounds under -race), or for 30 s at most.
			var st MuxStats
			for i, end := 0, time.Now().Add(30*time.Second); i < 30 || time.Now().Before(end); i++ {
				transfer(t, p, [][]byte{message(uint64(i), 1<<20), message(2, 10)}, 20*time.Second)
				if st = p.a.Stats(); st.PathMTU > path-pmtuResolution {
					break
				}
			}
			if st.PathMTU <= path-pmtuResolution || st.PathMTU > path || st.PathMTUProbes == 0 {
				t.Fatalf("path MTU %d after %d probes, want (%d, %d]", st.PathMTU, st.PathMTUProbes, path-pmtuResolution, path)
			}
			t.Logf("path MTU %d after %d probes", st.PathMTU, st.PathMTUProbes)
		})
	}
}

// TestPathMTUBlackHole: the path MTU falls mid-transfer; fragments cut
// larger are sent split, and nothing is lost. From an Ethernet-sized and
// from a jumbo path MTU.
func TestPathMTUBlackHole(t *testing.T) {
	for _, top := range []int{dataHeaderSize + chunkSize, dataHeaderSize + jumboChunkSize} {
		for _, explicit := range []bool{false, true} {
			name := fmt.Sprintf("%d/detected", top)
			if explicit {
				name = fmt.Sprintf("%d/ResetPathMTU", top)
			}
			t.Run(name, func(t *testing.T) {
				p := newProbePair(t, faults{}, 53, probeMuxConfig(), top)
				for end := time.Now().Add(30 * time.Second); p.a.Stats().PathMTU != top && time.Now().Before(end); {
					transfer(t, p, [][]byte{message(1, 1<<20)}, 10*time.Second)
				}
				if mtu := p.a.Stats().PathMTU; mtu != top {
					t.Fatalf("path MTU %d before the drop, want %d", mtu, top)
				}
				go func() {
					time.Sleep(2 * time.Millisecond)
					p.ab.pathMTU.Store(testMTU)
					p.ba.pathMTU.Store(testMTU)
					if explicit {
						p.a.ResetPathMTU()
						p.b.ResetPathMTU()
					}
				}()
				transfer(t, p, [][]byte{message(2, 4<<20), message(3, 5000)}, 20*time.Second)
				st := p.a.Stats()
				if st.PathMTU != testMTU {
					t.Fatalf("path MTU %d after the drop, want %d", st.PathMTU, testMTU)
				}
				if !explicit && st.PathMTUBlackHoles == 0 {
					t.Fatalf("black hole not counted: %+v", st)
				}
				t.Logf("black holes %d, frames dropped by the path %d", st.PathMTUBlackHoles, p.ab.tooBig.Load())
			})
		}
	}
}

// A path that dies mid-transfer loses everything in flight; only the
// retransmission timer can recover, and it must keep running until the
// path returns. (The mesh's TestStreamSurvivesPathSwitches caught the
// timer stopping when, after a loss, the congestion window was smaller
// than what was still counted in flight; this in-memory blackout is the
// general case.)
func TestBlackoutRecovery(t *testing.T) {
	// A rate-limited link keeps a full window in flight, as a real path
	// with queueing delay does.
	p := newPair(t, faults{rate: 8 << 20}, 1, testMuxConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := p.a.Open(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 64, 32 << 10
	done := make(chan error, 1)
	go func() {
		rs, err := p.b.Accept(ctx)
		if err != nil {
			done <- err
			return
		}
		for i := range n {
			msg, err := rs.Recv(ctx)
			if err != nil || len(msg) != size || msg[0] != byte(i) {
				done <- fmt.Errorf("message %d: %d bytes, %v", i, len(msg), err)
				return
			}
		}
		done <- nil
	}()
	for i := range n {
		msg := make([]byte, size)
		msg[0] = byte(i)
		if err := s.SendBlocking(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			p.ab.blackout.Store(true)
			p.ba.blackout.Store(true)
			time.AfterFunc(300*time.Millisecond, func() {
				p.ab.blackout.Store(false)
				p.ba.blackout.Store(false)
			})
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("%v (sender %+v)", err, s.Stats())
	}
}

// TestAllocsPerExchange: a request and its reply on a new stream, each a
// small message that ends its side, allocate the two Streams, the two
// messages Recv hands over, and at most the channels of the two ends
// that waited (a reader for its message, a Close for its FIN's ACK).
func TestAllocsPerExchange(t *testing.T) {
	if testing.Short() {
		t.Skip("alloc counts are noisy under -short parallel runs")
	}
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	p := newPair(t, faults{}, 41, testMuxConfig())
	msg := make([]byte, 100)
	call := func() { exchange(t, p, msg, msg, nil) }
	for range 200 {
		call()
	}
	if a := testing.AllocsPerRun(1000, call); a > 6 {
		t.Fatalf("%.2f allocations per exchange, want at most 6", a)
	}
}

// exchange is a unary call's streams: a new stream from p.a carrying req
// with the opener's end, accepted at p.b and answered with reply and the
// other end. It returns both streams and what each read; opened, if not
// nil, sees the new stream before it sends.
func exchange(tb testing.TB, p *pair, req, reply []byte, opened func(*Stream)) (s, r *Stream, gotReq, gotReply []byte) {
	tb.Helper()
	ctx := context.Background()
	s, err := p.a.Open(ctx, Config{})
	if err != nil {
		tb.Fatal(err)
	}
	if opened != nil {
		opened(s)
	}
	if err := s.SendAndClose(ctx, req); err != nil {
		tb.Fatal(err)
	}
	if r, err = p.b.Accept(ctx); err != nil {
		tb.Fatal(err)
	}
	if gotReq, err = r.Recv(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := r.SendAndClose(ctx, reply); err != nil {
		tb.Fatal(err)
	}
	if gotReply, err = s.Recv(ctx); err != nil {
		tb.Fatal(err)
	}
	return s, r, gotReq, gotReply
}

// Recv hands a small message over in a slice of its own size, not in the
// 256-byte pooled buffer it was reassembled in: that buffer goes back to
// the pool, and what the caller keeps is what it needs.
func TestRecvSmallMessageOwnSize(t *testing.T) {
	p := newPair(t, faults{}, 43, testMuxConfig())
	ctx := context.Background()
	s, err := p.a.Open(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := (*Stream)(nil)
	round := func(i int) []byte {
		if err := s.Send(ctx, []byte{byte(i), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}); err != nil {
			t.Fatal(err)
		}
		if r == nil {
			if r, err = p.b.Accept(ctx); err != nil {
				t.Fatal(err)
			}
		}
		m, err := r.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) != 16 || m[0] != byte(i) || m[15] != 15 {
			t.Fatalf("message %d: %v", i, m)
		}
		return m
	}
	kept := round(0)
	if cap(kept) > 32 {
		t.Errorf("a 16-byte message came in a slice of capacity %d", cap(kept))
	}
	for i := 1; i < 100; i++ {
		round(i)
	}
	if kept[0] != 0 {
		t.Fatal("a message the caller kept changed under it")
	}
}

// TestReleaseReusesEndedStreams: a request and its reply on a new stream,
// both ends waited for and released, allocate only the two messages Recv
// hands over and the two Done channels waited on: the Streams and their
// wake-up channels are reused. A reused Stream starts fresh: no message,
// no end, no error of the one before.
func TestReleaseReusesEndedStreams(t *testing.T) {
	p := newPair(t, faults{}, 47, testMuxConfig())
	ctx := context.Background()
	req, reply := []byte{0, 1}, []byte{0, 2, 3}
	fresh := func(s *Stream) {
		if err := s.Err(); err != nil {
			t.Fatalf("a new stream's Err: %v", err)
		}
		if s.ready.len() != 0 || s.done != nil || s.removed {
			t.Fatal("a new stream has state of an old one")
		}
	}
	call := func(i int) {
		req[0], reply[0] = byte(i), byte(i)
		s, r, gotReq, gotReply := exchange(t, p, req, reply, fresh)
		if len(gotReq) != 2 || gotReq[0] != byte(i) || len(gotReply) != 3 || gotReply[0] != byte(i) {
			t.Fatalf("exchange %d: request %v, reply %v", i, gotReq, gotReply)
		}
		if _, err := s.Recv(ctx); err != io.EOF {
			t.Fatalf("after the reply: %v, want io.EOF", err)
		}
		<-s.Done()
		<-r.Done()
		s.Release()
		r.Release()
	}
	for i := range 200 {
		call(i)
	}
	if testing.Short() || raceEnabled {
		return // alloc counts: noisy under -short parallel runs; sync.Pool drops items under the race detector
	}
	i := 0
	if a := testing.AllocsPerRun(1000, func() { i++; call(i) }); a > 4 {
		t.Fatalf("%.2f allocations per released exchange, want at most 4 (messages and Done channels)", a)
	}
}

// TestReleaseKeepsWhatTheMuxHolds: a stream released before it ended, or
// while one of the Mux's queues still points at it, is not reused; the
// garbage collector takes it once the Mux lets go.
func TestReleaseKeepsWhatTheMuxHolds(t *testing.T) {
	p := newPair(t, faults{}, 53, testMuxConfig())
	ctx := context.Background()
	s, err := p.a.Open(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, []byte("open")); err != nil {
		t.Fatal(err)
	}
	s.Release()
	if s.m == nil {
		t.Fatal("a stream released before it ended was pooled")
	}
	r, err := p.b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := r.Recv(ctx); err != nil || string(m) != "open" {
		t.Fatalf("the released stream's message: %q, %v", m, err)
	}

	m := p.a
	m.mu.Lock()
	q := m.newStreamLocked(2, Config{}.withDefaults(), false)
	q.removed, q.inReady = true, true // forgotten, but still in the ready queue
	m.mu.Unlock()
	q.Release()
	if q.m == nil {
		t.Fatal("a stream in the ready queue was pooled")
	}
}
