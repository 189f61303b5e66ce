package meshtest_test

import (
	"encoding/binary"
	"errors"
	"math"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/mesh/udp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// pair returns a FaultConn and a plain receiver on a fresh MemNet.
func pair(t *testing.T, opts meshtest.Options) (*meshtest.FaultConn, *meshtest.MemConn, *meshtest.MemNet) {
	t.Helper()
	n := &meshtest.MemNet{QueueLen: 1 << 16}
	a, err := n.Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Relisten == nil {
		opts.Relisten = n.Relisten
	}
	fc := meshtest.NewFaultConn(a, opts)
	t.Cleanup(func() {
		fc.Close()
		b.Close()
	})
	return fc, b, n
}

// send writes count numbered datagrams from fc to dst, batch at a time.
func send(t *testing.T, fc udp.Conn, dst netip.AddrPort, count, batch int) {
	t.Helper()
	msgs := make([]udp.Message, 0, batch)
	for i := range count {
		buf := make([]byte, 8)
		binary.BigEndian.PutUint64(buf, uint64(i))
		msgs = append(msgs, udp.Message{Buf: buf, Addr: dst})
		if len(msgs) == batch || i == count-1 {
			if n, err := fc.WriteBatch(msgs); err != nil || n != len(msgs) {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			msgs = msgs[:0]
		}
	}
}

// drain reads want datagrams from c and returns their sequence numbers. It
// fails the test if they do not arrive within 10 s.
func drain(t *testing.T, c udp.Conn, want int) []uint64 {
	t.Helper()
	watchdog := time.AfterFunc(10*time.Second, func() { c.Close() })
	defer watchdog.Stop()
	var seqs []uint64
	msgs := make([]udp.Message, 256)
	for len(seqs) < want {
		n, err := c.ReadBatch(msgs[:min(len(msgs), want-len(seqs))])
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(seqs), want, err)
		}
		for _, m := range msgs[:n] {
			seqs = append(seqs, binary.BigEndian.Uint64(m.Buf))
		}
	}
	return seqs
}

func TestSameSeedSameDrops(t *testing.T) {
	run := func(seed uint64) []uint64 {
		fc, b, _ := pair(t, meshtest.Options{Seed: seed})
		fc.SetFaults(meshtest.Faults{Loss: 0.3})
		send(t, fc, b.LocalAddr(), 2000, 50)
		return drain(t, b, int(fc.Stats().Sent))
	}
	first, again, other := run(1), run(1), run(2)
	if !slices.Equal(first, again) {
		t.Fatal("same seed gave different drop patterns")
	}
	if slices.Equal(first, other) {
		t.Fatal("different seeds gave the same drop pattern")
	}
}

func TestLossRate(t *testing.T) {
	const count, loss = 20000, 0.25
	fc, b, _ := pair(t, meshtest.Options{Seed: 42})
	// Start clean, then turn loss on at run time.
	send(t, fc, b.LocalAddr(), 100, 100)
	fc.SetFaults(meshtest.Faults{Loss: loss})
	send(t, fc, b.LocalAddr(), count, 64)
	st := fc.Stats()
	got := drain(t, b, int(st.Sent))
	if st.Sent+st.Dropped != count+100 {
		t.Fatalf("stats %+v, received %d", st, len(got))
	}
	if got[99] != 99 || !slices.IsSorted(got[:100]) || !slices.IsSorted(got[100:]) {
		t.Fatal("loss alone reordered datagrams or hit the clean phase")
	}
	// Binomial: sigma = sqrt(n p (1-p)) ≈ 61; allow 10 sigma.
	rate := float64(st.Dropped) / count
	if math.Abs(rate-loss) > 0.03 {
		t.Fatalf("loss rate %.4f, want %.2f", rate, loss)
	}
}

