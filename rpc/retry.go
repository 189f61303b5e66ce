package rpc

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// Clock is the time source of RetryPolicy and CircuitBreaker; tests
// inject a fake one. Nil means the system clock.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// systemClock is the real time.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RetryPolicy configures CallWithRetry. The zero value retries 5 attempts
// in all with back-off 10 ms, 20 ms, 40 ms, ... capped at 1 s.
type RetryPolicy struct {
	// Initial is the back-off before the second attempt. 0 means
	// DefaultRetryInitial.
	Initial time.Duration
	// Max caps the back-off. 0 means DefaultRetryMax.
	Max time.Duration
	// Multiplier grows the back-off after each attempt. 0 means 2.
	Multiplier float64
	// MaxAttempts bounds the attempts, the first included. 0 means
	// DefaultRetryAttempts.
	MaxAttempts int
	// Clock times the back-off. Nil means the system clock.
	Clock Clock
	// Rand returns a uniform number in [0, 1) for the jitter. Nil means
	// math/rand/v2.
	Rand func() float64
}

// Retryable reports whether CallWithRetry retries after err: an *Error of
// kind KindNoRoute or KindTransport. Server errors, timeouts,
// cancellations and codec errors are never retried: the server answered,
// or the caller's time is up.
func Retryable(err error) bool {
	var re *Error
	return errors.As(err, &re) && (re.Kind == KindNoRoute || re.Kind == KindTransport)
}

// CallWithRetry runs call until it succeeds, fails with an error that is
// not Retryable, the policy's attempts run out, or ctx ends; it returns
// the last result. Between attempts it waits an exponential back-off with
// jitter: a uniform time between half the back-off and the whole of it,
// so competing callers spread out yet every wait grows. call is any call
// of this package, for example
//
//	resp, err := rpc.CallWithRetry(ctx, rpc.RetryPolicy{}, func(ctx context.Context) ([]byte, error) {
//		return c.Call(ctx, node, "echo", req)
//	})
func CallWithRetry[T any](ctx context.Context, p RetryPolicy, call func(ctx context.Context) (T, error)) (T, error) {
	if p.Initial <= 0 {
		p.Initial = DefaultRetryInitial
	}
	if p.Max <= 0 {
		p.Max = DefaultRetryMax
	}
	if p.Multiplier <= 0 {
		p.Multiplier = 2
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultRetryAttempts
	}
	if p.Clock == nil {
		p.Clock = systemClock{}
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	backoff := p.Initial
	for attempt := 1; ; attempt++ {
		v, err := call(ctx)
		if err == nil || !Retryable(err) || attempt >= p.MaxAttempts {
			return v, err
		}
		wait := backoff/2 + time.Duration(p.Rand()*float64(backoff/2))
		select {
		case <-p.Clock.After(wait):
		case <-ctx.Done():
			return v, err
		}
		backoff = min(time.Duration(float64(backoff)*p.Multiplier), p.Max)
	}
}

// BreakerConfig configures a CircuitBreaker. The zero value opens after
// DefaultBreakerFailures consecutive failures for DefaultBreakerCooldown.
type BreakerConfig struct {
	// Failures is the number of consecutive failures that opens the
	// breaker. 0 means DefaultBreakerFailures.
	Failures int
	// Cooldown is how long the breaker stays open before it lets one probe
	// through. 0 means DefaultBreakerCooldown.
	Cooldown time.Duration
	// Clock is the time source. Nil means the system clock.
	Clock Clock
}

// BreakerState is the state of a CircuitBreaker.
type BreakerState uint8

// Breaker states.
const (
	// BreakerClosed: calls go through; consecutive failures are counted.
	BreakerClosed BreakerState = iota
	// BreakerOpen: calls are refused until the cooldown has passed.
	BreakerOpen
	// BreakerHalfOpen: the cooldown passed; one probe call goes through,
	// and its outcome closes or re-opens the breaker.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	}
	return "half-open"
}

// CircuitBreaker stops calls to a failing node for a while. Its state
// machine:
//
//	closed    --Failures consecutive Failure()-->  open
//	open      --Cooldown passed, Allow()------->   half-open (that call is the probe)
//	half-open --Success()--> closed;  --Failure()--> open (cooldown again)
//
// While a probe is out, Allow refuses other calls; a probe whose outcome
// is never reported (a cancelled call) is replaced by a new one after
// another Cooldown. Success in the closed state resets the failure count.
// A Client keeps one per node; it reports no route, transport errors,
// timeouts and StatusUnavailable as failures, any other answer of the
// server as success, and nothing for a cancelled call. Safe for
// concurrent use.
type CircuitBreaker struct {
	cfg BreakerConfig

	mu       sync.Mutex
	state    BreakerState
	failures int       // consecutive, while closed
	since    time.Time // closed: the last failure counted; open: when it opened; half-open: when the probe started
}

// NewCircuitBreaker returns a closed breaker.
func NewCircuitBreaker(cfg BreakerConfig) *CircuitBreaker {
	if cfg.Failures <= 0 {
		cfg.Failures = DefaultBreakerFailures
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultBreakerCooldown
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	return &CircuitBreaker{cfg: cfg}
}

// Allow reports whether a call may go now: nil, or ErrCircuitOpen. When
// it lets the half-open probe through, the caller must report the outcome
// with Success or Failure.
func (b *CircuitBreaker) Allow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerClosed {
		return nil
	}
	now := b.cfg.Clock.Now()
	if now.Sub(b.since) < b.cfg.Cooldown {
		return ErrCircuitOpen
	}
	b.state, b.since = BreakerHalfOpen, now
	return nil
}

// ready reports whether Allow would let a call through, without taking
// the probe.
func (b *CircuitBreaker) ready() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == BreakerClosed || b.cfg.Clock.Now().Sub(b.since) >= b.cfg.Cooldown
}

// Success reports a call that succeeded: it closes the breaker.
func (b *CircuitBreaker) Success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state, b.failures = BreakerClosed, 0
}

// Failure reports a call that failed: it counts towards opening a closed
// breaker and re-opens a half-open one.
func (b *CircuitBreaker) Failure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		b.since = b.cfg.Clock.Now()
		if b.failures++; b.failures >= b.cfg.Failures {
			b.state, b.failures = BreakerOpen, 0
		}
	case BreakerHalfOpen:
		b.state, b.since = BreakerOpen, b.cfg.Clock.Now()
	}
}

// State returns the breaker's state: BreakerOpen while the cooldown runs,
// BreakerHalfOpen once a probe may go or is out.
func (b *CircuitBreaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerOpen && b.cfg.Clock.Now().Sub(b.since) >= b.cfg.Cooldown {
		return BreakerHalfOpen
	}
	return b.state
}

// forgettable reports whether a Client may forget the breaker's node (when
// no call to it is in flight): the breaker holds no failure, so a fresh
// one is the same; or its last failure or probe is more than Cooldown
// plus breakerMemory old, so all it still decides is that the next call
// goes alone as a probe.
func (b *CircuitBreaker) forgettable(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerClosed && b.failures == 0 {
		return true
	}
	age := now.Sub(b.since)
	return age >= b.cfg.Cooldown && age-b.cfg.Cooldown >= breakerMemory // no overflow with a huge Cooldown
}
