package capability

import (
	"maps"
	"math/bits"
	"slices"
)

// postings maps tags (or numeric metadata keys) to their postings. Go
// maps keep their size when entries are deleted, so once fewer than a
// quarter of its peak entries remain the map is copied into a smaller one:
// a flood of distinct keys leaves no memory behind once its nodes are gone.
type postings struct {
	m       map[string]posting
	peak    int  // most entries since the map was made
	numeric bool // numeric keys: postings keep values
}

// minShrinkEntries is the smallest peak worth shrinking from: below it the
// map is small anyway.
const minShrinkEntries = 1024

// add makes slot s a member of k's posting with value v. span is the
// index's number of slots.
func (ps *postings) add(k string, s int, v float64, span int) {
	if ps.m == nil {
		ps.m = make(map[string]posting)
	}
	p := ps.m[k]
	p.add(s, v, ps.numeric, span)
	ps.m[k] = p
	ps.peak = max(ps.peak, len(ps.m))
}

// remove drops slot s from k's posting, and the posting once it has no
// member left.
func (ps *postings) remove(k string, s int) {
	p := ps.m[k]
	if p.remove(s, ps.numeric); p.n > 0 {
		ps.m[k] = p
		return
	}
	delete(ps.m, k)
	if ps.peak >= minShrinkEntries && len(ps.m) < ps.peak/4 {
		m := make(map[string]posting, len(ps.m))
		maps.Copy(m, ps.m)
		ps.m, ps.peak = m, len(m)
	}
}

// posting is the index slots that carry one tag, or one numeric metadata
// key together with each slot's value. The index keeps postings by value
// in its maps, and a posting with one member holds it inline: a key that
// one node announces costs its map entry and nothing else. Beyond one
// member it keeps a list, in whichever of two forms costs less memory (see
// postingList), so the index's memory grows linearly with what its nodes
// announce however many distinct keys they use.
type posting struct {
	n    int32
	one  uint32       // the member, while rest is nil
	oneV float64      // its value (numeric keys)
	rest *postingList // the members when there are more than one
}

// postingList holds the members of a posting with more than one, sparse
// or dense:
//
//   - sparse: a list of slots (and the values in step), while few slots
//     carry the key;
//   - dense: a bitset over slots (and the values by slot), once that is
//     no larger than the list (for numeric keys: than numericDenseBias
//     times the list).
//
// It goes dense when the dense form would be no larger than the list (times
// the bias), and back to sparse when it is more than twice that: at most
// twice the list's memory (times the bias), and no flapping between the
// forms at the boundary.
type postingList struct {
	slots []uint32  // sparse form: the members, unordered; nil when dense
	bits  bitset    // dense form: the members; nil when sparse
	vals  []float64 // numeric keys: values in step with slots, or by slot
}

// Bytes per member and per slot of the two list forms, for choosing
// between them.
const (
	sparseTagBytes = 4     // a uint32 slot
	sparseNumBytes = 4 + 8 // and a float64 value
	denseNumBytes  = 8     // a float64 per slot, beside the bit
)

// numericDenseBias makes numeric postings go dense at a quarter of the
// density where the two forms cost the same memory (at 17 % of the slots
// instead of 68 %): filtering a bitset with a value column is faster than
// scanning a list of values (BenchmarkFindNodes, a numeric key on 20 % of
// 10,000 nodes: p50 7.5 against 8.7 µs), and a quarter keeps memory at most
// 96 bytes per member, still linear.
const numericDenseBias = 4

// sparseCost and denseCost are the memory of each form, in bits so the
// dense form's one bit per slot is exact; sparseCost is weighted by
// numericDenseBias for numeric keys, for choosing the form.
func sparseCost(n int, numeric bool) int {
	if numeric {
		return n * sparseNumBytes * 8 * numericDenseBias
	}
	return n * sparseTagBytes * 8
}

func denseCost(slots int, numeric bool) int {
	if numeric {
		return slots * (1 + denseNumBytes*8)
	}
	return slots
}

