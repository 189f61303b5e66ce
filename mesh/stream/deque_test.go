package stream

import (
	"math/rand/v2"
	"testing"
)

// A deque keeps order through its first, inline element, growth and
// wrap-around, checked against a slice.
func TestDequeOrder(t *testing.T) {
	var d deque[int]
	var model []int
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 10000 {
		if len(model) == 0 || r.IntN(3) > 0 {
			d.push(i)
			model = append(model, i)
		} else {
			if got := d.pop(); got != model[0] {
				t.Fatalf("step %d: popped %d, want %d", i, got, model[0])
			}
			model = model[1:]
		}
		if d.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", i, d.len(), len(model))
		}
		for j, v := range model {
			if *d.at(j) != v {
				t.Fatalf("step %d: at(%d) = %d, want %d", i, j, *d.at(j), v)
			}
		}
	}
}

// A new deque that never holds more than one element allocates nothing.
func TestDequeOneAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	var d deque[*msgBuf]
	mb := new(msgBuf)
	if a := testing.AllocsPerRun(100, func() {
		d = deque[*msgBuf]{}
		d.push(mb)
		d.pop()
	}); a != 0 {
		t.Fatalf("push and pop of one element: %v allocs, want 0", a)
	}
}
