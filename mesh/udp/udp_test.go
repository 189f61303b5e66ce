package udp_test

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/netmesh/netmesh/mesh/udp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// modes are the configurations every test runs under. On platforms without
// the offloads they all behave like "plain".
var modes = []struct {
	name string
	cfg  udp.ListenConfig
}{
	{"gso", udp.ListenConfig{}},
	{"mmsg", udp.ListenConfig{DisableGSO: true, DisableGRO: true}},
	{"plain", udp.ListenConfig{DisableGSO: true, DisableGRO: true, DisableMMsg: true}},
}

// families are the loopback addresses tested.
var families = []struct {
	network string
	addr    netip.Addr
}{
	{"udp4", netip.MustParseAddr("127.0.0.1")},
	{"udp6", netip.MustParseAddr("::1")},
}

// listen opens a conn on the loopback address or skips if the family is
// unavailable.
func listen(t testing.TB, cfg udp.ListenConfig, network string, addr netip.Addr) *udp.BatchConn {
	t.Helper()
	c, err := cfg.Listen(network, netip.AddrPortFrom(addr, 0))
	if err != nil {
		if network == "udp6" {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// payload fills b with a recognizable pattern: sender tag, sequence number,
// then bytes derived from both.
func payload(b []byte, tag byte, seq uint32) {
	for i := range b {
		b[i] = tag ^ byte(seq) ^ byte(i)
	}
	if len(b) >= 5 {
		b[0] = tag
		binary.BigEndian.PutUint32(b[1:5], seq)
	}
}

func checkPayload(t testing.TB, b []byte, wantLen int, tag byte, seq uint32) {
	t.Helper()
	want := make([]byte, wantLen)
	payload(want, tag, seq)
	if string(b) != string(want) {
		t.Fatalf("datagram seq %d: got %d bytes %x..., want %d bytes %x...",
			seq, len(b), b[:min(len(b), 8)], wantLen, want[:min(wantLen, 8)])
	}
}

// recvN reads n datagrams from c with a small msgs slice, so GRO buffers are
// split across calls.
func recvN(t testing.TB, c udp.Conn, n int) []udp.Message {
	t.Helper()
	var out []udp.Message
	msgs := make([]udp.Message, 3)
	done := make(chan struct{})
	timer := time.AfterFunc(5*time.Second, func() {
		close(done)
		c.Close()
	})
	defer timer.Stop()
	for len(out) < n {
		k, err := c.ReadBatch(msgs)
		if err != nil {
			select {
			case <-done:
				t.Fatalf("timed out after %d of %d datagrams", len(out), n)
			default:
			}
			t.Fatal(err)
		}
		for _, m := range msgs[:k] {
			out = append(out, udp.Message{Buf: append([]byte(nil), m.Buf...), Addr: m.Addr})
		}
	}
	return out
}

func TestFeaturesString(t *testing.T) {
	for _, tt := range []struct {
		f    udp.Features
		want string
	}{
		{udp.Features{}, "plain"},
		{udp.Features{MMsg: true}, "mmsg"},
		{udp.Features{GSO: true, GRO: true, MMsg: true}, "gso+gro+mmsg"},
	} {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestListenBadNetwork(t *testing.T) {
	if _, err := udp.Listen("tcp", netip.AddrPort{}); !errors.Is(err, udp.ErrNetwork) {
		t.Fatalf("got %v, want ErrNetwork", err)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, fam := range families {
		for _, mode := range modes {
			t.Run(fam.network+"/"+mode.name, func(t *testing.T) {
				a := listen(t, mode.cfg, fam.network, fam.addr)
				b := listen(t, mode.cfg, fam.network, fam.addr)
				c := listen(t, mode.cfg, fam.network, fam.addr)
				t.Logf("mode %s", a.Mode())
				if la := a.LocalAddr(); la.Addr() != fam.addr || la.Port() == 0 {
					t.Fatalf("LocalAddr = %v", la)
				}
				// Runs to coalesce, a shorter tail, a change of
				// destination, an empty datagram and odd sizes.
				type item struct {
					to   *udp.BatchConn
					size int
				}
				var plan []item
				for range 5 {
					plan = append(plan, item{b, 1200})
				}
				plan = append(plan, item{b, 500}, item{c, 1200}, item{c, 1200}, item{c, 1200},
					item{b, 100}, item{b, 100}, item{b, 0}, item{c, 7}, item{b, 1200})
				for range 70 { // more than one GSO send's worth
					plan = append(plan, item{c, 900})
				}
				msgs := make([]udp.Message, len(plan))
				for i, p := range plan {
					buf := make([]byte, p.size)
					payload(buf, 'a', uint32(i))
					msgs[i] = udp.Message{Buf: buf, Addr: p.to.LocalAddr()}
				}
				n, err := a.WriteBatch(msgs)
				if err != nil || n != len(msgs) {
					t.Fatalf("WriteBatch = %d, %v; want %d", n, err, len(msgs))
				}
				for _, dst := range []*udp.BatchConn{b, c} {
					var want []int
					for i, p := range plan {
						if p.to == dst {
							want = append(want, i)
						}
					}
					got := recvN(t, dst, len(want))
					for k, m := range got {
						if m.Addr != a.LocalAddr() {
							t.Fatalf("source %v, want %v", m.Addr, a.LocalAddr())
						}
						checkPayload(t, m.Buf, plan[want[k]].size, 'a', uint32(want[k]))
					}
				}
			})
		}
	}
}

// TestGROCoalesces checks that, where the kernel has GSO and GRO, a run of
// datagrams takes fewer system calls than datagrams.
func TestGROCoalesces(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a := listen(t, udp.ListenConfig{}, "udp4", lo)
	b := listen(t, udp.ListenConfig{}, "udp4", lo)
	if f := a.Features(); !f.GSO || !f.GRO {
		t.Skipf("mode %s: no GSO/GRO", f)
	}
	msgs := make([]udp.Message, 64)
	for i := range msgs {
		buf := make([]byte, 1200)
		payload(buf, 'g', uint32(i))
		msgs[i] = udp.Message{Buf: buf, Addr: b.LocalAddr()}
	}
	if n, err := a.WriteBatch(msgs); n != 64 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := recvN(t, b, 64)
	for i, m := range got {
		checkPayload(t, m.Buf, 1200, 'g', uint32(i))
	}
	if s := a.Stats(); s.WriteCalls != 1 {
		t.Errorf("sender used %d system calls for one GSO run", s.WriteCalls)
	}
	if s := b.Stats(); s.ReadCalls >= 64 {
		t.Errorf("receiver used %d system calls for 64 datagrams", s.ReadCalls)
	}
}

func TestWriteBadAddr(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a := listen(t, udp.ListenConfig{}, "udp4", lo)
	b := listen(t, udp.ListenConfig{}, "udp4", lo)
	msgs := []udp.Message{
		{Buf: []byte("x")},
		{Buf: []byte("y"), Addr: netip.MustParseAddrPort("[2001:db8::1]:1")},
		{Buf: []byte("ok"), Addr: b.LocalAddr()},
	}
	n, err := a.WriteBatch(msgs)
	if n != 1 || !errors.Is(err, udp.ErrBadAddr) {
		t.Fatalf("WriteBatch = %d, %v; want 1, ErrBadAddr", n, err)
	}
	if got := recvN(t, b, 1); string(got[0].Buf) != "ok" {
		t.Fatalf("got %q", got[0].Buf)
	}
}

// TestLargeBatchInOrder sends many 1200-byte datagrams from two senders to
// one receiver that reads concurrently. The senders stay a bounded window
// ahead of the receiver, so loopback does not drop, and every datagram must
// arrive in order per sender.
func TestLargeBatchInOrder(t *testing.T) {
	const (
		perSender = 20000
		batch     = 64
		window    = 512
	)
	lo := netip.MustParseAddr("127.0.0.1")
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			rx := listen(t, mode.cfg, "udp4", lo)
			senders := []*udp.BatchConn{listen(t, mode.cfg, "udp4", lo), listen(t, mode.cfg, "udp4", lo)}
			var received atomic.Int64
			next := map[netip.AddrPort]uint32{}
			errc := make(chan error, 1)
			go func() {
				msgs := make([]udp.Message, 128)
				for received.Load() < 2*perSender {
					n, err := rx.ReadBatch(msgs)
					if err != nil {
						errc <- err
						return
					}
					for _, m := range msgs[:n] {
						seq := binary.BigEndian.Uint32(m.Buf[1:5])
						if len(m.Buf) != 1200 || seq != next[m.Addr] {
							errc <- errors.New("out of order or malformed datagram")
							return
						}
						next[m.Addr]++
					}
					received.Add(int64(n))
				}
				errc <- nil
			}()
			var sent atomic.Int64
			var wg sync.WaitGroup
			for si, s := range senders {
				wg.Go(func() {
					msgs := make([]udp.Message, batch)
					for i := range msgs {
						msgs[i] = udp.Message{Buf: make([]byte, 1200), Addr: rx.LocalAddr()}
					}
					deadline := time.Now().Add(10 * time.Second)
					for seq := 0; seq < perSender; seq += batch {
						for sent.Load()-received.Load() > window {
							if time.Now().After(deadline) {
								return
							}
							time.Sleep(50 * time.Microsecond)
						}
						k := min(batch, perSender-seq)
						for i := range k {
							payload(msgs[i].Buf, byte(si), uint32(seq+i))
						}
						if n, err := s.WriteBatch(msgs[:k]); err != nil || n != k {
							t.Errorf("WriteBatch = %d, %v", n, err)
							return
						}
						sent.Add(int64(k))
					}
				})
			}
			wg.Wait()
			select {
			case err := <-errc:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				rx.Close()
				<-errc
				t.Fatalf("received %d of %d datagrams", received.Load(), 2*perSender)
			}
		})
	}
}

func TestZeroAllocs(t *testing.T) {
	for _, fam := range families {
		for _, mode := range modes {
			t.Run(fam.network+"/"+mode.name, func(t *testing.T) {
				a := listen(t, mode.cfg, fam.network, fam.addr)
				b := listen(t, mode.cfg, fam.network, fam.addr)
				out := make([]udp.Message, 32)
				for i := range out {
					out[i] = udp.Message{Buf: make([]byte, 1200), Addr: b.LocalAddr()}
				}
				out[len(out)-1].Buf = out[len(out)-1].Buf[:300]
				in := make([]udp.Message, 64)
				allocs := testing.AllocsPerRun(200, func() {
					if n, err := a.WriteBatch(out); err != nil || n != len(out) {
						t.Fatalf("WriteBatch = %d, %v", n, err)
					}
					for got := 0; got < len(out); {
						n, err := b.ReadBatch(in)
						if err != nil {
							t.Fatal(err)
						}
						got += n
					}
				})
				if allocs != 0 {
					t.Fatalf("%v allocations per WriteBatch+ReadBatch, want 0", allocs)
				}
			})
		}
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			c, err := mode.cfg.Listen("udp4", netip.MustParseAddrPort("127.0.0.1:0"))
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				_, err := c.ReadBatch(make([]udp.Message, 8))
				errc <- err
			}()
			time.Sleep(20 * time.Millisecond)
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errc:
				if err != net.ErrClosed {
					t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ReadBatch still blocked after Close")
			}
			if _, err := c.ReadBatch(make([]udp.Message, 1)); err != net.ErrClosed {
				t.Fatalf("second ReadBatch: %v", err)
			}
			msg := []udp.Message{{Buf: []byte("x"), Addr: c.LocalAddr()}}
			if _, err := c.WriteBatch(msg); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("WriteBatch after Close: %v", err)
			}
		})
	}
}

