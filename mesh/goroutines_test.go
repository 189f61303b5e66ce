package mesh

import (
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/mesh/stream"
	"github.com/netmesh/netmesh/mesh/wire"
)

// openOneFrameStreams opens n streams from a to b on proto, as an
// attacker would: each with one DATA frame, the first fragment of a
// message of 8000 bytes that never comes (docs/STREAMS.md has the
// layout). The stream ids start past the ones a's own Mux uses.
func openOneFrameStreams(t *testing.T, a *Mesh, pb *Peer, proto wire.Proto, n int) {
	t.Helper()
	const payload = 100
	body := make([]byte, 16+payload)
	for i := range n {
		body[0] = 0x01                                           // DATA, no flags
		binary.LittleEndian.PutUint32(body[2:], uint32(201+2*i)) // odd: opened by the sender
		binary.LittleEndian.PutUint64(body[6:], 0)
		binary.LittleEndian.PutUint16(body[14:], payload)
		binary.PutUvarint(body[16:], 8000) // the message's length prefix
		for a.tr.sendFrame(pb, proto, body, nil) != nil {
			time.Sleep(time.Millisecond)
		}
	}
}

// settleGoroutines waits until the process runs at most want goroutines
// and returns how many it runs; it gives up after d.
func settleGoroutines(want int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamsTaken returns how many streams p opened on proto that this
// node accepted or refused.
func streamsTaken(p *Peer, proto Protocol) uint64 {
	pm := p.streams.get(proto.id)
	if pm == nil {
		return 0
	}
	st := pm.mux.Stats()
	return st.Accepted + st.Refused
}

// Guards issue 24 item 5: streams an authenticated peer opens with one
// frame each on the engines' protocols (capability gossip, channels) and
// on the application's park no goroutine on the victim; on a protocol
// whose handler waits for the request with a timeout, as rpc does, they
// park one each until that timeout, and then the victim is back to its
// baseline.
func TestOneFrameStreamsParkNoGoroutines(t *testing.T) {
	const perProto = 300
	requestTimeout := time.Second // the knob: rpc's is 30 s
	handled := MustProtocol("netmesh-test/handled")
	a := startNode(t)
	b := startNode(t)
	if _, err := b.HandleStreams(handled, func(s *Stream, _ *Peer) {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		if _, err := s.Recv(ctx); err != nil {
			s.Reset(stream.CodeRefused)
		}
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pb, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	// The baseline: both nodes up, capability gossip exchanged.
	for _, n := range []*Mesh{a, b} {
		if err := n.AnnounceCapabilities(capability.Set{Tags: []string{"test"}}); err != nil {
			t.Fatal(err)
		}
	}
	pa := b.Peer(a.ID())
	for pa == nil || pa.streams.get(protoCapability.id) == nil || pb.streams.get(protoCapability.id) == nil {
		if ctx.Err() != nil {
			t.Fatal("no capability gossip")
		}
		time.Sleep(time.Millisecond)
		pa = b.Peer(a.ID())
	}
	baseline := runtime.NumGoroutine()

	for _, proto := range []Protocol{protoCapability, protoChannel, protoStream} {
		openOneFrameStreams(t, a, pb, proto.id, perProto)
	}
	// Wait until b has taken (or refused) every stream.
	opened := func(proto Protocol) uint64 { return streamsTaken(pa, proto) }
	for opened(protoCapability) < perProto || opened(protoChannel) < perProto || opened(protoStream) < perProto {
		if ctx.Err() != nil {
			t.Fatalf("b took %d, %d and %d of %d streams", opened(protoCapability), opened(protoChannel), opened(protoStream), perProto)
		}
		time.Sleep(time.Millisecond)
	}
	// Each engine frame kicks a short-lived drain goroutine that finds no
	// whole message and ends; on a busy machine some have not ended yet.
	// A parked goroutine would stay until the streams' idle timeout (30 s).
	if n := settleGoroutines(baseline+20, 5*time.Second); n > baseline+20 {
		t.Fatalf("%d goroutines 5 s after %d one-frame streams on engine and application protocols, baseline %d", n, 3*perProto, baseline)
	}
	openOneFrameStreams(t, a, pb, handled.id, perProto)
	for opened(handled) < perProto {
		if ctx.Err() != nil {
			t.Fatalf("b took %d of %d streams on %v", opened(handled), perProto, handled)
		}
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n < baseline+perProto/2 {
		t.Fatalf("%d goroutines with %d handlers waiting, baseline %d: the attack did not land", n, perProto, baseline)
	}
	if n := settleGoroutines(baseline+20, 2*requestTimeout+5*time.Second); n > baseline+20 {
		t.Fatalf("%d goroutines %v after the attacker went silent, baseline %d", n, 2*requestTimeout+5*time.Second, baseline)
	}
}

// Guards issue 24 item 5 where the handler has no timeout of its own: it
// reads a stream the peer opened with one frame and then left silent,
// and waits on it for good. The stream engine resets such a stream after
// Streams.IdleTimeout (30 s by default, shortened here), the handler's
// Recv returns, and the victim is back to its baseline goroutines.
func TestSilentStreamsEndAtIdleTimeout(t *testing.T) {
	const n = 300
	idle := 300 * time.Millisecond
	waiting := MustProtocol("netmesh-test/waiting")
	a := startNode(t)
	b := startNode(t, func(c *Config) { c.Streams.IdleTimeout = idle })
	if _, err := b.HandleStreams(waiting, func(s *Stream, _ *Peer) {
		for {
			if _, err := s.Recv(context.Background()); err != nil {
				return
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pb, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	pa := b.Peer(a.ID())
	for pa == nil {
		if ctx.Err() != nil {
			t.Fatal("b never saw a")
		}
		time.Sleep(time.Millisecond)
		pa = b.Peer(a.ID())
	}
	baseline := runtime.NumGoroutine()

	openOneFrameStreams(t, a, pb, waiting.id, n)
	for streamsTaken(pa, waiting) < n {
		if ctx.Err() != nil {
			t.Fatalf("b took %d of %d streams", streamsTaken(pa, waiting), n)
		}
		time.Sleep(time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g < baseline+n/2 {
		t.Fatalf("%d goroutines with %d handlers waiting, baseline %d: the attack did not land", g, n, baseline)
	}
	if g := settleGoroutines(baseline+20, 20*time.Second); g > baseline+20 {
		t.Fatalf("%d goroutines 20 s after the attacker went silent (IdleTimeout %v), baseline %d", g, idle, baseline)
	}
	// The last few handlers may still be waiting: every stream goes.
	resets := func() uint64 { return pa.streams.get(waiting.id).mux.Stats().IdleResets }
	for resets() < n {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d silent streams reset", resets(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
