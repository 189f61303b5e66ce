// Package wire holds every byte layout of the netmesh transport: the outer
// packet headers, the handshake messages with their anti-DoS MACs, the cookie
// reply, and the inner frame header that the layers above the session see.
//
// Everything here is a pure function over byte slices: no I/O, no
// goroutines, no allocation. Decoders never panic on any input; they return
// ErrShort, ErrType or ErrSize. docs/WIRE.md draws each layout.
//
// Multi-byte integers are little-endian. The first byte of every netmesh
// packet is a Type in 0xE1..0xE6, outside the 0x00..0x03 range that starts a
// STUN message (RFC 7983), so STUN replies and mesh packets share a socket
// and are told apart by one comparison.
package wire

import (
	"encoding/binary"
	"errors"
)

// Type is the first byte of a packet.
type Type uint8

// Packet types.
const (
	TypeInitIK   Type = 0xE1 // Noise IK initiation (initiator knows the responder's key)
	TypeInitXX   Type = 0xE2 // Noise XX initiation (initiator knows only an address)
	TypeResponse Type = 0xE3 // second handshake message (IK and XX)
	TypeFinal    Type = 0xE4 // third handshake message (XX only)
	TypeCookie   Type = 0xE5 // cookie reply to a handshake message, sent under load
	TypeData     Type = 0xE6 // transport data
)

// String returns the type's name.
func (t Type) String() string {
	switch t {
	case TypeInitIK:
		return "init-ik"
	case TypeInitXX:
		return "init-xx"
	case TypeResponse:
		return "response"
	case TypeFinal:
		return "final"
	case TypeCookie:
		return "cookie"
	case TypeData:
		return "data"
	}
	return "unknown"
}

// IsHandshake reports whether t is one of the handshake message types that
// carry MACs.
func (t Type) IsHandshake() bool { return t >= TypeInitIK && t <= TypeFinal }

// stunMagicCookie is the fixed value at bytes 4..7 of every STUN message
// (RFC 5389 section 6).
const stunMagicCookie = 0x2112A442

// IsSTUN reports whether b looks like a STUN message: a first byte in
// 0x00..0x03, at least the 20-byte STUN header, and the magic cookie.
func IsSTUN(b []byte) bool {
	return len(b) >= 20 && b[0] < 4 && binary.BigEndian.Uint32(b[4:8]) == stunMagicCookie
}

// IsInitiation reports whether t starts a handshake.
func (t Type) IsInitiation() bool { return t == TypeInitIK || t == TypeInitXX }

// Decoder errors.
var (
	ErrShort = errors.New("wire: packet too short")
	ErrType  = errors.New("wire: unknown packet type")
	ErrSize  = errors.New("wire: packet size out of range")
)

// Sizes in bytes.
const (
	// DataHeaderSize is the clear header of a data packet: type, 3 reserved
	// bytes, receiver index, counter. It is the AEAD's associated data.
	DataHeaderSize = 16
	// DataReceiverOffset is where a data packet's receiver index starts
	// (4 bytes, little-endian).
	DataReceiverOffset = 4
	// TagSize is the AEAD tag that follows the ciphertext.
	TagSize = 16
	// DataOverhead is what a data packet adds to its plaintext.
	DataOverhead = DataHeaderSize + TagSize
	// FrameHeaderSize is the inner frame header inside the ciphertext.
	FrameHeaderSize = 2
	// MACSize is the size of each of a handshake message's two MACs.
	MACSize = 16
	// CookieSize is the size of a cookie.
	CookieSize = 16
	// CookieNonceSize is the XChaCha20-Poly1305 nonce of a cookie reply.
	CookieNonceSize = 24
	// CookieReplySize is the exact size of a cookie reply.
	CookieReplySize = 8 + CookieNonceSize + CookieSize + TagSize
	// MaxNoiseMessage bounds the Noise payload of one handshake message.
	// The largest netmesh handshake message (an IK initiation, 208 bytes,
	// with at most 768 bytes of extensions such as a membership
	// certificate; noise.MaxHandshakeSize) is 976 bytes.
	MaxNoiseMessage = 1024
	// MaxPacketSize bounds any netmesh packet. Larger datagrams are dropped
	// unread.
	MaxPacketSize = 1 << 16
)

// DataHeader is the clear header of a data packet.
type DataHeader struct {
	Receiver uint32 // the receiver's session index
	Counter  uint64 // AEAD nonce; strictly increasing per session and direction
}

// PutDataHeader writes h into b[:DataHeaderSize] and returns the header
// bytes. b must be at least DataHeaderSize long.
func PutDataHeader(b []byte, h DataHeader) []byte {
	b = b[:DataHeaderSize]
	b[0] = byte(TypeData)
	b[1], b[2], b[3] = 0, 0, 0
	binary.LittleEndian.PutUint32(b[DataReceiverOffset:], h.Receiver)
	binary.LittleEndian.PutUint64(b[8:], h.Counter)
	return b
}

// ParseDataHeader decodes the header of a data packet. The packet must hold
// at least a header and a tag.
func ParseDataHeader(b []byte) (DataHeader, error) {
	if len(b) < DataOverhead {
		return DataHeader{}, ErrShort
	}
	if Type(b[0]) != TypeData {
		return DataHeader{}, ErrType
	}
	return DataHeader{
		Receiver: binary.LittleEndian.Uint32(b[DataReceiverOffset:]),
		Counter:  binary.LittleEndian.Uint64(b[8:]),
	}, nil
}

