package daemon_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
	"github.com/netmesh/netmesh/rpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gossip makes capability gossip go out every 100 ms; idle nodes stay
// "online" (placement ranks degraded ones last).
func gossip(cfg *mesh.Config) {
	cfg.Capabilities.TTL = 30 * time.Second
	cfg.Capabilities.MinAnnounceInterval = 100 * time.Millisecond
}

// node is one mesh node with its rpc server and daemon runtime.
type node struct {
	m    *mesh.Mesh
	srv  *rpc.Server
	rt   *daemon.Runtime
	once sync.Once
}

// newNode starts a node on 127.0.0.1 running the test kinds, closed when
// the test ends. tags go into its capabilities.
func newNode(t testing.TB, cfg daemon.Config, tags ...string) *node {
	t.Helper()
	m := testnode.Start(t, testnode.FastTimers, gossip)
	srv, err := rpc.NewServer(m, rpc.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) > 0 {
		if err := m.UpdateCapabilities(func(s capability.Set) capability.Set {
			s.Tags = append(slices.Clone(s.Tags), tags...)
			return s
		}); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	rt, err := daemon.NewRuntime(m, srv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range testKinds() {
		if err := rt.Register(k); err != nil {
			t.Fatal(err)
		}
	}
	n := &node{m: m, srv: srv, rt: rt}
	t.Cleanup(n.close)
	return n
}

// testWriter sends a runtime's log to the test's.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// close stops the node; it may be called more than once (a test kills a
// node by closing it).
func (n *node) close() {
	n.once.Do(func() {
		n.rt.Close()
		n.srv.Close()
		n.m.Close()
	})
}

func (n *node) id() identity.NodeID { return n.m.ID() }

// connect makes a session from a to b.
func connect(t testing.TB, a, b *node) { testnode.Connect(t, a.m, b.m) }

// mesh starts n nodes, connects every pair, and waits until each sees
// every other's runtime.
func newMesh(t testing.TB, n int, cfg daemon.Config, tags func(i int) []string) []*node {
	t.Helper()
	nodes := make([]*node, n)
	for i := range nodes {
		var tg []string
		if tags != nil {
			tg = tags(i)
		}
		nodes[i] = newNode(t, cfg, tg...)
	}
	for i := range nodes {
		for j := i + 1; j < n; j++ {
			connect(t, nodes[i], nodes[j])
		}
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				sees(t, a, b, capability.HasTag(daemon.KindTagPrefix+"seqlog"))
			}
		}
	}
	return nodes
}

func ctxT(t testing.TB) context.Context { return testnode.Context(t, 60*time.Second) }

// eventually is testnode.Eventually.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testnode.Eventually(t, d, what, cond)
}

// sees waits until n's capability index shows w matching f.
func sees(t testing.TB, n, w *node, f capability.Filter) {
	t.Helper()
	testnode.Sees(t, n.m, w.m, f)
}

// code asserts that err is a *daemon.Error of code c.
func code(t testing.TB, err error, c daemon.Code) *daemon.Error {
	t.Helper()
	var de *daemon.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want a *daemon.Error %s", err, err, c)
	}
	if de.Code != c {
		t.Fatalf("error %v: code %s, want %s", err, de.Code, c)
	}
	return de
}

// The test kinds.
//
// seqlog records every event it applies: its state is the list, in
// order, so a test reads from a snapshot exactly what was applied, once
// each. Its output is the event's sequence number.
//
// gated is a seqlog whose Handle waits on the gate of its node's test
// (see gate), to hold events in the inbox.
//
// gpu-job is a seqlog that requires the tag "gpu".
func testKinds() []daemon.Kind {
	return []daemon.Kind{
		{Name: "seqlog", New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) { return &seqlog{}, nil }},
		{Name: "gpu-job", Requires: capability.HasTag("gpu"), New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) { return &seqlog{}, nil }},
		{Name: "gated", New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) { return &seqlog{gate: gate}, nil }},
		{Name: "failing", New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) { return &seqlog{failSnap: true}, nil }},
	}
}

// gate holds the events of "gated" daemons while it is closed: a test
// closes it with holdGate, and learns on entered that a Handle waits.
var (
	gateMu  sync.Mutex
	gateC   chan struct{}
	entered = make(chan struct{}, 64)
)

func gate() {
	gateMu.Lock()
	c := gateC
	gateMu.Unlock()
	if c != nil {
		entered <- struct{}{}
		<-c
	}
}

// holdGate closes the gate until the returned function opens it.
func holdGate(t testing.TB) func() {
	c := make(chan struct{})
	gateMu.Lock()
	gateC = c
	gateMu.Unlock()
	var once sync.Once
	open := func() {
		once.Do(func() {
			gateMu.Lock()
			gateC = nil
			gateMu.Unlock()
			close(c)
		})
	}
	t.Cleanup(open)
	return open
}

// record is one event a seqlog applied.
type record struct {
	Seq  uint64          `json:"seq"`
	From identity.NodeID `json:"from"`
	Data string          `json:"data"`
}

type seqlog struct {
	recs     []record
	gate     func()
	failSnap bool
}

func (s *seqlog) Handle(ev daemon.Event) ([][]byte, error) {
	if s.gate != nil {
		s.gate()
	}
	if n := len(s.recs); n > 0 && s.recs[n-1].Seq+1 != ev.Seq {
		return nil, fmt.Errorf("sequence %d after %d", ev.Seq, s.recs[n-1].Seq)
	}
	s.recs = append(s.recs, record{Seq: ev.Seq, From: ev.From, Data: string(ev.Data)})
	return [][]byte{binary.BigEndian.AppendUint64(nil, ev.Seq)}, nil
}

func (s *seqlog) Snapshot() ([]byte, error) {
	if s.failSnap {
		return nil, errors.New("snapshot refused (test)")
	}
	return json.Marshal(s.recs)
}

func (s *seqlog) Restore(b []byte) error { return json.Unmarshal(b, &s.recs) }

// records reads a seqlog's records from a snapshot.
func records(t testing.TB, s daemon.Snapshot) []record {
	t.Helper()
	var recs []record
	if err := json.Unmarshal(s.State, &recs); err != nil {
		t.Fatalf("snapshot state: %v", err)
	}
	return recs
}

// checkLog asserts that recs are sequence numbers first+1 to
// first+len(recs) in order, that each datum appears once, and that every
// datum in acked is among them.
func checkLog(t testing.TB, recs []record, acked map[string]uint64) {
	t.Helper()
	seen := map[string]uint64{}
	for i, r := range recs {
		if i > 0 && r.Seq != recs[i-1].Seq+1 {
			t.Fatalf("record %d: sequence %d after %d", i, r.Seq, recs[i-1].Seq)
		}
		if s, dup := seen[r.Data]; dup {
			t.Fatalf("event %q applied twice: at %d and %d", r.Data, s, r.Seq)
		}
		seen[r.Data] = r.Seq
	}
	for d, seq := range acked {
		got, ok := seen[d]
		if !ok {
			t.Fatalf("acknowledged event %q (seq %d) lost", d, seq)
		}
		if got != seq {
			t.Fatalf("event %q acknowledged at %d, recorded at %d", d, seq, got)
		}
	}
}
