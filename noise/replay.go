package noise

import "sync"

// ReplayWindow rejects duplicate and stale message counters (RFC 6479): a
// ring of 64-bit words holds one bit per counter for the last
// ReplayWindowSize counters below the highest one accepted. A counter is
// accepted once if it is above the highest seen, or within the window and
// not seen yet. Counters >= RejectAfterMessages are never accepted.
//
// Use it in two steps: Check before decrypting (cheap, drops replays before
// any crypto) and Accept only after the tag verifies, so forged packets
// cannot move the window.
//
// The zero value is an empty window. It is safe for concurrent use, so
// several receive workers can open one session's packets in parallel; each
// call holds an internal lock for a few nanoseconds. It must not be copied
// after first use.
type ReplayWindow struct {
	mu sync.Mutex
	// next is the highest accepted counter plus one; 0 means none yet.
	next uint64
	ring [replayBlocks]uint64
}

// Check reports whether counter would be accepted now. It does not change
// the window.
func (w *ReplayWindow) Check(counter uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.checkLocked(counter)
}

// Accept marks counter as seen and reports whether it was accepted. It
// returns false if the counter is outside the window or was accepted
// already, for instance by another worker since Check.
func (w *ReplayWindow) Accept(counter uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.checkLocked(counter) {
		return false
	}
	block := counter / 64
	if counter >= w.next {
		if w.next > 0 {
			// Clear the words the window slides over; a jump of a full ring
			// or more clears them all.
			top := (w.next - 1) / 64
			for i := top + 1; i <= block && i-top <= replayBlocks; i++ {
				w.ring[i%replayBlocks] = 0
			}
		}
		w.next = counter + 1
	}
	w.ring[block%replayBlocks] |= 1 << (counter % 64)
	return true
}

// Reset empties the window, for a new session key.
func (w *ReplayWindow) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next = 0
	w.ring = [replayBlocks]uint64{}
}

// checkLocked is Check; the caller holds w.mu.
func (w *ReplayWindow) checkLocked(counter uint64) bool {
	switch {
	case counter >= RejectAfterMessages:
		return false
	case counter >= w.next:
		return true
	case w.next-counter > ReplayWindowSize:
		return false
	}
	return w.ring[(counter/64)%replayBlocks]&(1<<(counter%64)) == 0
}
