package mesh

import "sync"

// sessionIndex finds a session by the receiver index a data packet
// carries. It has a lock of its own so that the data path, which
// read-locks it once per packet, never waits on handshakes or timers
// (which write-lock it only to add or forget a session).
type sessionIndex struct {
	mu sync.RWMutex
	m  map[uint32]*session
}

func (x *sessionIndex) init() { x.m = make(map[uint32]*session) }

// get returns the session with receiver index i, or nil.
func (x *sessionIndex) get(i uint32) *session {
	x.mu.RLock()
	s := x.m[i]
	x.mu.RUnlock()
	return s
}

// has reports whether receiver index i is taken.
func (x *sessionIndex) has(i uint32) bool { return x.get(i) != nil }

// add files s under its receiver index.
func (x *sessionIndex) add(s *session) {
	x.mu.Lock()
	x.m[s.local] = s
	x.mu.Unlock()
}

// remove forgets s, if it is still filed.
func (x *sessionIndex) remove(s *session) {
	x.mu.Lock()
	if x.m[s.local] == s {
		delete(x.m, s.local)
	}
	x.mu.Unlock()
}
