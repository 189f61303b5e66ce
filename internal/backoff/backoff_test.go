package backoff

import (
	"context"
	"testing"
	"time"
)

func TestJitterBounds(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 4, time.Second} {
		for range 1000 {
			if j := Jitter(d); j < d*3/4 || j > d*5/4 {
				t.Fatalf("Jitter(%v) = %v, outside ±25%%", d, j)
			}
		}
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on an ended context reported it live")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep on a live context reported it ended")
	}
}
