package stream

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds SendWithRetry. The zero value retries with the
// documented defaults until ctx ends.
type RetryPolicy struct {
	// Initial is the first back-off. 0 means 1 ms.
	Initial time.Duration
	// Max caps the back-off. 0 means 100 ms.
	Max time.Duration
	// Multiplier grows the back-off after each attempt. 0 means 2.
	Multiplier float64
	// MaxAttempts bounds the Send attempts; 0 means no bound but ctx.
	MaxAttempts int
}

// SendWithRetry calls Send until it succeeds, fails with an error other
// than ErrBackpressure, ctx ends, or the policy's attempts run out (then
// it returns ErrBackpressure). Between attempts it sleeps an exponential
// back-off with full jitter (a uniform fraction of the back-off, so
// competing senders do not retry in lockstep).
func (s *Stream) SendWithRetry(ctx context.Context, msg []byte, p RetryPolicy) error {
	backoff := orDefault(p.Initial, time.Millisecond)
	maxBackoff := orDefault(p.Max, 100*time.Millisecond)
	mult := p.Multiplier
	if mult <= 1 {
		mult = 2
	}
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for attempt := 1; ; attempt++ {
		err := s.Send(ctx, msg)
		if !errors.Is(err, ErrBackpressure) {
			return err
		}
		if p.MaxAttempts > 0 && attempt >= p.MaxAttempts {
			return err
		}
		d := time.Duration(rand.Int64N(int64(backoff)) + 1)
		if t == nil {
			t = time.NewTimer(d)
		} else {
			t.Reset(d)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(time.Duration(float64(backoff)*mult), maxBackoff)
	}
}
