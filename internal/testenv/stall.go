package testenv

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// StallContext returns a context that is cancelled when progress has not
// moved for idle, or when t ends. A test that moves a lot of data under
// -race takes seconds on a quiet machine and minutes on a starved one;
// with it, the test fails when its work stops, not when a budget for the
// whole of it runs out.
func StallContext(t testing.TB, progress *atomic.Int64, idle time.Duration) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		tick := time.NewTicker(idle / 10)
		defer tick.Stop()
		last, since := progress.Load(), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if p := progress.Load(); p != last {
					last, since = p, now
				} else if now.Sub(since) > idle {
					cancel()
					return
				}
			}
		}
	}()
	return ctx
}
