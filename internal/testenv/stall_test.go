package testenv

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestStallContext: the context lives while progress moves, and ends
// once progress stops. The idle time is far longer than the steps, so
// that only a machine stalled for seconds could fail the first half.
func TestStallContext(t *testing.T) {
	var progress atomic.Int64
	idle := 2 * time.Second
	ctx := StallContext(t, &progress, idle)
	for range 100 {
		progress.Add(1)
		if ctx.Err() != nil {
			t.Fatal("cancelled while progress moved")
		}
		time.Sleep(idle / 200)
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
		t.Fatal("not cancelled after progress stopped")
	}
}
