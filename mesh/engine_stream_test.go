package mesh

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh/stream"
)

// testEngine is the protocol of an engine the tests register.
var testEngine = MustProtocol("netmesh-test/engine")

// engineNodes starts a node a and a node b on which register registers
// engines before it starts, and connects a to b; it returns a, b's peer
// entry at a, and a context for the test's waits.
func engineNodes(t *testing.T, register func(b *Mesh) error) (*Mesh, *Peer, context.Context) {
	t.Helper()
	a := startNode(t)
	b, err := New(Config{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := register(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	pb, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	return a, pb, ctx
}

// An engine's outgoing stream that was reset is replaced: the engine
// keeps reaching the peer over the same session. (Before, every later
// message to the peer failed with the reset until the session ended,
// which cut capability gossip and channels off from a live peer.)
func TestEngineStreamReplacedAfterReset(t *testing.T) {
	got := make(chan string, 4)
	a, pb, ctx := engineNodes(t, func(b *Mesh) error {
		return b.handleMessages(testEngine, func(_ *Peer, msg []byte) { got <- string(msg) })
	})
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

// An inline engine's messages are handed over on the socket reader, an
// engine's otherwise on a drain goroutine of their own.
func TestInlineEngineRunsOnReader(t *testing.T) {
	inline := MustProtocol("netmesh-test/engine-inline")
	onReader := func() bool {
		buf := make([]byte, 64<<10)
		return strings.Contains(string(buf[:runtime.Stack(buf, false)]), ").readLoop(")
	}
	got := make(chan string, 2)
	report := func(_ *Peer, msg []byte) { got <- fmt.Sprint(string(msg), onReader()) }
	a, pb, ctx := engineNodes(t, func(b *Mesh) error {
		if err := b.handleMessages(testEngine, report); err != nil {
			return err
		}
		return b.handleMessagesInline(inline, report)
	})
	for _, c := range []struct {
		proto    Protocol
		msg      string
		onReader bool
	}{{testEngine, "drained", false}, {inline, "inline", true}} {
		if err := a.sendMessage(pb, c.proto, []byte(c.msg)); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint(c.msg, c.onReader)
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("%v: handler reported %q, want %q (the message, then whether on the socket reader)", c.proto, m, want)
			}
		case <-ctx.Done():
			t.Fatalf("%v: no message", c.proto)
		}
	}
}
