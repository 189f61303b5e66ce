//go:build nat

package nat

import (
	"errors"

	"github.com/netmesh/netmesh/identity"
)

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
var ErrUnsupported = errors.New("nat: unsupported")

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
