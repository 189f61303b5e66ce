package daemon

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/netmesh/netmesh/identity"
)

// senderKey names one sender of deliveries: a node and the incarnation
// of its runtime (random at each start), so a runtime that restarts is a
// new sender.
type senderKey struct {
	node identity.NodeID
	inc  uint64
}

func (k senderKey) compare(o senderKey) int {
	if c := bytes.Compare(k.node[:], o.node[:]); c != 0 {
		return c
	}
	return cmp.Compare(k.inc, o.inc)
}

// senderState is what a daemon remembers of one sender: the highest
// counter of its deliveries applied, and the sequence number at which it
// last delivered (for eviction).
type senderState struct {
	ctr  uint64
	used uint64
}

// senderTable is a daemon's deduplication table. A sender numbers its
// deliveries with an increasing counter and sends them to one daemon in
// that order, one batch at a time; so a delivery whose counter is not
// above the highest applied is a resend, and is not applied again. The
// table travels with the daemon (migrations, standbys), so a resend to
// the daemon's new node is recognised too. It holds at most maxSenders
// senders; the least recently seen are forgotten first (a resend from a
// sender idle through 4096 others would be applied again).
//
// It belongs to the daemon's goroutine (or to the transfer that
// restores it): no lock.
type senderTable struct {
	m map[senderKey]*senderState
}

func newSenderTable() *senderTable { return &senderTable{m: make(map[senderKey]*senderState)} }

// seen reports whether the delivery ctr of k was applied already.
func (t *senderTable) seen(k senderKey, ctr uint64) bool {
	s := t.m[k]
	return s != nil && ctr <= s.ctr
}

// record notes that the delivery ctr of k was applied at seq.
func (t *senderTable) record(k senderKey, ctr, seq uint64) {
	if s := t.m[k]; s != nil {
		s.ctr, s.used = max(s.ctr, ctr), seq
		return
	}
	if len(t.m) >= maxSenders {
		t.evict()
	}
	t.m[k] = &senderState{ctr: ctr, used: seq}
}

// evict forgets the least recently seen eighth of the senders: O(n log n)
// once every n/8 new senders.
func (t *senderTable) evict() {
	type kv struct {
		k senderKey
		s *senderState
	}
	all := make([]kv, 0, len(t.m))
	for k, s := range t.m {
		all = append(all, kv{k, s})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Compare(a.s.used, b.s.used) })
	for _, x := range all[:max(len(all)/8, 1)] {
		delete(t.m, x.k)
	}
}

// encode appends the table, senders sorted by key so that one table has
// one encoding.
func (t *senderTable) encode(e *encoder) {
	keys := make([]senderKey, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, senderKey.compare)
	e.Uvarint(uint64(len(keys)))
	for _, k := range keys {
		s := t.m[k]
		e.node(k.node)
		e.Uint64(k.inc)
		e.Uvarint(s.ctr)
		e.Uvarint(s.used)
	}
}

// decodeSenderTable reads what encode wrote; keys must be in increasing
// order.
func decodeSenderTable(d decoder) *senderTable {
	n := d.Count(maxSenders, "senders")
	t := &senderTable{m: make(map[senderKey]*senderState, n)}
	var prev senderKey
	for i := range n {
		k := senderKey{node: d.node(), inc: d.Uint64()}
		s := &senderState{ctr: d.Uvarint(), used: d.Uvarint()}
		if d.Err() != nil {
			return t
		}
		if i > 0 && k.compare(prev) <= 0 {
			d.Fail("senders out of order")
			return t
		}
		t.m[k], prev = s, k
	}
	return t
}
