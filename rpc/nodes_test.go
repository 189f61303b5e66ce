package rpc_test

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// nodeID returns a distinct node id for each i (none is a real node).
func nodeID(i int) identity.NodeID {
	var id identity.NodeID
	id[0] = 0xEE
	binary.LittleEndian.PutUint64(id[1:], uint64(i))
	return id
}

// churn makes the client create state for n new nodes, from *next on.
func churn(c *rpc.Client, next *int, n int) {
	for range n {
		c.Breaker(nodeID(*next))
		*next++
	}
}

// TestNodeTableBounded guards the client's per-node table against growing
// without bound as the nodes called change: nodes it no longer needs to
// remember are forgotten.
func TestNodeTableBounded(t *testing.T) {
	t.Run("idle nodes", func(t *testing.T) {
		c := rpc.NewClient(newNode(t), rpc.ClientOptions{})
		next := 0
		for range 10 * rpc.NodeTableMin {
			churn(c, &next, 1)
			if n := c.Stats().Nodes; n > rpc.NodeTableMin {
				t.Fatalf("%d nodes touched, %d kept; want at most %d", next, n, rpc.NodeTableMin)
			}
		}
	})
	t.Run("failed calls", func(t *testing.T) {
		// Every call fails (no route) and opens its node's breaker, which
		// the client remembers for Cooldown + BreakerMemory: with a call
		// every 100 ms of the fake clock, about 650 nodes at a time.
		clock := &fakeClock{}
		cooldown := 5 * time.Second
		c := rpc.NewClient(newNode(t), rpc.ClientOptions{Breaker: rpc.BreakerConfig{Failures: 1, Cooldown: cooldown, Clock: clock}})
		ctx := ctxT(t)
		const step = 100 * time.Millisecond
		remembered := int((cooldown+rpc.BreakerMemory)/step) + 1
		bound := max(rpc.NodeTableMin, 2*remembered)
		for i := range 4 * bound {
			_, err := c.Call(ctx, nodeID(i), "echo", nil)
			rpcErr(t, err, rpc.KindNoRoute)
			if st := c.Breaker(nodeID(i)).State(); st != rpc.BreakerOpen {
				t.Fatalf("call %d: breaker %s", i, st)
			}
			if n := c.Stats().Nodes; n > bound {
				t.Fatalf("after %d failed calls to distinct nodes, %d kept; want at most %d", i+1, n, bound)
			}
			clock.advance(step)
		}
	})
}

// TestNodeTableKeepsWhatMatters checks what a sweep of the client's table
// keeps: nodes with calls in flight, and breakers holding failures until
// Cooldown + BreakerMemory after the last one; after that they are
// forgotten, and a node called again starts fresh.
func TestNodeTableKeepsWhatMatters(t *testing.T) {
	clock := &fakeClock{}
	const cooldown = 10 * time.Second
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{Breaker: rpc.BreakerConfig{Failures: 2, Cooldown: cooldown, Clock: clock}})
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the server's Close, should the test fail early
	started := make(chan struct{}, 1)
	if err := s.srv.Handle("wait", func(ctx context.Context, req []byte) ([]byte, error) {
		started <- struct{}{}
		<-release
		return req, nil
	}); err != nil {
		t.Fatal(err)
	}
	c, ctx := s.c, ctxT(t)
	open, failed, probing, server := nodeID(-1), nodeID(-2), nodeID(-3), s.sm.ID()
	for range 2 {
		_, err := c.Call(ctx, open, "echo", nil)
		rpcErr(t, err, rpc.KindNoRoute)
	}
	_, err := c.Call(ctx, failed, "echo", nil)
	rpcErr(t, err, rpc.KindNoRoute)
	for range 2 {
		c.Breaker(probing).Failure()
	}
	clock.advance(cooldown)
	if err := c.Breaker(probing).Allow(); err != nil { // a probe that is never reported
		t.Fatal(err)
	}
	clock.advance(time.Second)
	serverBreaker := c.Breaker(server) // closed and clean: kept only while the call is in flight
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, server, "wait", nil)
		done <- err
	}()
	<-started

	want := map[identity.NodeID]rpc.BreakerState{open: rpc.BreakerHalfOpen, failed: rpc.BreakerClosed, probing: rpc.BreakerHalfOpen, server: rpc.BreakerClosed}
	names := map[identity.NodeID]string{open: "open", failed: "closed with a failure", probing: "half-open", server: "call in flight"}
	kept := map[identity.NodeID]*rpc.CircuitBreaker{}
	for id := range want {
		kept[id] = c.Breaker(id)
	}
	if kept[server] != serverBreaker {
		t.Fatal("Breaker returned another breaker for the same node")
	}
	next := 0
	check := func(when string, same bool) {
		t.Helper()
		for id, b := range kept {
			if got := c.Breaker(id); (got == b) != same {
				t.Errorf("%s: node %q: kept %v, want %v", when, names[id], got == b, same)
			}
		}
	}
	// Up to the last moment of their memory (the oldest events, the
	// failures of "open" and "failed", were 11 s ago), all survive sweeps.
	clock.advance(cooldown + rpc.BreakerMemory - 11*time.Second - time.Nanosecond)
	churn(c, &next, 3*rpc.NodeTableMin)
	check("before the memory ran out", true)
	for id, st := range want {
		if got := c.Breaker(id).State(); got != st {
			t.Errorf("node %q: breaker %s, want %s", names[id], got, st)
		}
	}
	if n := c.Stats().Nodes; n > rpc.NodeTableMin {
		t.Fatalf("%d nodes kept", n)
	}

	// Past their memory, only the node with a call in flight is kept...
	clock.advance(2 * cooldown)
	churn(c, &next, 2*rpc.NodeTableMin)
	for id, b := range kept {
		if got := c.Breaker(id); (got == b) != (id == server) {
			t.Errorf("memory over, call in flight: node %q kept %v", names[id], got == b)
		}
	}
	// ... until the call is over.
	unblock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	churn(c, &next, 2*rpc.NodeTableMin)
	check("after the call", false)

	// Forgotten, a node starts fresh: one failure does not open its new
	// breaker (the old, half-open one re-opened on the first).
	_, err = c.Call(ctx, open, "echo", nil)
	rpcErr(t, err, rpc.KindNoRoute)
	if st := c.Breaker(open).State(); st != rpc.BreakerClosed {
		t.Fatalf("forgotten node called again: breaker %s, want closed", st)
	}
	// A detached breaker no longer affects calls.
	for range 2 {
		kept[server].Failure()
	}
	if _, err := c.Call(ctx, server, "wait", nil); err != nil {
		t.Fatal(err)
	}
}

