// Package backoff holds the two pieces of a retry loop that the library's
// background loops (bootstrap peers, mDNS browsing) share: jitter, so
// that nodes started together do not act in step, and a sleep that ends
// with its context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter returns d ±25%, uniformly.
func Jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// Sleep waits for d and reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
