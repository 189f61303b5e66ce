package mesh_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/stream"
)

// manySizes are the message sizes of TestThousandConcurrentStreams: from
// 1 byte through the fragment boundaries (1131 is the base frame budget,
// 1536 a chunk) to 64 KiB.
var manySizes = [...]int{1, 3, 8, 64, 255, 256, 1000, 1131, 1132, 1500, 1536, 4000, 9000, 16 << 10, 40000, 64 << 10}

// manyCount is how many messages stream i carries: 2 to 5.
func manyCount(i int) int { return 2 + i%4 }

// manyMessage is message j of stream i: exactly its size, starting with
// (up to) 8 bytes of its sequence number i*16+j, little-endian, like
// message's, then pseudo-random bytes seeded by the sequence number. So
// no two messages of a stream are equal, and the first one, at least 8
// bytes, names its stream. (ChaCha8 fills the test's 32 MB much faster
// than message's byte-at-a-time loop under the race detector.)
func manyMessage(i, j int) []byte {
	n := manySizes[(i*7+j*11)%len(manySizes)]
	if j == 0 {
		n = max(n, 8)
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(i*16+j))
	b := make([]byte, n)
	rand.NewChaCha8(seed).Read(b)
	copy(b, seed[:min(n, 8)])
	return b
}

