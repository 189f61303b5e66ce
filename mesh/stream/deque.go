package stream

// deque is a ring-buffer double-ended queue. Its first element lives in
// the deque itself (most of a stream's queues never hold more than one:
// a small message's fragment, a reply waiting for Recv); past that it
// grows by doubling and never shrinks, so a steady state allocates
// nothing. A deque that holds elements must not be copied.
type deque[T any] struct {
	buf   []T // len is zero or a power of two
	head  int
	n     int
	first [1]T // buf's array until it grows
}

func (d *deque[T]) len() int { return d.n }

// at returns a pointer to the i-th element from the front; i < d.n.
func (d *deque[T]) at(i int) *T { return &d.buf[(d.head+i)&(len(d.buf)-1)] }

func (d *deque[T]) push(v T) {
	if d.n == len(d.buf) {
		d.grow()
	}
	d.buf[(d.head+d.n)&(len(d.buf)-1)] = v
	d.n++
}

// pop removes and returns the front element; d must not be empty.
func (d *deque[T]) pop() T {
	var zero T
	v := d.buf[d.head]
	d.buf[d.head] = zero // drop references for the GC
	d.head = (d.head + 1) & (len(d.buf) - 1)
	d.n--
	return v
}

// extend appends zero elements until d holds n.
func (d *deque[T]) extend(n int) {
	var zero T
	for d.n < n {
		d.push(zero)
	}
}

func (d *deque[T]) grow() {
	if d.buf == nil {
		d.buf = d.first[:]
		return
	}
	nb := make([]T, max(8, 2*len(d.buf)))
	for i := range d.n {
		nb[i] = *d.at(i)
	}
	clear(d.first[:]) // drop references for the GC
	d.buf, d.head = nb, 0
}
