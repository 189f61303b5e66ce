// Package testnode starts real mesh nodes on 127.0.0.1 for tests and
// benchmarks: the one helper every package's tests share.
//
// It lives apart from package meshtest because it imports package mesh:
// meshtest's network rigs depend only on mesh/udp, so the mesh package's
// own (internal) tests can use them.
package testnode

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/mesh"
)

// LogEnv names the environment variable that turns node logs on: with
// MESHLOG=1 every node started here logs through the test's logger;
// without it the logs are discarded.
const LogEnv = "MESHLOG"

// startTimeout bounds Start; it opens sockets and returns.
const startTimeout = 10 * time.Second

// Start starts a mesh on a random port of 127.0.0.1 with the protocol's
// default timers, after applying opts to its Config in order, and closes
// it when the test or benchmark ends.
func Start(tb testing.TB, opts ...func(*mesh.Config)) *mesh.Mesh {
	tb.Helper()
	cfg := mesh.Config{ListenAddr: "127.0.0.1:0"}
	if os.Getenv(LogEnv) != "" {
		cfg.Logger = Logger(tb, slog.LevelDebug)
	}
	for _, f := range opts {
		f(&cfg)
	}
	m, err := mesh.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// FastTimers shrinks the session timers so that tests of handshakes,
// rekeys and dead peers finish quickly: handshakes retransmit every 50 ms
// and give up after 2 s, idle sessions send a keepalive every 200 ms (a
// peer silent for 300 ms is probed, and down when 2 s of probes go
// unanswered), and a path moves after 100 ms of silence.
func FastTimers(c *mesh.Config) {
	c.HandshakeRetransmit = 50 * time.Millisecond
	c.HandshakeGiveUp = 2 * time.Second
	c.KeepaliveInterval = 200 * time.Millisecond
	c.ProbeTimeout = 2 * time.Second
	c.RoamSilence = 100 * time.Millisecond
}

// Connect connects a to b, pinning b's key (Noise IK), and waits until b
// has confirmed the session too, so traffic flows both ways at once. It
// returns a's Peer for b.
func Connect(tb testing.TB, a, b *mesh.Mesh) *mesh.Peer {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p, err := a.Connect(ctx, b.Addr(), mesh.Pin{Key: b.Identity().PublicKey()})
	if err != nil {
		tb.Fatalf("connect %s -> %s: %v", a.ID().Short(), b.ID().Short(), err)
	}
	for {
		if q := b.Peer(a.ID()); q != nil && q.IsUp() {
			return p
		}
		if ctx.Err() != nil {
			tb.Fatalf("%s never confirmed the session with %s", b.ID().Short(), a.ID().Short())
		}
		time.Sleep(time.Millisecond)
	}
}

// Pair starts two nodes with opts and connects them as Connect does. It
// returns a's Peer for b.
func Pair(tb testing.TB, opts ...func(*mesh.Config)) (a, b *mesh.Mesh, ab *mesh.Peer) {
	tb.Helper()
	a, b = Start(tb, opts...), Start(tb, opts...)
	return a, b, Connect(tb, a, b)
}

// Context returns a context that ends after d, or when the test ends.
func Context(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// Eventually polls cond every 5 ms until it holds, and fails the test,
// naming what it waited for, when d passes first.
func Eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Sees waits up to 10 s until n's capability index shows node w with
// capabilities matching f.
func Sees(tb testing.TB, n, w *mesh.Mesh, f capability.Filter) {
	tb.Helper()
	Eventually(tb, 10*time.Second, "the announcement of "+w.ID().Short()+" matching "+f.String(), func() bool {
		node, ok := n.Capabilities().Index().Lookup(w.ID())
		return ok && f.Match(node)
	})
}

// Logger returns a logger that writes records of level and above to the
// test's log, which go test prints only when the test fails (or with -v).
func Logger(tb testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTBWriter(tb), &slog.HandlerOptions{Level: level}))
}

// tbWriter writes log lines to a test's log until the test ends; the
// mesh's goroutines may outlive it by a moment.
type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func newTBWriter(tb testing.TB) *tbWriter {
	w := &tbWriter{tb: tb}
	// Registered before the node's Close, so it runs after it.
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(string(p))
	}
	return len(p), nil
}
