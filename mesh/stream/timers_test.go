package stream

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The timer heap against a brute-force model: random arms (earlier and
// later deadlines), removals and due pops.
func TestTimerHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h timerHeap
	streams := make([]*Stream, 64)
	for i := range streams {
		streams[i] = &Stream{key: uint32(i)}
	}
	model := map[*Stream]int64{} // filed deadline of each stream in the heap
	for step := range 20000 {
		s := streams[r.IntN(len(streams))]
		switch r.IntN(4) {
		case 0, 1:
			d := r.Int64N(1000) + 1
			first := h.arm(s, d)
			old, ok := model[s]
			moved := !ok || d < old
			if moved {
				model[s] = d
			}
			if first != (moved && h[0] == s) {
				t.Fatalf("step %d: arm reported first=%v", step, first)
			}
		case 2:
			h.remove(s)
			delete(model, s)
		case 3:
			now := r.Int64N(1000)
			due := h.popDue(now, nil)
			var want []*Stream
			for s, d := range model {
				if d <= now {
					want = append(want, s)
					delete(model, s)
				}
			}
			for i := 1; i < len(due); i++ {
				if due[i-1].wakeAt > due[i].wakeAt {
					t.Fatalf("step %d: due out of order", step)
				}
			}
			byKey := func(a, b *Stream) int { return int(a.key) - int(b.key) }
			slices.SortFunc(due, byKey)
			slices.SortFunc(want, byKey)
			if !slices.Equal(due, want) {
				t.Fatalf("step %d: popDue(%d) = %d streams, want %d", step, now, len(due), len(want))
			}
		}
		if len(h) != len(model) {
			t.Fatalf("step %d: heap holds %d, model %d", step, len(h), len(model))
		}
		for i, s := range h {
			if s.heapPos != i+1 || s.wakeAt != model[s] {
				t.Fatalf("step %d: stream %d at %d filed %d, want pos %d deadline %d", step, s.key, s.heapPos, s.wakeAt, i+1, model[s])
			}
			if p := (i - 1) / 2; i > 0 && h[p].wakeAt > s.wakeAt {
				t.Fatalf("step %d: heap order broken at %d", step, i)
			}
		}
	}
}