// add makes slot s a member with value v (ignored unless numeric). span is
// the number of slots the index has, which bounds the dense form's size.
func (p *posting) add(s int, v float64, numeric bool, span int) {
	switch {
	case p.n == 0:
		p.one, p.oneV = uint32(s), v
	case p.rest == nil:
		p.rest = &postingList{slots: []uint32{p.one}}
		if numeric {
			p.rest.vals = []float64{p.oneV}
		}
		fallthrough
	default:
		p.rest.add(s, v, numeric, span, int(p.n)+1)
	}
	p.n++
}

// remove drops member s. A posting left with no member is for the caller
// to drop.
func (p *posting) remove(s int, numeric bool) {
	p.n--
	if p.rest == nil {
		return
	}
	p.rest.remove(s, numeric, int(p.n))
	if p.n == 1 {
		p.rest.each(func(s uint32, v float64) { p.one, p.oneV = s, v }, numeric)
		p.rest = nil
	}
}

// and returns the members of u that are in p. The result may be nil
// (empty) and never aliases u.
func (p *posting) and(u bitset) bitset {
	if p.rest == nil {
		return single(u, p.one, u.has(p.one))
	}
	l := p.rest
	if l.bits != nil {
		return u.and(l.bits)
	}
	var r bitset
	for _, s := range l.slots {
		if u.has(s) {
			if r == nil {
				r = make(bitset, len(u))
			}
			r[s/64] |= 1 << (s % 64)
		}
	}
	return r
}

// where returns the members of u that are in p with a value of at least x
// (atLeast) or at most x (!atLeast). The result may be nil (empty) and
// never aliases u.
func (p *posting) where(u bitset, atLeast bool, x float64) bitset {
	keep := func(v float64) bool { return atLeast && v >= x || !atLeast && v <= x }
	if p.rest == nil {
		return single(u, p.one, keep(p.oneV) && u.has(p.one))
	}
	l := p.rest
	if l.bits != nil {
		m := u.and(l.bits)
		if atLeast {
			return m.filterInPlace(func(s int) bool { return l.vals[s] >= x })
		}
		return m.filterInPlace(func(s int) bool { return l.vals[s] <= x })
	}
	// Whether a value passes is a coin toss for the branch predictor, so
	// the bits are gathered without branching on it, a word at a time in
	// a register (slots mostly come in ascending order), then ANDed with
	// u word by word.
	r := make(bitset, len(u))
	w, acc := -1, uint64(0)
	for i, s := range l.slots {
		if int(s/64) != w {
			if w >= 0 && w < len(r) {
				r[w] |= acc
			}
			w, acc = int(s/64), 0
		}
		acc |= passes(l.vals[i], atLeast, x) << (s % 64)
	}
	if w >= 0 && w < len(r) {
		r[w] |= acc
	}
	for i := range r {
		r[i] &= u[i]
	}
	return r
}

// passes is 1 if v is at least x (atLeast) or at most x (!atLeast), else
// 0, computed without a branch on v.
func passes(v float64, atLeast bool, x float64) uint64 {
	lo, hi := x, v
	if !atLeast {
		lo, hi = v, x
	}
	var in uint64
	if hi >= lo {
		in = 1
	}
	return in
}

// single returns a bitset as long as u holding only s if in, else nil.
func single(u bitset, s uint32, in bool) bitset {
	if !in {
		return nil
	}
	r := make(bitset, len(u))
	r[s/64] |= 1 << (s % 64)
	return r
}

// add makes slot s a member; n is the member count after it.
func (l *postingList) add(s int, v float64, numeric bool, span, n int) {
	if l.bits == nil {
		l.slots = append(l.slots, uint32(s))
		if numeric {
			l.vals = append(l.vals, v)
		}
		if denseCost(span, numeric) <= sparseCost(n, numeric) {
			l.densify(numeric)
		}
		return
	}
	l.bits = l.bits.set(s)
	if numeric {
		if s >= len(l.vals) {
			l.vals = append(l.vals, make([]float64, s+1-len(l.vals))...)
		}
		l.vals[s] = v
	}
}