// BenchmarkThroughput sends 1200-byte datagrams in batches of 64 between two
// conns on loopback. One op is one datagram received; the sender stays a
// bounded window ahead of the receiver so loopback does not drop.
func BenchmarkThroughput(b *testing.B) {
	const (
		size   = 1200
		batch  = 64
		window = 1024
	)
	lo := netip.MustParseAddr("127.0.0.1")
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			tx := listen(b, mode.cfg, "udp4", lo)
			rx := listen(b, mode.cfg, "udp4", lo)
			msgs := make([]udp.Message, batch)
			for i := range msgs {
				msgs[i] = udp.Message{Buf: make([]byte, size), Addr: rx.LocalAddr()}
			}
			var received atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				in := make([]udp.Message, 256)
				for {
					n, err := rx.ReadBatch(in)
					if err != nil {
						return
					}
					received.Add(int64(n))
				}
			}()
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for sent := 0; sent < b.N; {
				for int64(sent)-received.Load() > window {
					time.Sleep(10 * time.Microsecond)
				}
				k := min(batch, b.N-sent)
				n, err := tx.WriteBatch(msgs[:k])
				if err != nil {
					b.Fatal(err)
				}
				sent += n
			}
			deadline := time.Now().Add(time.Second)
			for received.Load() < int64(b.N) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Microsecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(received.Load())/elapsed.Seconds(), "pkts/s")
			rx.Close()
			<-done
		})
	}
}
