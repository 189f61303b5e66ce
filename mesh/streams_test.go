package mesh_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/mesh/stream"
)

// message returns a deterministic message of n bytes whose first 8 bytes
// are its sequence number.
func message(seq, n int) []byte {
	b := make([]byte, max(n, 8))
	r := rand.New(rand.NewPCG(uint64(seq), uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	binary.LittleEndian.PutUint64(b, uint64(seq))
	return b[:max(n, 8)]
}

// transfer sends count messages of the given sizes on a fresh stream from
// a to b and checks that b receives each one once, in order, byte-exact.
// During the transfer, between(i) runs after message i is sent.
func transfer(t *testing.T, a, b *mesh.Mesh, pb *mesh.Peer, sizes []int, count int, between func(i int)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := a.OpenStream(ctx, pb, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		rs, from, err := b.AcceptStream(ctx)
		if err != nil {
			errc <- err
			return
		}
		if from.ID() != a.ID() {
			errc <- fmt.Errorf("stream from %s", from.ID())
			return
		}
		for i := range count {
			got, err := rs.Recv(ctx)
			if err != nil {
				errc <- fmt.Errorf("message %d: %w", i, err)
				return
			}
			want := message(i, sizes[i%len(sizes)])
			if sha256.Sum256(got) != sha256.Sum256(want) {
				errc <- fmt.Errorf("message %d: %d bytes, checksum differs (seq %d)", i, len(got), binary.LittleEndian.Uint64(got))
				return
			}
		}
		if _, err := rs.Recv(ctx); !errors.Is(err, io.EOF) {
			errc <- fmt.Errorf("after the last message: %v, want EOF", err)
			return
		}
		errc <- nil
	}()
	for i := range count {
		if err := s.SendBlocking(ctx, message(i, sizes[i%len(sizes)])); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if between != nil {
			between(i)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-errc: // the receiver finished or failed first
		if err != nil {
			t.Fatalf("receiver: %v\nsender stream: %+v", err, s.Stats())
		}
		if err := <-closed; err != nil {
			t.Fatalf("close: %v\nsender stream: %+v", err, s.Stats())
		}
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v\nsender stream: %+v", err, s.Stats())
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

func TestStreamOverMesh(t *testing.T) {
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	transfer(t, a, b, pb, []int{1, 100, 1200, 5000, 70000}, 50, nil)
	if len(pb.StreamStats()) > 1 {
		t.Logf("stream stats: %+v", pb.StreamStats())
	}
}

func TestStreamUnderFaults(t *testing.T) {
	fa := meshtest.Listen(t, meshtest.Options{Seed: 7})
	a := newNode(t, func(c *mesh.Config) { c.Conn = fa })
	fb := meshtest.Listen(t, meshtest.Options{Seed: 8})
	b := newNode(t, func(c *mesh.Config) { c.Conn = fb })
	pb := connect(t, a, b, mesh.Pin{})
	f := meshtest.Faults{Loss: 0.1, Reorder: 0.05, Duplicate: 0.01, Corrupt: 0.01}
	fa.SetFaults(f)
	fb.SetFaults(f)
	transfer(t, a, b, pb, []int{1, 1000, 64 << 10, 1 << 20}, 12, nil)
	t.Logf("faults a->b: %+v; drops at b: %v", fa.Stats(), b.Stats().Drops)
}

// Issue 4: a reliable stream keeps going, complete and in order, while its
// session moves routed -> direct -> routed.
func TestStreamSurvivesPathSwitches(t *testing.T) {
	dead := func(c *mesh.Config) { c.DeadPeerTimeout = 600 * time.Millisecond }
	a, _, b, fa, _, fb, pb := relayedPair(t, dead)
	const n = 300
	transfer(t, a, b, pb, []int{3000}, n, func(i int) {
		switch i {
		case n / 3: // the direct path opens
			fa.Unblock(b.Addr())
			fb.Unblock(a.Addr())
			eventually(t, 3*time.Second, "the direct path", func() bool {
				// Each Connect sends one probe on the session; probe
				// again until the path has moved.
				if _, err := a.Connect(context.Background(), b.Addr(), mesh.Pin{ID: b.ID()}); err != nil {
					t.Errorf("upgrade: %v", err)
				}
				return pb.Stats().Path == "direct" && b.Peer(a.ID()).Stats().Path == "direct"
			})
		case 2 * n / 3: // and closes again
			if pb.Stats().Path != "direct" {
				t.Errorf("path %q at the midpoint, want direct", pb.Stats().Path)
			}
			fa.Block(b.Addr())
			fb.Block(a.Addr())
		}
	})
	if p := pb.Stats().Path; p != "relayed" {
		t.Errorf("path %q at the end, want relayed", p)
	}
}

func TestStreamToDownPeer(t *testing.T) {
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	s, err := a.OpenStream(ctxT(t), pb, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctxT(t), bytes.Repeat([]byte("x"), 10)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, err := a.OpenStream(ctxT(t), pb, mesh.StreamConfig{}); err == nil {
		t.Fatal("opened a stream on a closed mesh")
	}
}

func TestStreamListeners(t *testing.T) {
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	proto := mesh.MustProtocol("netmesh-test/listeners")
	if _, err := b.ListenStreams(mesh.Protocol{}); err == nil {
		t.Fatal("listened on the zero Protocol")
	}
	l, err := b.ListenStreams(proto)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ListenStreams(proto); !errors.Is(err, mesh.ErrProtoInUse) {
		t.Fatalf("second listener: %v, want ErrProtoInUse", err)
	}
	ctx := ctxT(t)
	s, err := a.OpenStreamOn(ctx, pb, proto, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, []byte("for the listener")); err != nil {
		t.Fatal(err)
	}
	rs, from, err := l.Accept(ctx)
	if err != nil || from.ID() != a.ID() {
		t.Fatalf("accept: %v, %v", from, err)
	}
	if msg, err := rs.Recv(ctx); err != nil || string(msg) != "for the listener" {
		t.Fatalf("recv: %q, %v", msg, err)
	}
	// The application's AcceptStream never sees the listener's streams.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := b.AcceptStream(short); err == nil {
		t.Fatal("AcceptStream returned a stream of another protocol")
	}
	// A closed listener frees its protocol for another.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := b.ListenStreams(proto)
	if err != nil {
		t.Fatalf("listen after close: %v", err)
	}
	defer l2.Close()
	// A stream on a protocol nobody listens on is refused.
	s2, err := a.OpenStreamOn(ctx, pb, mesh.MustProtocol("netmesh-test/nobody"), mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s2.Send(ctx, []byte("nobody home"))
	if _, err := s2.Recv(ctx); err == nil {
		t.Fatal("a stream to an unheard protocol was not refused")
	}
}

func TestHandleStreams(t *testing.T) {
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	proto := mesh.MustProtocol("netmesh-test/handle-streams")
	if err := b.Handle(proto, func(*mesh.Peer, []byte) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.HandleStreams(proto, func(*mesh.Stream, *mesh.Peer) {}); !errors.Is(err, mesh.ErrProtoInUse) {
		t.Fatalf("stream handler beside a frame handler: %v, want ErrProtoInUse", err)
	}
	proto = mesh.MustProtocol("netmesh-test/handle-streams-2")
	got := make(chan string, 4)
	l, err := b.HandleStreams(proto, func(s *mesh.Stream, from *mesh.Peer) {
		msg, err := s.Recv(context.Background())
		if err != nil || from.ID() != a.ID() {
			got <- fmt.Sprintf("error %v from %s", err, from.ID())
			return
		}
		s.Send(context.Background(), append([]byte("re: "), msg...))
		s.Close()
		got <- string(msg)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ListenStreams(proto); !errors.Is(err, mesh.ErrProtoInUse) {
		t.Fatalf("listener beside a handler: %v, want ErrProtoInUse", err)
	}
	ctx := ctxT(t)
	if _, _, err := l.Accept(ctx); err == nil {
		t.Fatal("Accept on a handler's listener returned a stream")
	}
	for i := range 3 {
		s, err := a.OpenStreamOn(ctx, pb, proto, mesh.StreamConfig{})
		if err != nil {
			t.Fatal(err)
		}
		req := fmt.Sprintf("call %d", i)
		if err := s.Send(ctx, []byte(req)); err != nil {
			t.Fatal(err)
		}
		if msg, err := s.Recv(ctx); err != nil || string(msg) != "re: "+req {
			t.Fatalf("reply %d: %q, %v", i, msg, err)
		}
		if h := <-got; h != req {
			t.Fatalf("handler saw %q, want %q", h, req)
		}
		s.Close()
	}
	// After Close, new streams are refused and the handler is not called.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := a.OpenStreamOn(ctx, pb, proto, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s.Send(ctx, []byte("too late"))
	if _, err := s.Recv(ctx); err == nil {
		t.Fatal("a stream to a closed handler was not refused")
	}
	select {
	case h := <-got:
		t.Fatalf("closed handler ran: %q", h)
	default:
	}
}

// Streams beyond the listener's backlog are refused and counted; the ones
// in the backlog are still accepted.
func TestStreamBacklog(t *testing.T) {
	a := newNode(t)
	b := newNode(t, func(c *mesh.Config) { c.Streams.AcceptBacklog = 2 })
	pb := connect(t, a, b, mesh.Pin{})
	ctx := ctxT(t)
	var streams []*mesh.Stream
	for i := range 3 {
		s, err := a.OpenStream(ctx, pb, mesh.StreamConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	var re *stream.ResetError
	if _, err := streams[2].Recv(ctx); !errors.As(err, &re) || re.Code != stream.CodeRefused {
		t.Fatalf("third stream: %v, want a CodeRefused reset", err)
	}
	if n := b.Stats().Drops["stream_backlog"]; n != 1 {
		t.Fatalf("stream_backlog drops = %d, want 1", n)
	}
	for i := range 2 {
		rs, _, err := b.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg, err := rs.Recv(ctx); err != nil || len(msg) != 1 || msg[0] != byte(i) {
			t.Fatalf("accepted stream %d: %v, %v", i, msg, err)
		}
	}
}

// A peer's open streams appear in Stats.
func TestStreamStatsInMeshStats(t *testing.T) {
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	ctx := ctxT(t)
	s, err := a.OpenStream(ctx, pb, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, []byte("counted")); err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Stats().Peers {
		if p.ID != b.ID() {
			continue
		}
		if len(p.Streams) != 1 || p.Streams[0].ID != s.ID() || p.Streams[0].TxMessages != 1 {
			t.Fatalf("peer stats streams = %+v, want stream %d with 1 message sent", p.Streams, s.ID())
		}
		return
	}
	t.Fatal("b missing from a's Stats")
}

// On a path that carries jumbo frames (loopback does: its MTU is 64 KiB),
// path MTU discovery lifts stream fragments from the 1131-byte base to
// what a 9000-byte packet holds, and data still arrives intact.
func TestStreamJumboFrames(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("path MTU discovery needs don't-fragment sockets (Linux)")
	}
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	transfer(t, a, b, pb, []int{64 << 10, 10, 1 << 20}, 30, nil)
	// Probes ride on demand; give the search a few more transfers.
	for i := 0; i < 10 && pb.Stats().StreamMTU <= 8000; i++ {
		transfer(t, a, b, pb, []int{1 << 20}, 4, nil)
	}
	// 9000 less the IPv4 and UDP headers, the data packet's 32 bytes and
	// the frame header.
	if got, want := pb.Stats().StreamMTU, 9000-20-8-32-2; got != want {
		t.Fatalf("stream MTU %d on loopback, want %d", got, want)
	}
}
