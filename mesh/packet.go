package mesh

import (
	"net/netip"
	"sync"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/noise"
)

// outPacket is a pooled outgoing packet. Sealing happens in place in buf;
// nonce is the AEAD nonce buffer owned by this packet, so Seal allocates
// nothing.
type outPacket struct {
	buf   []byte // outBufSize or jumboBufSize bytes
	n     int
	addr  netip.AddrPort
	nonce noise.Nonce
	q     *linkQueue // the stream Mux whose frame this is, or nil
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
	if p.q != nil {
		p.q.written.Add(1)
		p.q = nil
	}
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