// TestPickAddsNoNode: choosing among a service's nodes does not make the
// client remember them; only a call does.
func TestPickAddsNoNode(t *testing.T) {
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{})
	if err := s.srv.Handle("echo", func(_ context.Context, req []byte) ([]byte, error) { return req, nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the service to be advertised", func() bool {
		_, err := s.c.Pick("echo")
		return err == nil
	})
	if n := s.c.Stats().Nodes; n != 0 {
		t.Fatalf("Pick: %d nodes kept, want 0", n)
	}
	if _, err := s.c.CallService(ctxT(t), "echo", nil); err != nil {
		t.Fatal(err)
	}
	if n := s.c.Stats().Nodes; n != 1 {
		t.Fatalf("CallService: %d nodes kept, want 1", n)
	}
}

// TestNodeTableConcurrent runs calls while other goroutines sweep the
// table (for -race): every call succeeds and is accounted for.
func TestNodeTableConcurrent(t *testing.T) {
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{})
	if err := s.srv.Handle("echo", func(_ context.Context, req []byte) ([]byte, error) { return req, nil }); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if _, err := s.c.Call(ctx, s.sm.ID(), "echo", nil); err != nil {
					t.Error(err)
					return
				}
				next := (g*200 + i) * rpc.NodeTableMin / 50
				churn(s.c, &next, rpc.NodeTableMin/50)
			}
		})
	}
	wg.Wait()
	if st := s.c.Stats(); st.Calls != 800 || st.Failures != 0 || st.Outstanding != 0 || st.Nodes > rpc.NodeTableMin {
		t.Fatalf("client stats %+v", st)
	}
	if st := s.c.Breaker(s.sm.ID()).State(); st != rpc.BreakerClosed {
		t.Fatalf("breaker %s", st)
	}
}

// TestNodeTableAllocs: the table adds no allocation to a call on a node
// the client knows (a refused call allocates its *Error only).
func TestNodeTableAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	c := rpc.NewClient(newNode(t), rpc.ClientOptions{Breaker: rpc.BreakerConfig{Failures: 1, Cooldown: time.Hour}})
	node := nodeID(1)
	c.Breaker(node).Failure()
	ctx := context.Background()
	if a := testing.AllocsPerRun(1000, func() { c.Breaker(node) }); a != 0 {
		t.Errorf("Breaker of a known node: %v allocs, want 0", a)
	}
	if a := testing.AllocsPerRun(1000, func() { c.Call(ctx, node, "echo", nil) }); a != 1 {
		t.Errorf("call refused by the breaker: %v allocs, want 1", a)
	}
}
