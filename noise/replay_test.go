package noise

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func TestReplayWindow(t *testing.T) {
	const W = ReplayWindowSize
	type step struct {
		counter uint64
		want    bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{0, true}, {1, true}, {2, true}, {3, true}}},
		{"counter 0 once", []step{{0, true}, {0, false}}},
		{"counter 0 after others", []step{{5, true}, {0, true}, {0, false}}},
		{"duplicate", []step{{1, true}, {2, true}, {1, false}, {2, false}}},
		{"out of order within window", []step{{100, true}, {50, true}, {99, true}, {1, true}, {50, false}, {101, true}}},
		{"boundary at window size", []step{{W + 10, true}, {10, false}, {11, true}, {11, false}}},
		{"too old", []step{{5 * W, true}, {W, false}, {0, false}}},
		{"far future jump slides the window", []step{{1, true}, {2, true}, {1 << 40, true}, {2, false}, {1<<40 - 1, true}, {1 << 40, false}, {1<<40 - W + 1, true}, {1<<40 - W, false}}},
		{"jump of exactly one ring", []step{{64, true}, {64 + replayBlocks*64, true}, {64 + replayBlocks*64 - 1, true}, {64 + replayBlocks*64 - W + 1, true}, {64 + replayBlocks*64 - W, false}}},
		{"bits of the previous lap are cleared", []step{{10, true}, {replayBlocks*64 + 10, true}, {replayBlocks*64 + 10, false}, {replayBlocks*64 + 9, true}, {10, false}}},
		{"limit", []step{{RejectAfterMessages - 1, true}, {RejectAfterMessages, false}, {1<<64 - 1, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w ReplayWindow
			for i, s := range tc.steps {
				if got := w.Check(s.counter); got != s.want {
					t.Fatalf("step %d: Check(%d) = %v, want %v", i, s.counter, got, s.want)
				}
				if got := w.Accept(s.counter); got != s.want {
					t.Fatalf("step %d: Accept(%d) = %v, want %v", i, s.counter, got, s.want)
				}
			}
			w.Reset()
			if s := tc.steps[0]; w.Accept(s.counter) != s.want {
				t.Fatalf("after Reset: Accept(%d) != %v", s.counter, s.want)
			}
		})
	}
}

// TestReplayWindowConcurrent has workers race to accept the same counters,
// out of order: each counter must be accepted exactly once.
func TestReplayWindowConcurrent(t *testing.T) {
	const n = 4000
	var w ReplayWindow
	var accepted [n]atomic.Int32
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range n {
				c := uint64(i)
				if g%2 == 1 {
					c = n - 1 - c
				}
				if w.Check(c) && w.Accept(c) {
					accepted[c].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for c := range accepted {
		if got := accepted[c].Load(); got != 1 {
			t.Fatalf("counter %d accepted %d times", c, got)
		}
	}
}

// TestReplayWindowModel compares the window with a map of every counter
// seen, on random counters that drift upward with reordering and jumps.
func TestReplayWindowModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var w ReplayWindow
	seen := map[uint64]bool{}
	var top uint64
	for i := range 200000 {
		var c uint64
		switch r := rng.IntN(100); {
		case r < 2:
			c = top + uint64(rng.IntN(3*ReplayWindowSize)) // jump ahead
		case top < 2*ReplayWindowSize:
			c = uint64(rng.IntN(2 * ReplayWindowSize))
		default:
			c = top - ReplayWindowSize - 64 + uint64(rng.IntN(ReplayWindowSize+128))
		}
		want := !seen[c] && (len(seen) == 0 || c > top || top-c < ReplayWindowSize)
		if got := w.Accept(c); got != want {
			t.Fatalf("step %d: Accept(%d) with top %d = %v, want %v", i, c, top, got, want)
		}
		if want {
			seen[c] = true
			top = max(top, c)
		}
	}
}
