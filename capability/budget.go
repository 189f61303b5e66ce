package capability

import (
	"fmt"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Admission of new origins.
//
// Keys are free, so an authenticated peer can sign announcements for as
// many made-up origins as it likes, and every node that accepts one stores
// it and hands it on. The engine therefore charges every origin it has no
// record of to the neighbour that introduced it, its sponsor:
//
//   - rate: each neighbour has a token bucket (Config.OriginBurst tokens,
//     refilled at Config.OriginRate per second); a new origin costs one
//     token, taken before the signature check, so a flood costs no more
//     signature checks than the budget allows;
//   - count: a neighbour may have introduced at most
//     Config.MaxOriginsPerPeer of the origins remembered, live or offline;
//     at the limit a new origin from it displaces the oldest of its own
//     offline origins, or is refused;
//   - global: at Config.MaxNodes a new origin displaces the oldest offline
//     origin of its own sponsor, else of the sponsor that introduced the
//     most origins if that is more than its own sponsor did (so eviction
//     only ever evens out the neighbours' shares: a flooder cannot push
//     out the origins of a neighbour that introduced fewer than it did),
//     else it is refused.
//
// A refused announcement leaves no state, so the origin gets in later (at
// its next refresh, or from another neighbour) once there is budget.

// sponsor is one neighbour as a source of new origins.
type sponsor struct {
	origins  int       // records created from its messages, live or offline
	tokens   float64   // its budget for new origins, at refilled
	refilled time.Time // when tokens was last brought up to date
	// tombstones lists its origins that went offline, oldest first, for
	// evictLocked. An entry is stale once its origin came back (or went
	// offline again later): see currentLocked. buryLocked compacts the
	// slice when it holds more than twice as many entries as the sponsor
	// has origins, so it stays within 2·origins however often they come
	// and go.
	tombstones []tombstone
}

// tombstone marks that origin id went offline. It is current only while
// the record is offline and its tomb is seq.
type tombstone struct {
	id  identity.NodeID
	seq uint64
}

// currentLocked reports whether t still stands for an offline record.
func (e *Engine) currentLocked(t tombstone) bool {
	rec := e.records[t.id]
	return rec != nil && !rec.live && rec.tomb == t.seq
}

// sponsorLocked returns neighbour id's account, opening it with a full
// bucket.
func (e *Engine) sponsorLocked(id identity.NodeID, now time.Time) *sponsor {
	sp := e.sponsors[id]
	if sp == nil {
		sp = &sponsor{tokens: float64(e.cfg.OriginBurst), refilled: now}
		e.sponsors[id] = sp
	}
	return sp
}

// refill brings sp's bucket up to now.
func (sp *sponsor) refill(now time.Time, rate float64, burst int) {
	if d := now.Sub(sp.refilled); d > 0 {
		sp.tokens = min(float64(burst), sp.tokens+d.Seconds()*rate)
	}
	sp.refilled = now
}

// chargeLocked takes one token from neighbour from for a new origin, or
// fails with ErrOriginRate.
func (e *Engine) chargeLocked(from identity.NodeID, now time.Time) error {
	sp := e.sponsorLocked(from, now)
	sp.refill(now, e.cfg.OriginRate, e.cfg.OriginBurst)
	if sp.tokens < 1 {
		return fmt.Errorf("%w: neighbour %s", ErrOriginRate, from.Short())
	}
	sp.tokens--
	return nil
}

// makeRoomLocked makes room for one more origin introduced by sp, evicting
// an offline origin if a limit requires it, or fails with
// ErrPeerOriginLimit or ErrIndexFull.
func (e *Engine) makeRoomLocked(sp *sponsor) error {
	if sp.origins >= e.cfg.MaxOriginsPerPeer {
		if e.evictLocked(sp) {
			return nil
		}
		return fmt.Errorf("%w: %d origins", ErrPeerOriginLimit, sp.origins)
	}
	if len(e.records) < e.cfg.MaxNodes || e.evictLocked(sp) {
		return nil
	}
	for {
		var big *sponsor
		for _, other := range e.sponsors {
			if other.origins > sp.origins && len(other.tombstones) > 0 && (big == nil || other.origins > big.origins) {
				big = other
			}
		}
		if big == nil {
			return fmt.Errorf("%w: %d origins", ErrIndexFull, len(e.records))
		}
		if e.evictLocked(big) { // else its tombstones were all stale, now dropped
			return nil
		}
	}
}

// evictLocked forgets the oldest offline origin sp introduced.
func (e *Engine) evictLocked(sp *sponsor) bool {
	for len(sp.tombstones) > 0 {
		t := sp.tombstones[0]
		sp.tombstones = sp.tombstones[1:]
		if e.currentLocked(t) {
			delete(e.records, t.id)
			sp.origins--
			e.st.evicted.Add(1)
			return true
		}
	}
	return false
}

// buryLocked marks rec, origin id's record, offline, and drops its
// sponsor's stale tombstones when they outnumber its origins two to one
// (which makes the compaction's cost O(1) per tombstone).
func (e *Engine) buryLocked(id identity.NodeID, rec *record) {
	rec.live = false
	e.tombSeq++
	rec.tomb = e.tombSeq
	sp := e.sponsors[rec.sponsor]
	sp.tombstones = append(sp.tombstones, tombstone{id, rec.tomb})
	if len(sp.tombstones) <= 2*sp.origins {
		return
	}
	kept := sp.tombstones[:0]
	for _, t := range sp.tombstones {
		if e.currentLocked(t) {
			kept = append(kept, t)
		}
	}
	clear(sp.tombstones[len(kept):])
	sp.tombstones = kept
}

// pruneSponsorsLocked forgets the neighbours that introduced no origin
// still remembered and whose bucket is full again: their account says
// nothing a new one would not.
func (e *Engine) pruneSponsorsLocked(now time.Time) {
	for id, sp := range e.sponsors {
		if sp.origins > 0 {
			continue
		}
		if sp.refill(now, e.cfg.OriginRate, e.cfg.OriginBurst); sp.tokens >= float64(e.cfg.OriginBurst) {
			delete(e.sponsors, id)
		}
	}
}