func TestBlock(t *testing.T) {
	fc, b, n := pair(t, meshtest.Options{})
	c, err := n.Listen(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fc.Block(b.LocalAddr())
	send(t, fc, b.LocalAddr(), 5, 5) // dropped: blocked destination
	send(t, b, fc.LocalAddr(), 1, 1) // dropped: blocked source
	send(t, c, fc.LocalAddr(), 1, 1) // from an unblocked peer
	msgs := make([]udp.Message, 4)
	if n, err := fc.ReadBatch(msgs); err != nil || n != 1 || msgs[0].Addr != c.LocalAddr() {
		t.Fatalf("ReadBatch = %d, %v; want only the datagram from the unblocked peer", n, err)
	}
	fc.Unblock(b.LocalAddr())
	send(t, fc, b.LocalAddr(), 3, 3)
	if got := drain(t, b, 3); !slices.Equal(got, []uint64{0, 1, 2}) {
		t.Fatalf("after Unblock got %v", got)
	}
	if st := fc.Stats(); st.Blocked != 6 {
		t.Fatalf("Blocked = %d, want 6", st.Blocked)
	}

	// Port 0 blocks the whole IP.
	fc.Block(netip.AddrPortFrom(b.LocalAddr().Addr(), 0))
	send(t, fc, b.LocalAddr(), 1, 1)
	if st := fc.Stats(); st.Blocked != 7 {
		t.Fatalf("Blocked = %d, want 7", st.Blocked)
	}
}

func inversions(seqs []uint64) int {
	n := 0
	for i := 1; i < len(seqs); i++ {
		if seqs[i] < seqs[i-1] {
			n++
		}
	}
	return n
}

func TestDelay(t *testing.T) {
	t.Run("fixed keeps order", func(t *testing.T) {
		fc, b, _ := pair(t, meshtest.Options{Seed: 3})
		fc.SetFaults(meshtest.Faults{Delay: 20 * time.Millisecond})
		start := time.Now()
		send(t, fc, b.LocalAddr(), 200, 10)
		msgs := make([]udp.Message, 1)
		if _, err := b.ReadBatch(msgs); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 20*time.Millisecond {
			t.Fatalf("first datagram after %v, want at least 20ms", d)
		}
		got := append([]uint64{binary.BigEndian.Uint64(msgs[0].Buf)}, drain(t, b, 199)...)
		if len(got) != 200 || inversions(got) != 0 {
			t.Fatalf("got %d datagrams with %d inversions, want 200 in order", len(got), inversions(got))
		}
		if st := fc.Stats(); st.Delayed != 200 {
			t.Fatalf("Delayed = %d", st.Delayed)
		}
	})
	t.Run("jitter reorders", func(t *testing.T) {
		fc, b, _ := pair(t, meshtest.Options{Seed: 4})
		fc.SetFaults(meshtest.Faults{Delay: 5 * time.Millisecond, Jitter: 10 * time.Millisecond})
		for range 20 {
			send(t, fc, b.LocalAddr(), 10, 10)
			time.Sleep(time.Millisecond)
		}
		got := drain(t, b, 200)
		if len(got) != 200 || inversions(got) == 0 {
			t.Fatalf("got %d datagrams with %d inversions, want 200 reordered", len(got), inversions(got))
		}
	})
	t.Run("reorder holds back", func(t *testing.T) {
		fc, b, _ := pair(t, meshtest.Options{Seed: 5})
		fc.SetFaults(meshtest.Faults{Reorder: 0.2, ReorderDelay: 20 * time.Millisecond})
		send(t, fc, b.LocalAddr(), 100, 100)
		got := drain(t, b, 100)
		st := fc.Stats()
		if len(got) != 100 || st.Reordered == 0 || inversions(got) == 0 {
			t.Fatalf("got %d datagrams, %d inversions, stats %+v", len(got), inversions(got), st)
		}
	})
	t.Run("queue bound", func(t *testing.T) {
		fc, b, _ := pair(t, meshtest.Options{MaxQueue: 10})
		fc.SetFaults(meshtest.Faults{Delay: time.Hour})
		send(t, fc, b.LocalAddr(), 25, 25)
		if st := fc.Stats(); st.Delayed != 10 || st.Overflow != 15 {
			t.Fatalf("stats %+v, want 10 delayed and 15 overflowed", st)
		}
	})
}

func TestDuplicateAndCorrupt(t *testing.T) {
	fc, b, _ := pair(t, meshtest.Options{Seed: 6})
	fc.SetFaults(meshtest.Faults{Duplicate: 1, Corrupt: 1})
	orig := []byte("0123456789abcdef")
	msg := []udp.Message{{Buf: orig, Addr: b.LocalAddr()}}
	if _, err := fc.WriteBatch(msg); err != nil {
		t.Fatal(err)
	}
	if string(orig) != "0123456789abcdef" {
		t.Fatal("corruption modified the caller's buffer")
	}
	msgs := make([]udp.Message, 4)
	var got [][]byte
	for len(got) < 2 {
		n, err := b.ReadBatch(msgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs[:n] {
			got = append(got, m.Buf)
		}
	}
	for _, g := range got {
		diff := 0
		for i := range g {
			if g[i] != orig[i] {
				diff++
			}
		}
		if len(g) != len(orig) || diff != 1 {
			t.Fatalf("got %q, want %q with exactly one byte changed", g, orig)
		}
	}
	if st := fc.Stats(); st.Duplicated != 1 || st.Corrupted != 1 || st.Sent != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOnSend(t *testing.T) {
	fc, b, _ := pair(t, meshtest.Options{})
	fc.SetFaults(meshtest.Faults{Loss: 1})
	var captured []uint64
	fc.SetOnSend(func(m udp.Message) {
		if m.Addr != b.LocalAddr() {
			t.Errorf("captured destination %v", m.Addr)
		}
		captured = append(captured, binary.BigEndian.Uint64(m.Buf))
	})
	send(t, fc, b.LocalAddr(), 3, 3)
	fc.SetOnSend(nil)
	send(t, fc, b.LocalAddr(), 3, 3)
	if !slices.Equal(captured, []uint64{0, 1, 2}) {
		t.Fatalf("captured %v", captured)
	}
}

// TestRebind runs over real sockets: after Rebind the peer sees a new
// source port, and a ReadBatch pending across the Rebind keeps working.
func TestRebind(t *testing.T) {
	fc := meshtest.Listen(t, meshtest.Options{})
	peer, err := udp.Listen("udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	readc := make(chan udp.Message, 1)
	go func() {
		msgs := make([]udp.Message, 1)
		if n, err := fc.ReadBatch(msgs); err == nil && n == 1 {
			readc <- udp.Message{Buf: append([]byte(nil), msgs[0].Buf...), Addr: msgs[0].Addr}
		}
		close(readc)
	}()

	source := func() netip.AddrPort {
		t.Helper()
		if _, err := fc.WriteBatch([]udp.Message{{Buf: []byte("hi"), Addr: peer.LocalAddr()}}); err != nil {
			t.Fatal(err)
		}
		msgs := make([]udp.Message, 1)
		if _, err := peer.ReadBatch(msgs); err != nil {
			t.Fatal(err)
		}
		return msgs[0].Addr
	}
	before := source()
	if before != fc.LocalAddr() {
		t.Fatalf("peer saw %v, LocalAddr %v", before, fc.LocalAddr())
	}
	time.Sleep(20 * time.Millisecond) // let the reader block on the old socket
	if err := fc.Rebind(); err != nil {
		t.Fatal(err)
	}
	after := source()
	if after.Port() == before.Port() || after.Addr() != before.Addr() || after != fc.LocalAddr() {
		t.Fatalf("after Rebind peer saw %v (before %v, LocalAddr %v)", after, before, fc.LocalAddr())
	}
	if _, err := peer.WriteBatch([]udp.Message{{Buf: []byte("back"), Addr: after}}); err != nil {
		t.Fatal(err)
	}
	select {
	case m, ok := <-readc:
		if !ok || string(m.Buf) != "back" || m.Addr != peer.LocalAddr() {
			t.Fatalf("pending ReadBatch got %q from %v (ok %v)", m.Buf, m.Addr, ok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending ReadBatch did not survive Rebind")
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	fc, _, _ := pair(t, meshtest.Options{})
	errc := make(chan error, 1)
	go func() {
		_, err := fc.ReadBatch(make([]udp.Message, 1))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	if err := fc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadBatch after Close: %v", err)
	}
	if _, err := fc.WriteBatch([]udp.Message{{Buf: []byte("x")}}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteBatch after Close: %v", err)
	}
}

func TestNoFaultsZeroAllocs(t *testing.T) {
	fc := meshtest.Listen(t, meshtest.Options{})
	peer := meshtest.Listen(t, meshtest.Options{})
	out := []udp.Message{{Buf: make([]byte, 1200), Addr: peer.LocalAddr()}}
	in := make([]udp.Message, 8)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := fc.WriteBatch(out); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.ReadBatch(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write+read without faults", allocs)
	}
}
