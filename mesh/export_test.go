package mesh

// RekeyNow starts a handshake with p now, as the timer loop does when p's
// session is due for a rekey, and returns a channel that is closed when it
// ends. Tests use it to make two nodes' rekeys cross. It returns nil if a
// handshake with p is already under way.
func (m *Mesh) RekeyNow(p *Peer) <-chan struct{} {
	m.tr.hs.mu.Lock()
	defer m.tr.hs.mu.Unlock()
	if p.dial != nil || p.ep.Load() == nil {
		return nil
	}
	m.tr.redialLocked(p)
	if p.dial == nil {
		return nil // it failed at once
	}
	return p.dial.done
}

// RaceEnabled reports whether the race detector is on: allocation tests
// skip under it, since sync.Pool drops items at random there.
const RaceEnabled = raceEnabled

// Leaving reports whether Leave has begun on m.
func (m *Mesh) Leaving() bool { return m.tr.leaving.Load() }

// RefuseAESGCM makes m answer as a node without AES instructions does:
// it drops AES-GCM initiations.
func (m *Mesh) RefuseAESGCM(refuse bool) { m.tr.refuseAESGCM.Store(refuse) }
