package capability

import (
	"strconv"
	"sync/atomic"
)

// EventKind says what happened to a node.
type EventKind uint8

// Event kinds: the life of a node in the index. A node enters with
// NodeRegistered, changes with NodeUpdated (and, if asked for,
// NodeHeartbeat), moves between Online and Degraded with NodeDegraded and
// NodeRecovered, and leaves with NodeOffline (its announcement ran out) or
// NodeLeft (it withdrew it).
const (
	// NodeRegistered: a node entered the index (first seen, or back after
	// going offline or leaving).
	NodeRegistered EventKind = iota + 1
	// NodeUpdated: a node announced a new version with a different set.
	NodeUpdated
	// NodeHeartbeat: a node refreshed its announcement with the same set
	// (every TTL/3 per node, so only sent when Config.HeartbeatEvents is
	// set).
	NodeHeartbeat
	// NodeDegraded: a node went from Online to Degraded: it missed a
	// refresh, or says it is degraded.
	NodeDegraded
	// NodeRecovered: a node went from Degraded back to Online.
	NodeRecovered
	// NodeOffline: a node's announcement ran out (see Config.OfflineAfter);
	// it left the index.
	NodeOffline
	// NodeLeft: a node withdrew its announcement (Engine.Withdraw); it left
	// the index at once.
	NodeLeft
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case NodeRegistered:
		return "registered"
	case NodeUpdated:
		return "updated"
	case NodeHeartbeat:
		return "heartbeat"
	case NodeDegraded:
		return "degraded"
	case NodeRecovered:
		return "recovered"
	case NodeOffline:
		return "offline"
	case NodeLeft:
		return "left"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is a change in the index. Node is the node after the change (Status
// StatusOffline for NodeOffline and NodeLeft); Previous is its status
// before.
type Event struct {
	Kind     EventKind
	Node     Node
	Previous Status
}

// defaultSubscriptionBuffer is the channel capacity Subscribe uses for a
// buffer of 0: room for a burst of changes such as a partition healing.
const defaultSubscriptionBuffer = 256

// Subscription delivers index events. The engine never waits for a
// subscriber: when C is full the event is dropped and counted (Dropped, and
// Stats.EventsDropped), so a slow subscriber loses events but never stalls
// gossip. A subscriber that sees drops should re-read the index.
type Subscription struct {
	// C receives the events. It is closed by Close.
	C <-chan Event

	c       chan Event
	e       *Engine
	dropped atomic.Uint64
}

// Subscribe returns a subscription with a channel of the given capacity
// (0 means 256).
func (e *Engine) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = defaultSubscriptionBuffer
	}
	c := make(chan Event, buffer)
	s := &Subscription{C: c, c: c, e: e}
	e.mu.Lock()
	e.subs[s] = struct{}{}
	e.mu.Unlock()
	return s
}

// Close ends the subscription and closes C. It is idempotent.
func (s *Subscription) Close() {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	if _, ok := s.e.subs[s]; ok {
		delete(s.e.subs, s)
		close(s.c)
	}
}

// Dropped returns how many events this subscription lost because C was
// full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// emitLocked offers ev to every subscriber without blocking.
func (e *Engine) emitLocked(ev Event) {
	for s := range e.subs {
		select {
		case s.c <- ev:
		default:
			s.dropped.Add(1)
			e.st.eventsDropped.Add(1)
		}
	}
}

// Stats is a snapshot of the engine's counters since New.
type Stats struct {
	Received     uint64 // messages given to HandleMessage
	Accepted     uint64 // new versions indexed
	Duplicates   uint64 // copies of a version already held, or of our own
	Forwarded    uint64 // accepted announcements queued for forwarding
	Broadcasts   uint64 // versions of this node's announcement sent out
	MessagesSent uint64 // messages Transport.Send accepted
	BytesSent    uint64 // their total size
	SendErrors   uint64 // messages Transport.Send refused

	RejectedMalformed    uint64
	RejectedOversized    uint64
	RejectedHopLimit     uint64
	RejectedBadSignature uint64
	RejectedTampered     uint64
	RejectedRebinding    uint64
	RejectedOldVersion   uint64
	RejectedUnsigned     uint64
	RejectedIndexFull    uint64 // new origins with no room at MaxNodes
	RejectedPeerOrigins  uint64 // new origins from a neighbour at MaxOriginsPerPeer
	RejectedOriginRate   uint64 // new origins from a neighbour beyond its OriginRate
	RejectedExpired      uint64 // sent with no lifetime left, or older than OfflineAfter
	Evicted              uint64 // offline origins forgotten to make room for new ones

	Withdrawals        uint64 // withdrawals accepted (counted in Accepted too)
	WithdrawalsUnknown uint64 // withdrawals of origins never seen: ignored

	EventsDropped   uint64 // events lost to full subscriber channels
	TelemetryErrors uint64 // failed samples, or telemetry that did not fit the set
}

// counters are the live counters behind Stats.
type counters struct {
	received, accepted, duplicates, forwarded, broadcasts  atomic.Uint64
	messagesSent, bytesSent, sendErrors                    atomic.Uint64
	malformed, oversized, hopLimit, badSignature, tampered atomic.Uint64
	rebinding, oldVersion, unsigned, indexFull, expired    atomic.Uint64
	peerOrigins, originRate, evicted                       atomic.Uint64
	withdrawals, withdrawalsUnknown                        atomic.Uint64
	eventsDropped, telemetryErrors                         atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	c := &e.st
	return Stats{
		Received: c.received.Load(), Accepted: c.accepted.Load(), Duplicates: c.duplicates.Load(),
		Forwarded: c.forwarded.Load(), Broadcasts: c.broadcasts.Load(),
		MessagesSent: c.messagesSent.Load(), BytesSent: c.bytesSent.Load(), SendErrors: c.sendErrors.Load(),
		RejectedMalformed: c.malformed.Load(), RejectedOversized: c.oversized.Load(),
		RejectedHopLimit: c.hopLimit.Load(), RejectedBadSignature: c.badSignature.Load(),
		RejectedTampered: c.tampered.Load(), RejectedRebinding: c.rebinding.Load(),
		RejectedOldVersion: c.oldVersion.Load(), RejectedUnsigned: c.unsigned.Load(),
		RejectedIndexFull: c.indexFull.Load(), RejectedPeerOrigins: c.peerOrigins.Load(),
		RejectedOriginRate: c.originRate.Load(), RejectedExpired: c.expired.Load(), Evicted: c.evicted.Load(),
		Withdrawals: c.withdrawals.Load(), WithdrawalsUnknown: c.withdrawalsUnknown.Load(),
		EventsDropped: c.eventsDropped.Load(), TelemetryErrors: c.telemetryErrors.Load(),
	}
}
