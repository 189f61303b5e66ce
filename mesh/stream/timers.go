package stream

// timerHeap orders the streams with an armed deadline by their earliest
// one, so the timer goroutine touches only streams that are due: a Mux
// with thousands of idle streams pays nothing for them. It is intrusive:
// each Stream records its position (heapPos, 1-based; 0 when absent) and
// the deadline it is filed under (wakeAt).
//
// A stream's wakeAt may be earlier than its real next deadline (a
// deadline was pushed back, say, after an ACK): it then wakes early,
// finds nothing due, and is filed again under the real one. Moving a
// deadline earlier always sifts the stream up at once.
type timerHeap []*Stream

// arm files s under deadline, or moves it up if deadline is earlier than
// the one it is filed under. It reports whether that made deadline the
// heap's earliest: only then must the timer goroutine wake sooner.
func (h *timerHeap) arm(s *Stream, deadline int64) bool {
	if s.heapPos == 0 {
		*h = append(*h, s)
		s.heapPos = len(*h)
		s.wakeAt = deadline
	} else if deadline < s.wakeAt {
		s.wakeAt = deadline
	} else {
		return false
	}
	return h.up(s.heapPos-1) == 0
}

// remove takes s out of the heap, if it is in it.
func (h *timerHeap) remove(s *Stream) {
	i := s.heapPos - 1
	if i < 0 {
		return
	}
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	s.heapPos = 0
	if i != last {
		h.down(h.up(i))
	}
}

// popDue removes every stream due at now and appends it to due.
func (h *timerHeap) popDue(now int64, due []*Stream) []*Stream {
	for len(*h) > 0 && (*h)[0].wakeAt <= now {
		s := (*h)[0]
		h.remove(s)
		due = append(due, s)
	}
	return due
}

// next is the earliest deadline filed, or 0.
func (h timerHeap) next() int64 {
	if len(h) == 0 {
		return 0
	}
	return h[0].wakeAt
}

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapPos = i + 1
	h[j].heapPos = j + 1
}

// up sifts element i toward the root and returns where it stopped.
func (h timerHeap) up(i int) int {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].wakeAt <= h[i].wakeAt {
			break
		}
		h.swap(i, p)
		i = p
	}
	return i
}

// down sifts element i toward the leaves.
func (h timerHeap) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if r := c + 1; r < len(h) && h[r].wakeAt < h[c].wakeAt {
			c = r
		}
		if h[i].wakeAt <= h[c].wakeAt {
			return
		}
		h.swap(i, c)
		i = c
	}
}
