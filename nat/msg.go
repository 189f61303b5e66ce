//go:build nat

package nat

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/netmesh/netmesh/identity"
)

// MsgType is the kind of a NAT frame.
type MsgType uint8

// NAT frame types. The numeric values are on the wire.
const (
	// MsgReflexRequest asks a peer for the address it sees us at.
	MsgReflexRequest MsgType = iota + 1
	// MsgReflexResponse answers it: Candidates[0] is the requester's
	// address as the responder sees it; none if only through a relay.
	MsgReflexResponse
	// MsgIntroduce asks a coordinator to introduce us to Peer; it carries
	// our NAT type and candidates.
	MsgIntroduce
	// MsgOffer is the coordinator telling the target that Peer wants a
	// direct path.
	MsgOffer
	// MsgAccept is the target's answer to an Offer: Status, its NAT type
	// and candidates.
	MsgAccept
	// MsgPunch is the coordinator's go signal, sent to both sides at once:
	// Peer is the other side, with its NAT type and candidates, or Status
	// says why the introduction failed.
	MsgPunch
	numMsgTypes
)

// Status is the outcome an Accept or Punch message reports.
type Status uint8

// Statuses. The numeric values are on the wire.
const (
	StatusOK Status = iota
	// StatusNoRelay: the coordinator has no direct session with the target.
	StatusNoRelay
	// StatusRejected: the target refused (no session with the requester,
	// too many punches, or NAT traversal disabled).
	StatusRejected
	// StatusTimeout: the target did not answer the coordinator.
	StatusTimeout
	numStatuses
)

// MaxCandidates bounds the addresses one message carries. It also bounds
// the probes one introduction can make a node send per round.
const MaxCandidates = 8

// Message is one NAT frame. Every type uses the same layout; fields a type
// does not use are zero.
//
//	type u8 | txid u64 | peer [16] | status u8 | nat u8 | n u8 | n × addr
//	addr: family u8 (4 or 6) | ip (4 or 16 bytes) | port u16
//
// Integers are big-endian. Addresses are canonical: unmapped, no zone,
// not unspecified, port not 0.
type Message struct {
	Type       MsgType
	TxID       uint64
	Peer       identity.NodeID
	Status     Status
	NAT        Type
	Candidates []netip.AddrPort
}

const msgHeaderSize = 1 + 8 + identity.NodeIDSize + 3

// MaxMessageSize is the largest encoded Message.
const MaxMessageSize = msgHeaderSize + MaxCandidates*(1+16+2)

// ErrMalformed is returned by ParseMessage for bytes that are not a
// well-formed NAT frame, and by Message.Append for a message that cannot
// be encoded.
var ErrMalformed = errors.New("nat: malformed message")

// validAddr reports whether a is a canonical candidate address.
func validAddr(a netip.AddrPort) bool {
	ip := a.Addr()
	return ip.IsValid() && !ip.IsUnspecified() && ip.Zone() == "" && !ip.Is4In6() && a.Port() != 0
}

// Append encodes m onto b.
func (m *Message) Append(b []byte) ([]byte, error) {
	if m.Type == 0 || m.Type >= numMsgTypes || m.Status >= numStatuses || m.NAT >= numTypes || len(m.Candidates) > MaxCandidates {
		return b, ErrMalformed
	}
	b = append(b, byte(m.Type))
	b = binary.BigEndian.AppendUint64(b, m.TxID)
	b = append(b, m.Peer[:]...)
	b = append(b, byte(m.Status), byte(m.NAT), byte(len(m.Candidates)))
	for _, a := range m.Candidates {
		if !validAddr(a) {
			return b, ErrMalformed
		}
		if a.Addr().Is4() {
			ip := a.Addr().As4()
			b = append(b, 4)
			b = append(b, ip[:]...)
		} else {
			ip := a.Addr().As16()
			b = append(b, 6)
			b = append(b, ip[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, a.Port())
	}
	return b, nil
}

// ParseMessage decodes one NAT frame. It rejects anything Append would not
// produce, so a parsed message re-encodes to the same bytes.
func ParseMessage(b []byte) (Message, error) {
	var m Message
	if len(b) < msgHeaderSize {
		return m, ErrMalformed
	}
	m.Type = MsgType(b[0])
	m.TxID = binary.BigEndian.Uint64(b[1:9])
	copy(m.Peer[:], b[9:9+identity.NodeIDSize])
	rest := b[9+identity.NodeIDSize:]
	m.Status, m.NAT = Status(rest[0]), Type(rest[1])
	n := int(rest[2])
	rest = rest[3:]
	if m.Type == 0 || m.Type >= numMsgTypes || m.Status >= numStatuses || m.NAT >= numTypes || n > MaxCandidates {
		return Message{}, ErrMalformed
	}
	if n > 0 {
		m.Candidates = make([]netip.AddrPort, 0, n)
	}
	for range n {
		if len(rest) < 1 {
			return Message{}, ErrMalformed
		}
		var ip netip.Addr
		switch rest[0] {
		case 4:
			if len(rest) < 1+4+2 {
				return Message{}, ErrMalformed
			}
			ip = netip.AddrFrom4([4]byte(rest[1:5]))
			rest = rest[5:]
		case 6:
			if len(rest) < 1+16+2 {
				return Message{}, ErrMalformed
			}
			ip = netip.AddrFrom16([16]byte(rest[1:17]))
			rest = rest[17:]
		default:
			return Message{}, ErrMalformed
		}
		a := netip.AddrPortFrom(ip, binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if !validAddr(a) {
			return Message{}, ErrMalformed
		}
		m.Candidates = append(m.Candidates, a)
	}
	if len(rest) != 0 {
		return Message{}, ErrMalformed
	}
	return m, nil
}
