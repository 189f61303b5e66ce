package mesh

import "sync"

// indexTable maps this node's receiver indexes to their sessions. It has
// a lock of its own, held for one map operation at a time, so that the
// data path finds a packet's session without the node's lock, which the
// timer loop and the handshake code hold for longer (wireguard-go keeps
// its index table apart for the same reason). Entries are added and
// removed under m.mu as well, so code holding m.mu sees a stable table.
type indexTable struct {
	mu sync.RWMutex
	m  map[uint32]*session
}

func newIndexTable() *indexTable {
	return &indexTable{m: make(map[uint32]*session)}
}

// get returns the session with receiver index i, or nil.
func (t *indexTable) get(i uint32) *session {
	t.mu.RLock()
	s := t.m[i]
	t.mu.RUnlock()
	return s
}

// put adds s under its receiver index.
func (t *indexTable) put(s *session) {
	t.mu.Lock()
	t.m[s.local] = s
	t.mu.Unlock()
}

// del forgets receiver index i.
func (t *indexTable) del(i uint32) {
	t.mu.Lock()
	delete(t.m, i)
	t.mu.Unlock()
}
