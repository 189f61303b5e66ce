package rpc_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/rpc"
)

// fakeClock is a manual clock. After records the wait and, unless hold is
// set, fires at once, advancing the clock by the wait.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
	hold  bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if !c.hold {
		c.now = c.now.Add(d)
		ch <- c.now
	}
	return ch
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// script returns a call that fails with errs in turn, then succeeds, and
// counts its attempts.
func script(attempts *int, errs ...error) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		*attempts++
		if len(errs) >= *attempts {
			return "", errs[*attempts-1]
		}
		return "ok", nil
	}
}

func TestCallWithRetry(t *testing.T) {
	transport := &rpc.Error{Kind: rpc.KindTransport}
	noRoute := &rpc.Error{Kind: rpc.KindNoRoute}
	for _, tc := range []struct {
		name     string
		policy   rpc.RetryPolicy
		errs     []error
		attempts int
		waits    []time.Duration
	}{
		{"retries no route and transport", rpc.RetryPolicy{}, []error{transport, noRoute}, 3,
			[]time.Duration{5 * time.Millisecond, 10 * time.Millisecond}},
		{"never retries a server error", rpc.RetryPolicy{}, []error{&rpc.Error{Kind: rpc.KindServer, Status: rpc.StatusUnavailable}}, 1, nil},
		{"never retries a timeout", rpc.RetryPolicy{}, []error{&rpc.Error{Kind: rpc.KindTimeout}}, 1, nil},
		{"never retries a plain error", rpc.RetryPolicy{}, []error{errors.New("x")}, 1, nil},
		{"stops at MaxAttempts, back-off capped at Max",
			rpc.RetryPolicy{Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond, Multiplier: 3, MaxAttempts: 4},
			[]error{transport, transport, transport, transport, transport}, 4,
			[]time.Duration{50 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{}
			tc.policy.Clock = clock
			tc.policy.Rand = func() float64 { return 0 } // the lower bound: half the back-off
			var attempts int
			v, err := rpc.CallWithRetry(context.Background(), tc.policy, script(&attempts, tc.errs...))
			if attempts != tc.attempts {
				t.Fatalf("%d attempts, want %d", attempts, tc.attempts)
			}
			if want := len(tc.errs) < tc.attempts; (err == nil) != want || want && v != "ok" {
				t.Fatalf("result %q, %v", v, err)
			}
			if err != nil && err != tc.errs[attempts-1] {
				t.Fatalf("returned %v, want the last error %v", err, tc.errs[attempts-1])
			}
			if len(clock.waits) != len(tc.waits) {
				t.Fatalf("waits %v, want %v", clock.waits, tc.waits)
			}
			for i := range tc.waits {
				if clock.waits[i] != tc.waits[i] {
					t.Fatalf("waits %v, want %v", clock.waits, tc.waits)
				}
			}
		})
	}

	// Jitter stays within [back-off/2, back-off).
	clock := &fakeClock{}
	var attempts int
	_, _ = rpc.CallWithRetry(context.Background(), rpc.RetryPolicy{Clock: clock, Rand: func() float64 { return 0.999 }},
		script(&attempts, transport, transport, transport))
	if w := clock.waits; len(w) != 3 || w[0] < 9*time.Millisecond || w[0] >= 10*time.Millisecond || w[2] < 39*time.Millisecond || w[2] >= 40*time.Millisecond {
		t.Fatalf("jittered waits %v", w)
	}

	// The context ends during a back-off: the last error returns at once.
	clock = &fakeClock{hold: true}
	ctx, cancel := context.WithCancel(context.Background())
	attempts = 0
	done := make(chan error, 1)
	go func() {
		_, err := rpc.CallWithRetry(ctx, rpc.RetryPolicy{Clock: clock}, script(&attempts, transport, transport))
		done <- err
	}()
	cancel()
	if err := <-done; err != transport || attempts != 1 {
		t.Fatalf("cancelled during back-off: %v after %d attempts", err, attempts)
	}
}

func TestCircuitBreaker(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	b := rpc.NewCircuitBreaker(rpc.BreakerConfig{Failures: 3, Cooldown: 10 * time.Second, Clock: clock})
	step := func(what string, allow bool, state rpc.BreakerState) {
		t.Helper()
		if st := b.State(); st != state {
			t.Fatalf("%s: state %s, want %s", what, st, state)
		}
		if err := b.Allow(); (err == nil) != allow || err != nil && !errors.Is(err, rpc.ErrCircuitOpen) {
			t.Fatalf("%s: Allow = %v, want allowed %v", what, err, allow)
		}
	}
	step("new", true, rpc.BreakerClosed)
	b.Failure()
	b.Failure()
	b.Success() // resets the count
	b.Failure()
	b.Failure()
	step("2 consecutive failures", true, rpc.BreakerClosed)
	b.Failure()
	step("3 consecutive failures", false, rpc.BreakerOpen)
	clock.advance(9 * time.Second)
	step("during the cooldown", false, rpc.BreakerOpen)
	clock.advance(time.Second)
	step("cooldown over: the probe", true, rpc.BreakerHalfOpen)
	step("a second call while the probe is out", false, rpc.BreakerHalfOpen)
	b.Failure()
	step("failed probe re-opens", false, rpc.BreakerOpen)
	clock.advance(10 * time.Second)
	step("second probe", true, rpc.BreakerHalfOpen)
	clock.advance(10 * time.Second)
	step("a probe never reported is replaced after a cooldown", true, rpc.BreakerHalfOpen)
	b.Success()
	step("successful probe closes", true, rpc.BreakerClosed)
	b.Failure()
	b.Failure()
	step("the count restarted", true, rpc.BreakerClosed)

	if rpc.BreakerClosed.String() != "closed" || rpc.BreakerOpen.String() != "open" || rpc.BreakerHalfOpen.String() != "half-open" {
		t.Fatal("state names")
	}
}