// Issue 3: node a opens 1,000 reliable streams to b, all open at once;
// every message arrives once, in order, byte-exact, every stream ends with
// io.EOF both ways, and afterwards neither peer holds a stream.
//
// a starts all 1,000 at full speed: the socket reader hands b hundreds of
// new streams in one burst, faster than an accept loop runs, and the
// listener's backlog (Streams.AcceptBacklog, 4096 by default) must hold
// them rather than refuse them. Every stream is open at once: b closes
// none until it accepted all, and the test checks that both peers then
// hold all 1,000.
func TestThousandConcurrentStreams(t *testing.T) {
	const n = 1000
	start := time.Now()
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	var pa *mesh.Peer
	eventually(t, 5*time.Second, "b to know a", func() bool {
		pa = b.Peer(a.ID())
		return pa != nil && pa.IsUp()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var (
		wg           sync.WaitGroup
		errs         = make(chan error, 2*n+1) // at most one per goroutine
		accepted     atomic.Int64              // streams b accepted
		received     atomic.Int64              // streams b read to io.EOF
		closedA      atomic.Int64              // a's Close returned nil
		closedB      atomic.Int64              // b's Close returned nil
		eofA         atomic.Int64              // a read io.EOF
		retransmits  atomic.Uint64
		backpressure atomic.Uint64
		duplicates   atomic.Uint64
		seen         [n]atomic.Bool
		allAccepted  = make(chan struct{})
		release      = make(chan struct{}) // b closes its side after this
		progress     = func() string {
			return fmt.Sprintf("accepted %d, received %d, closed by a %d, closed by b %d, EOF at a %d of %d; drops at b %v, at a %v; handshakes a->b %d, b->a %d",
				accepted.Load(), received.Load(), closedA.Load(), closedB.Load(), eofA.Load(), n, b.Stats().Drops, a.Stats().Drops, pb.Stats().Handshakes, pa.Stats().Handshakes)
		}
	)
	// run runs f in a goroutine counted by wg and reports its error.
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f()
			var re *stream.ResetError
			if errors.As(err, &re) && re.Code == stream.CodeRefused {
				err = fmt.Errorf("%w (refused: b's accept backlog or stream limit was full)", err)
			}
			if err != nil {
				errs <- err
			}
		}()
	}

	// a opens every stream before sending anything on any of them.
	out := make([]*mesh.Stream, n)
	for i := range out {
		s, err := a.OpenStream(ctx, pb, mesh.StreamConfig{})
		if err != nil {
			t.Fatalf("open stream %d of %d: %v", i, n, err)
		}
		out[i] = s
	}
	if got := len(pb.StreamStats()); got != n {
		t.Fatalf("a holds %d streams after opening %d", got, n)
	}

	// b: one goroutine accepts, one per stream checks its messages.
	verify := func(rs *mesh.Stream) error {
		first, err := rs.Recv(ctx)
		if err != nil {
			return fmt.Errorf("b's stream %d: first message: %w", rs.ID(), err)
		}
		if len(first) < 8 {
			return fmt.Errorf("b's stream %d: first message is %d bytes, want at least 8", rs.ID(), len(first))
		}
		seq := binary.LittleEndian.Uint64(first)
		i := int(seq / 16)
		if seq%16 != 0 || i >= n {
			return fmt.Errorf("b's stream %d: first message has sequence %d, the start of no stream", rs.ID(), seq)
		}
		if seen[i].Swap(true) {
			return fmt.Errorf("b's stream %d: stream %d accepted twice", rs.ID(), i)
		}
		for j := range manyCount(i) {
			got := first
			if j > 0 {
				if got, err = rs.Recv(ctx); err != nil {
					return fmt.Errorf("stream %d: message %d of %d: %w", i, j, manyCount(i), err)
				}
			}
			if want := manyMessage(i, j); !bytes.Equal(got, want) {
				return fmt.Errorf("stream %d: message %d is %d bytes, want %d, content differs", i, j, len(got), len(want))
			}
		}
		if msg, err := rs.Recv(ctx); !errors.Is(err, io.EOF) {
			return fmt.Errorf("stream %d: after its %d messages: %d bytes, %v; want io.EOF", i, manyCount(i), len(msg), err)
		}
		received.Add(1)
		duplicates.Add(rs.Stats().Duplicates)
		select {
		case <-release:
		case <-ctx.Done():
			return fmt.Errorf("stream %d: waiting for every stream to be accepted: %w", i, ctx.Err())
		}
		if err := rs.CloseContext(ctx); err != nil {
			return fmt.Errorf("stream %d: close at b: %w", i, err)
		}
		closedB.Add(1)
		return nil
	}
	run(func() error {
		defer close(allAccepted)
		for k := range n {
			rs, from, err := b.AcceptStream(ctx)
			if err != nil {
				return fmt.Errorf("accept %d of %d: %w", k+1, n, err)
			}
			accepted.Add(1)
			if from.ID() != a.ID() {
				rs.Reset(1)
				return fmt.Errorf("accepted a stream from %s, want %s", from.ID(), a.ID())
			}
			run(func() error {
				err := verify(rs)
				if err != nil {
					rs.Reset(1)
				}
				return err
			})
		}
		return nil
	})

	// a: one goroutine per stream sends its messages, closes, and waits
	// for b's end of the stream.
	for i, s := range out {
		run(func() error {
			for j := range manyCount(i) {
				if err := s.SendBlocking(ctx, manyMessage(i, j)); err != nil {
					return fmt.Errorf("stream %d: send %d: %w", i, j, err)
				}
			}
			if err := s.CloseContext(ctx); err != nil {
				return fmt.Errorf("stream %d: close at a: %w (stats %+v)", i, err, s.Stats())
			}
			closedA.Add(1)
			st := s.Stats()
			retransmits.Add(st.Retransmits)
			backpressure.Add(st.BackpressureEvents)
			if msg, err := s.Recv(ctx); !errors.Is(err, io.EOF) {
				return fmt.Errorf("stream %d: a read %d bytes, %v; want io.EOF", i, len(msg), err)
			}
			eofA.Add(1)
			return nil
		})
	}

	// fail stops every goroutine (they all wait on ctx) and fails the
	// test, adding an error a goroutine reported, if one is pending.
	fail := func(format string, args ...any) {
		t.Helper()
		cancel()
		msg := fmt.Sprintf(format, args...)
		select {
		case err := <-errs:
			msg += "\n(and a goroutine reported: " + err.Error() + ")"
		default:
		}
		t.Fatalf("%s\nprogress: %s", msg, progress())
	}

	// Every stream accepted: b holds all n and, as b has not closed any,
	// so does a.
	select {
	case <-allAccepted:
	case err := <-errs:
		fail("%v", err)
	case <-ctx.Done():
		fail("timed out waiting for b to accept %d streams", n)
	}
	if got := len(pa.StreamStats()); got != n {
		fail("b holds %d streams with every one accepted, want %d", got, n)
	}
	if got := len(pb.StreamStats()); got != n {
		fail("a holds %d streams before b closed any, want %d", got, n)
	}
	acceptedAt := time.Since(start)
	close(release)

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case err := <-errs:
		fail("%v", err)
	case <-ctx.Done():
		fail("timed out waiting for the streams to finish")
	}
	select {
	case err := <-errs:
		fail("%v", err)
	default:
	}
	for i := range seen {
		if !seen[i].Load() {
			fail("stream %d never arrived", i)
		}
	}

	// Finished streams are forgotten at once; allow a moment anyway.
	deadline := time.Now().Add(5 * time.Second)
	for len(pb.StreamStats()) != 0 || len(pa.StreamStats()) != 0 {
		if time.Now().After(deadline) {
			fail("streams still held 5 s after all finished: %d by a, %d by b", len(pb.StreamStats()), len(pa.StreamStats()))
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Nothing was refused or dropped on the way.
	for name, m := range map[string]*mesh.Mesh{"a": a, "b": b} {
		drops := m.Stats().Drops
		for _, reason := range []string{"stream_backlog", "queue_full", "no_handler"} {
			if drops[reason] != 0 {
				t.Errorf("%s dropped %d packets or streams as %s (all drops: %v)", name, drops[reason], reason, drops)
			}
		}
		if len(drops) != 0 {
			t.Logf("drops at %s: %v", name, drops)
		}
	}
	t.Logf("%d streams, all accepted after %v, done after %v; a's fragments retransmitted: %d (duplicates at b: %d), Send back-pressure: %d; handshakes a->b %d, b->a %d",
		n, acceptedAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), retransmits.Load(), duplicates.Load(), backpressure.Load(), pb.Stats().Handshakes, pa.Stats().Handshakes)
	for name, m := range map[string]*mesh.Mesh{"a": a, "b": b} {
		if err := m.Close(); err != nil {
			t.Errorf("close %s: %v", name, err)
		}
	}
}
