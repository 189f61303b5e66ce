package mesh

import (
	"context"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh/stream"
)

// testEngine is the protocol of an engine the tests register.
var testEngine = MustProtocol("netmesh-test/engine")

// An engine's outgoing stream that was reset is replaced: the engine
// keeps reaching the peer over the same session. (Before, every later
// message to the peer failed with the reset until the session ended,
// which cut capability gossip and channels off from a live peer.)
func TestEngineStreamReplacedAfterReset(t *testing.T) {
	got := make(chan string, 4)
	a := startNode(t)
	b, err := New(Config{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.handleMessages(testEngine, func(_ *Peer, msg []byte) { got <- string(msg) }); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pb, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	expect := func(want string) {
		t.Helper()
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("engine got %q, want %q", m, want)
			}
		case <-ctx.Done():
			t.Fatalf("engine never got %q", want)
		}
	}

	if err := a.sendMessage(pb, testEngine, []byte("one")); err != nil {
		t.Fatal(err)
	}
	expect("one")
	a.muxFor(pb, testEngine.id).out.Load().Reset(stream.CodeRefused)
	if err := a.sendMessage(pb, testEngine, []byte("two")); err != nil {
		t.Fatalf("send after the engine stream was reset: %v", err)
	}
	expect("two")
}
