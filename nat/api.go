package nat

// The types mesh shares with its users: they build without the nat tag,
// so package mesh can name them in every build, while the engine behind
// them is compiled in only with it.

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Type is a NAT classification, from the mapping behaviour reflex
// discovery observed.
type Type uint8

// NAT types. The numeric values travel in NAT frames: do not renumber.
const (
	// Unknown: fewer than two destinations reported a reflex.
	Unknown Type = iota
	// Open: a reflex equals a local address; there is no NAT.
	Open
	// Cone: every destination sees the same mapping (endpoint-independent
	// mapping). Filtering may still be by address or by address and port.
	Cone
	// Symmetric: the mapping changes with the destination.
	Symmetric
	numTypes
)

// String returns "unknown", "open", "cone" or "symmetric".
func (t Type) String() string {
	switch t {
	case Open:
		return "open"
	case Cone:
		return "cone"
	case Symmetric:
		return "symmetric"
	}
	return "unknown"
}

// LogValue makes a Type print as its name in structured logs, in JSON as
// in text.
func (t Type) LogValue() slog.Value { return slog.StringValue(t.String()) }

// Config configures an Engine. The zero value is valid: no STUN servers
// (peers report the reflex), the Default timings, no logs.
type Config struct {
	// STUNServers are STUN servers as "host:port", resolved at each
	// classification.
	STUNServers []string
	// ReflexTimeout bounds one reflex query. Zero means
	// DefaultReflexTimeout.
	ReflexTimeout time.Duration
	// PunchTimeout is how long a punch probes. Zero means
	// DefaultPunchTimeout.
	PunchTimeout time.Duration
	// ProbeInterval spaces probe rounds. Zero means DefaultProbeInterval.
	ProbeInterval time.Duration
	// RetryAfter is the first retry delay after a failed punch or a
	// fallback to the relay. Zero means DefaultRetryAfter; negative
	// disables retries.
	RetryAfter time.Duration
	// ReclassifyInterval is how often the NAT is classified again. Zero
	// means DefaultReclassifyInterval.
	ReclassifyInterval time.Duration
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// PortMap asks the router for a mapping of the node's port (NAT-PMP,
	// then UPnP-IGD) and makes the mapped address the reflex override. It
	// needs the portmap build tag; without it Start only logs that.
	PortMap bool
	// OnReflexChange, if set, is called with the new address whenever
	// ReflexAddr changes: a classification measured another reflex, a port
	// mapping was installed or lost, the override was set or cleared. It
	// runs on the goroutine that made the change, without engine locks,
	// and must not block for long.
	OnReflexChange func(netip.AddrPort)
}

// Stats is a snapshot of the engine's state and counters.
type Stats struct {
	// Enabled reports that NAT traversal is compiled in: an Engine always
	// sets it; a node built without the nat tag reports the zero Stats.
	Enabled bool
	// Type is the current classification.
	Type Type
	// PortMap describes the port mapping (build tag portmap): the protocol
	// and external address, or why there is none; empty when port mapping
	// is off.
	PortMap string
	// Reflex is the measured reflexive address; invalid until measured.
	Reflex netip.AddrPort
	// Override is the reflex override; invalid when unset.
	Override netip.AddrPort
	// PunchesAttempted counts punches this node probed for, either side.
	PunchesAttempted uint64
	// PunchesSucceeded counts punches that ended with a direct path.
	PunchesSucceeded uint64
	// PunchesSkipped counts introductions the pair matrix declined.
	PunchesSkipped uint64
	// RelayFallbacks counts times a peer stayed on or went back to the
	// relay: failed or skipped punches, and direct paths that went silent.
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

// Kind is the stable category of an Error. Callers switch on it; the
// message text may change.
type Kind uint8

// Error kinds. None of them breaks connectivity: the relayed path keeps
// working whatever NAT traversal reports.
const (
	// KindReflexTimeout: no STUN server or peer reported our reflex in
	// time.
	KindReflexTimeout Kind = iota + 1
	// KindPeerUnreachable: the peer has no session with this node, or sees
	// it only through a relay and so cannot report a reflex.
	KindPeerUnreachable
	// KindTransport: a frame or STUN message could not be sent.
	KindTransport
	// KindRendezvousNoRelay: the coordinator is not directly connected to
	// this node or to the target, so it cannot introduce them.
	KindRendezvousNoRelay
	// KindRendezvousRejected: the coordinator or the target refused the
	// introduction, or the coordinator did not answer.
	KindRendezvousRejected
	// KindPunchFailed: the punch was skipped by the pair matrix, or no
	// direct packet arrived within the punch window.
	KindPunchFailed
	// KindPortMapUnavailable: no NAT-PMP or UPnP-IGD gateway answered.
	// Port mapping (build tag portmap) reports it in PortMapStatus.Err.
	KindPortMapUnavailable
	// KindUnsupported: the feature is not compiled in or not available.
	KindUnsupported
)

var kindNames = [...]string{
	KindReflexTimeout:      "reflex timeout",
	KindPeerUnreachable:    "peer not reachable",
	KindTransport:          "transport",
	KindRendezvousNoRelay:  "rendezvous without relay",
	KindRendezvousRejected: "rendezvous rejected",
	KindPunchFailed:        "punch failed",
	KindPortMapUnavailable: "port map unavailable",
	KindUnsupported:        "unsupported",
}

// String returns the kind's name, for example "punch failed".
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// ErrUnsupported is the sentinel an Error of KindUnsupported matches.
var ErrUnsupported = errors.New("nat: unsupported (NAT traversal needs the nat build tag)")

// Error is a NAT traversal failure with a stable Kind.
type Error struct {
	Kind Kind
	// Peer is the peer the operation concerned; zero if none.
	Peer identity.NodeID
	// Reason says what happened, in a few words; Stats shows the same text
	// for a peer that stays relayed.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	s := "nat: " + e.Kind.String()
	if !e.Peer.IsZero() {
		s += " (peer " + e.Peer.Short() + ")"
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is makes an Error of KindUnsupported match ErrUnsupported.
func (e *Error) Is(target error) bool { return target == ErrUnsupported && e.Kind == KindUnsupported }