// Cipher suites: byte 1 of a handshake message names the AEAD of its
// handshake and of the session it makes (noise.Suite). Nodes that predate
// the field send 0 there, which is ChaCha20-Poly1305.
const (
	SuiteChaChaPoly uint8 = 0 // ChaCha20-Poly1305, Noise "ChaChaPoly"
	SuiteAESGCM     uint8 = 1 // AES-256-GCM, Noise "AESGCM"
)

// Handshake is a decoded handshake message (TypeInitIK, TypeInitXX,
// TypeResponse or TypeFinal).
//
// Layout: type(1) suite(1) reserved(2) sender(4) receiver(4) noise(n)
// mac1(16) mac2(16). Initiations carry receiver 0. The slices alias the
// input.
type Handshake struct {
	Type Type
	// Suite is the cipher suite (SuiteChaChaPoly, SuiteAESGCM): the
	// initiator's choice, repeated in the response and the final message.
	Suite    uint8
	Sender   uint32 // the sender's session index
	Receiver uint32 // the recipient's session index; 0 in initiations
	Noise    []byte // the Noise handshake message
	MAC1     []byte // keyed by the recipient's public key (see MAC1Key)
	MAC2     []byte // keyed by a cookie, or zero
}

// HandshakeHeaderSize is the fixed part before the Noise message.
const HandshakeHeaderSize = 12

// HandshakeOverhead is what a handshake packet adds to its Noise message.
const HandshakeOverhead = HandshakeHeaderSize + 2*MACSize

// ParseHandshake decodes a handshake message.
func ParseHandshake(b []byte) (Handshake, error) {
	if len(b) < 1 {
		return Handshake{}, ErrShort
	}
	t := Type(b[0])
	if !t.IsHandshake() {
		return Handshake{}, ErrType
	}
	if len(b) < HandshakeOverhead+1 {
		return Handshake{}, ErrShort
	}
	n := len(b) - HandshakeOverhead
	if n > MaxNoiseMessage {
		return Handshake{}, ErrSize
	}
	return Handshake{
		Type:     t,
		Suite:    b[1],
		Sender:   binary.LittleEndian.Uint32(b[4:]),
		Receiver: binary.LittleEndian.Uint32(b[8:]),
		Noise:    b[HandshakeHeaderSize : HandshakeHeaderSize+n],
		MAC1:     b[HandshakeHeaderSize+n : HandshakeHeaderSize+n+MACSize],
		MAC2:     b[HandshakeHeaderSize+n+MACSize:],
	}, nil
}

// AppendHandshake appends the header and Noise message of h to b, followed
// by 32 zero bytes for the MACs; the caller fills them with SetMACs. The
// MAC1 and MAC2 fields of h are ignored.
func AppendHandshake(b []byte, h Handshake) []byte {
	b = append(b, byte(h.Type), h.Suite, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, h.Sender)
	b = binary.LittleEndian.AppendUint32(b, h.Receiver)
	b = append(b, h.Noise...)
	var zero [2 * MACSize]byte
	return append(b, zero[:]...)
}

// MAC1Input returns the bytes covered by MAC1: everything before it.
func MAC1Input(pkt []byte) []byte { return pkt[:len(pkt)-2*MACSize] }

// MAC2Input returns the bytes covered by MAC2: everything before it.
func MAC2Input(pkt []byte) []byte { return pkt[:len(pkt)-MACSize] }

// CookieReply tells a handshake initiator to retry with MAC2 set.
//
// Layout: type(1) reserved(3) receiver(4) nonce(24) sealed-cookie(16+16).
// The cookie is sealed with XChaCha20-Poly1305 under a key derived from
// the responder's public key, with the MAC1 of the message that triggered
// the reply as associated data, so only the real initiator can open it.
type CookieReply struct {
	Receiver uint32 // the sender index of the message being answered
	Nonce    []byte
	Sealed   []byte
}

// ParseCookieReply decodes a cookie reply.
func ParseCookieReply(b []byte) (CookieReply, error) {
	if len(b) < 1 {
		return CookieReply{}, ErrShort
	}
	if Type(b[0]) != TypeCookie {
		return CookieReply{}, ErrType
	}
	if len(b) != CookieReplySize {
		return CookieReply{}, ErrSize
	}
	return CookieReply{
		Receiver: binary.LittleEndian.Uint32(b[DataReceiverOffset:]),
		Nonce:    b[8 : 8+CookieNonceSize],
		Sealed:   b[8+CookieNonceSize:],
	}, nil
}

// PutCookieReplyHeader writes the header of a cookie reply to the
// message whose sender index was receiver into b[:CookieReplySize], and
// returns its nonce and sealed-cookie fields for the caller to fill.
func PutCookieReplyHeader(b []byte, receiver uint32) (nonce, sealed []byte) {
	b = b[:CookieReplySize]
	b[0], b[1], b[2], b[3] = byte(TypeCookie), 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:], receiver)
	return b[8 : 8+CookieNonceSize], b[8+CookieNonceSize:]
}

// AppendCookieReply appends c to b.
func AppendCookieReply(b []byte, c CookieReply) []byte {
	b = append(b, byte(TypeCookie), 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, c.Receiver)
	b = append(b, c.Nonce...)
	return append(b, c.Sealed...)
}
