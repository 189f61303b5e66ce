package mesh

import (
	"errors"
	"net/netip"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// NAT traversal types. They exist in every build; the engine behind them
// is compiled in only with the nat build tag. Without it the NAT methods
// return ErrUnsupported and relayed paths work unchanged. docs/NAT.md
// explains the machinery.

// ErrUnsupported is returned by the NAT traversal methods when the node
// was built without the nat build tag, and matched (errors.Is) by a
// NATError of kind NATErrUnsupported.
var ErrUnsupported = errors.New("mesh: NAT traversal not compiled in (build with -tags nat)")

// NATConfig configures NAT traversal (build tag nat). The zero value is a
// working default: no STUN servers (directly connected peers report the
// reflexive address) and the timings of package nat.
type NATConfig struct {
	// STUNServers are STUN servers as "host:port". Reflex discovery sends
	// them Binding requests from the mesh's own socket.
	STUNServers []string
	// ReflexTimeout bounds one reflex query (STUN or peer). Zero means 2 s.
	ReflexTimeout time.Duration
	// PunchTimeout is how long both sides probe during a punch. Zero means
	// 3 s.
	PunchTimeout time.Duration
	// ProbeInterval spaces probe rounds within a punch. Zero means 100 ms.
	ProbeInterval time.Duration
	// RetryAfter is the wait before retrying a failed punch, or punching
	// again after a direct path fell back to the relay; it doubles per
	// failure up to 32 times. Zero means 30 s; negative disables retries.
	RetryAfter time.Duration
	// ReclassifyInterval is how often the NAT is classified again; a
	// change of local address triggers it at once. Zero means 10 min.
	ReclassifyInterval time.Duration
	// PortMap asks the router for a UDP mapping of the node's port,
	// NAT-PMP first and UPnP-IGD second, renews it at half its lease,
	// makes the mapped address the reflex override (unless one was set
	// with SetReflexOverride) and deletes the mapping on Close. A router
	// that speaks neither leaves the node on the classifier path, without
	// error. It needs the portmap build tag (with nat); without it, it is
	// ignored. See docs/NAT.md.
	PortMap bool
}

// NATType is a NAT classification.
type NATType uint8

// NAT types.
const (
	// NATUnknown: fewer than two destinations reported a reflex yet.
	NATUnknown NATType = iota
	// NATOpen: the reflex equals a local address; no NAT.
	NATOpen
	// NATCone: every destination sees the same mapped address.
	NATCone
	// NATSymmetric: the mapped address changes with the destination.
	NATSymmetric
)

// String returns "unknown", "open", "cone" or "symmetric".
func (t NATType) String() string {
	switch t {
	case NATOpen:
		return "open"
	case NATCone:
		return "cone"
	case NATSymmetric:
		return "symmetric"
	}
	return "unknown"
}

// NATErrorKind is the stable category of a NATError.
type NATErrorKind uint8

// NAT error kinds. None of them breaks connectivity: the relayed path
// keeps working.
const (
	// NATErrReflexTimeout: no STUN server or peer reported the reflex.
	NATErrReflexTimeout NATErrorKind = iota + 1
	// NATErrPeerUnreachable: no session with the peer, or it sees this
	// node only through a relay.
	NATErrPeerUnreachable
	// NATErrTransport: a frame or STUN message could not be sent.
	NATErrTransport
	// NATErrRendezvousNoRelay: the coordinator has no direct session with
	// one of the two sides.
	NATErrRendezvousNoRelay
	// NATErrRendezvousRejected: the coordinator or the target refused, or
	// did not answer.
	NATErrRendezvousRejected
	// NATErrPunchFailed: the pair matrix skipped the punch, or no direct
	// packet arrived in the punch window.
	NATErrPunchFailed
	// NATErrPortMapUnavailable: no NAT-PMP or UPnP-IGD gateway answered
	// (reserved for port mapping, not built yet).
	NATErrPortMapUnavailable
	// NATErrUnsupported: not compiled in, or not possible here.
	NATErrUnsupported
)

var natErrNames = [...]string{
	NATErrReflexTimeout:      "reflex timeout",
	NATErrPeerUnreachable:    "peer not reachable",
	NATErrTransport:          "transport",
	NATErrRendezvousNoRelay:  "rendezvous without relay",
	NATErrRendezvousRejected: "rendezvous rejected",
	NATErrPunchFailed:        "punch failed",
	NATErrPortMapUnavailable: "port map unavailable",
	NATErrUnsupported:        "unsupported",
}

// String returns the kind's name, for example "punch failed".
func (k NATErrorKind) String() string {
	if int(k) < len(natErrNames) && natErrNames[k] != "" {
		return natErrNames[k]
	}
	return "unknown"
}

// NATError is a NAT traversal failure with a stable Kind (use errors.As).
type NATError struct {
	Kind NATErrorKind
	// Peer is the peer concerned; zero if none.
	Peer identity.NodeID
	// Reason says what happened in a few words; a peer that stays relayed
	// shows the same text in PeerStats.PathReason.
	Reason string
	// Err is the underlying error.
	Err error
}

// Error implements error.
func (e *NATError) Error() string {
	s := "mesh: NAT " + e.Kind.String()
	if !e.Peer.IsZero() {
		s += " (peer " + e.Peer.Short() + ")"
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Unwrap returns the underlying error.
func (e *NATError) Unwrap() error { return e.Err }

// Is makes a NATError of kind NATErrUnsupported match ErrUnsupported.
func (e *NATError) Is(target error) bool {
	return target == ErrUnsupported && e.Kind == NATErrUnsupported
}

// TraversalStats is a snapshot of NAT traversal: the classification and
// the punch counters. The per-peer outcome is in PeerStats.Path and
// PathReason.
type TraversalStats struct {
	// Enabled is false when the node was built without the nat tag.
	Enabled bool
	// Type is the current classification.
	Type NATType
	// Reflex is the measured reflexive address, and Override the reflex
	// override set by SetReflexOverride; each is invalid when unknown or
	// unset.
	Reflex   netip.AddrPort
	Override netip.AddrPort
	// PortMap describes the router port mapping (build tags nat,portmap,
	// NATConfig.PortMap): protocol and external address, or why there is
	// none; empty when port mapping is off.
	PortMap string
	// PunchesAttempted counts punches this node probed for, either side.
	PunchesAttempted uint64
	// PunchesSucceeded counts punches that ended with a direct path.
	PunchesSucceeded uint64
	// PunchesSkipped counts introductions the pair matrix declined.
	PunchesSkipped uint64
	// RelayFallbacks counts times a peer stayed on or went back to the
	// relay: failed or skipped punches and direct paths that went silent.
	RelayFallbacks uint64
	// Introductions counts introductions this node made as coordinator.
	Introductions uint64
	// ReflexQueries counts STUN and peer reflex requests sent, and
	// ReflexAnswers the answers received.
	ReflexQueries uint64
	ReflexAnswers uint64
	// Classifications counts completed classifications.
	Classifications uint64
}
