package mesh

import "github.com/netmesh/netmesh/nat"

// NAT traversal types, shared with package nat (which defines and
// documents them) so that users need only package mesh. They exist in
// every build; the engine behind them is compiled in only with the nat
// build tag. Without it the NAT methods return ErrUnsupported and relayed
// paths work unchanged. docs/NAT.md explains the machinery.

// ErrUnsupported is returned by the NAT traversal methods when the node
// was built without the nat build tag, and matched (errors.Is) by a
// NATError of kind NATErrUnsupported.
var ErrUnsupported = nat.ErrUnsupported

type (
	// NATConfig configures NAT traversal (build tag nat): STUN servers,
	// timings, port mapping. The zero value is a working default; a nil
	// Logger means the mesh's. See nat.Config.
	NATConfig = nat.Config
	// NATType is a NAT classification.
	NATType = nat.Type
	// NATErrorKind is the stable category of a NATError.
	NATErrorKind = nat.Kind
	// NATError is a NAT traversal failure with a stable Kind (use
	// errors.As).
	NATError = nat.Error
	// TraversalStats is a snapshot of NAT traversal: the classification
	// and the punch counters. The per-peer outcome is in PeerStats.Path
	// and PathReason.
	TraversalStats = nat.Stats
)

// NAT types.
const (
	NATUnknown   = nat.Unknown
	NATOpen      = nat.Open
	NATCone      = nat.Cone
	NATSymmetric = nat.Symmetric
)

// NAT error kinds. None of them breaks connectivity: the relayed path
// keeps working.
const (
	NATErrReflexTimeout      = nat.KindReflexTimeout
	NATErrPeerUnreachable    = nat.KindPeerUnreachable
	NATErrTransport          = nat.KindTransport
	NATErrRendezvousNoRelay  = nat.KindRendezvousNoRelay
	NATErrRendezvousRejected = nat.KindRendezvousRejected
	NATErrPunchFailed        = nat.KindPunchFailed
	NATErrPortMapUnavailable = nat.KindPortMapUnavailable
	NATErrUnsupported        = nat.KindUnsupported
)
