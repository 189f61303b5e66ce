package wire

import "github.com/netmesh/netmesh/identity"

// A routed packet travels as the body of a ProtoRoute frame, inside the
// session between two neighbours, so a relay only forwards what arrives on
// one of its authenticated sessions. Each relay opens the hop layer,
// re-seals the body for the next hop and adds one to Hops; the inner packet
// is the end-to-end session's packet (data, handshake or cookie reply),
// which the relay cannot read.
//
// Layout: hops(1) src(16) dst(16) inner-packet(n).

// RouteHeaderSize is the size of a route header.
const RouteHeaderSize = 1 + 2*identity.NodeIDSize

// MaxHops is the most relays a routed packet may cross. A relay drops a
// packet that has already crossed MaxHops of them.
const MaxHops = 16

// RouteHeader is the clear (inside the hop session) header of a routed
// packet.
type RouteHeader struct {
	Hops uint8           // relays crossed so far
	Src  identity.NodeID // the end-to-end sender
	Dst  identity.NodeID // the end-to-end recipient
}

// PutRouteHeader writes h into b[:RouteHeaderSize].
func PutRouteHeader(b []byte, h RouteHeader) {
	_ = b[RouteHeaderSize-1]
	b[0] = h.Hops
	copy(b[1:], h.Src[:])
	copy(b[1+identity.NodeIDSize:], h.Dst[:])
}

// ParseRoute splits a ProtoRoute frame body into its header and the inner
// packet, which must not be empty.
func ParseRoute(b []byte) (RouteHeader, []byte, error) {
	if len(b) <= RouteHeaderSize {
		return RouteHeader{}, nil, ErrShort
	}
	var h RouteHeader
	h.Hops = b[0]
	copy(h.Src[:], b[1:])
	copy(h.Dst[:], b[1+identity.NodeIDSize:])
	return h, b[RouteHeaderSize:], nil
}