// remove drops member s; n is the member count after it.
func (l *postingList) remove(s int, numeric bool, n int) {
	if l.bits == nil {
		i := slices.Index(l.slots, uint32(s))
		last := len(l.slots) - 1
		l.slots[i] = l.slots[last]
		l.slots = l.slots[:last]
		if numeric {
			l.vals[i] = l.vals[last]
			l.vals = l.vals[:last]
		}
		// Give back the memory of a list that shrank to a quarter of
		// what it held.
		if c := cap(l.slots); c > 8 && len(l.slots) < c/4 {
			l.slots = slices.Clip(slices.Clone(l.slots))
			if numeric {
				l.vals = slices.Clip(slices.Clone(l.vals))
			}
		}
		return
	}
	l.bits.clear(s)
	if denseCost(len(l.bits)*64, numeric) > 2*sparseCost(n, numeric) {
		l.sparsify(numeric, n)
	}
}

// each calls f with every member and its value (0 unless numeric).
func (l *postingList) each(f func(s uint32, v float64), numeric bool) {
	if l.bits == nil {
		for i, s := range l.slots {
			v := 0.0
			if numeric {
				v = l.vals[i]
			}
			f(s, v)
		}
		return
	}
	l.bits.each(func(s int) {
		v := 0.0
		if numeric {
			v = l.vals[s]
		}
		f(uint32(s), v)
	})
}

// densify turns a sparse list dense.
func (l *postingList) densify(numeric bool) {
	hi := int(slices.Max(l.slots))
	d := postingList{bits: make(bitset, hi/64+1)}
	if numeric {
		d.vals = make([]float64, hi+1)
	}
	l.each(func(s uint32, v float64) {
		d.bits[s/64] |= 1 << (s % 64)
		if numeric {
			d.vals[s] = v
		}
	}, numeric)
	*l = d
}

// sparsify turns a dense list of n members sparse.
func (l *postingList) sparsify(numeric bool, n int) {
	d := postingList{slots: make([]uint32, 0, n)}
	if numeric {
		d.vals = make([]float64, 0, n)
	}
	l.each(func(s uint32, v float64) {
		d.slots = append(d.slots, s)
		if numeric {
			d.vals = append(d.vals, v)
		}
	}, numeric)
	*l = d
}

// bitset is a set of slots. A nil bitset is empty; words beyond the end are
// zero.
type bitset []uint64

func (b bitset) set(i int) bitset {
	for len(b) <= i/64 {
		b = append(b, 0)
	}
	b[i/64] |= 1 << (i % 64)
	return b
}

func (b bitset) clear(i int) {
	if i/64 < len(b) {
		b[i/64] &^= 1 << (i % 64)
	}
}

func (b bitset) has(i uint32) bool {
	return int(i/64) < len(b) && b[i/64]&(1<<(i%64)) != 0
}

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

// each calls f for every member, in ascending order.
func (b bitset) each(f func(int)) {
	for w, word := range b {
		for word != 0 {
			i := bits.TrailingZeros64(word)
			word &= word - 1
			f(w*64 + i)
		}
	}
}

func (b bitset) and(c bitset) bitset {
	r := make(bitset, min(len(b), len(c)))
	for i := range r {
		r[i] = b[i] & c[i]
	}
	return r
}

func (b bitset) andNot(c bitset) bitset {
	r := make(bitset, len(b))
	for i := range r {
		r[i] = b[i]
		if i < len(c) {
			r[i] &^= c[i]
		}
	}
	return r
}

func (b bitset) or(c bitset) bitset {
	if len(b) < len(c) {
		b, c = c, b
	}
	r := make(bitset, len(b))
	copy(r, b)
	for i, w := range c {
		r[i] |= w
	}
	return r
}

// filter returns the members of b for which keep is true.
func (b bitset) filter(keep func(int) bool) bitset {
	r := make(bitset, len(b))
	copy(r, b)
	return r.filterInPlace(keep)
}

// filterInPlace clears the members of b for which keep is false.
func (b bitset) filterInPlace(keep func(int) bool) bitset {
	for w, word := range b {
		for m := word; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			if !keep(w*64 + i) {
				b[w] &^= 1 << i
			}
		}
	}
	return b
}
