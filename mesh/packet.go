package mesh

import (
	"net/netip"
	"sync"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// Size budget of one packet.
const (
	// minPathMTU is the UDP payload every IPv6 path carries: the 1280-byte
	// IPv6 minimum MTU less the IPv6 (40) and UDP (8) headers. Packets are
	// kept within it until a larger path MTU is proven.
	minPathMTU = 1280 - 40 - 8

	// routeHeaderSize is a routed packet's header: hop count and the
	// source and destination NodeIDs.
	routeHeaderSize = 1 + 2*identity.NodeIDSize

	// MaxDatagramSize is the largest payload SendDatagram accepts. It fits
	// a 1280-byte IPv6 path even when the packet is relayed (wrapped in a
	// second session layer and a route header), so a datagram that is
	// valid on one path stays valid when the path changes.
	MaxDatagramSize = minPathMTU - 2*(wire.DataOverhead+wire.FrameHeaderSize) - routeHeaderSize

	// jumboMTU is the largest IP packet netmesh sends: a 9000-byte jumbo
	// frame, on paths whose interface and probes allow it.
	jumboMTU = 9000

	// outBufSize is the buffer of a pooled outgoing packet; jumboBufSize
	// that of one too large for it, up to a jumbo frame.
	outBufSize   = 2048
	jumboBufSize = 9216
)

// outPacket is a pooled outgoing packet. Sealing happens in place in buf;
// nonce is the AEAD nonce buffer owned by this packet, so Seal allocates
// nothing.
type outPacket struct {
	buf   []byte // outBufSize or jumboBufSize bytes
	n     int
	addr  netip.AddrPort
	nonce noise.Nonce
}

var (
	outPool      = sync.Pool{New: func() any { return &outPacket{buf: make([]byte, outBufSize)} }}
	jumboOutPool = sync.Pool{New: func() any { return &outPacket{buf: make([]byte, jumboBufSize)} }}
)

// getOut returns a packet with room for n bytes, or for as many as it can
// hold when n is above jumboBufSize (sealing then fails with ErrTooLarge).
func getOut(n int) *outPacket {
	if n <= outBufSize {
		return outPool.Get().(*outPacket)
	}
	return jumboOutPool.Get().(*outPacket)
}

func putOut(p *outPacket) {
	p.n = 0
	p.addr = netip.AddrPort{}
	if len(p.buf) == outBufSize {
		outPool.Put(p)
	} else {
		jumboOutPool.Put(p)
	}
}

// inPacket is a pooled received datagram waiting for ReadDatagram.
type inPacket struct {
	buf  [MaxDatagramSize]byte
	n    int
	from identity.NodeID
}

var inPool = sync.Pool{New: func() any { return new(inPacket) }}

func getIn() *inPacket { return inPool.Get().(*inPacket) }

func putIn(p *inPacket) {
	p.n = 0
	p.from = identity.NodeID{}
	inPool.Put(p)
}
