package wire

import "encoding/binary"

// Handshake extensions. The Noise payload of a handshake message may end
// in an extension block (noise.Handshake.SetExtensions): a sequence of
// typed fields, each
//
//	type(1) length(2) value(length)
//
// A receiver skips types it does not know, so a new field needs no new
// message format. docs/WIRE.md lists the types.

// ExtType says what a handshake extension holds.
type ExtType uint8

// Extension types.
const (
	// ExtPadding holds zeros: room the sender makes so that the answer
	// may carry a certificate without being larger than the message that
	// asked for it.
	ExtPadding ExtType = 0
	// ExtCertificate holds the sender's membership certificate.
	ExtCertificate ExtType = 1
	// ExtPairingProof holds a pairing proof: a MAC, keyed by a one-time
	// pairing code, of the handshake hash before the message.
	ExtPairingProof ExtType = 2
	// ExtRefusal holds one byte: why the responder refuses the initiator
	// (a membership reason).
	ExtRefusal ExtType = 3
)

// ExtHeaderSize is what one extension adds to its value.
const ExtHeaderSize = 3

// AppendExtension appends an extension of type t holding v to b. v must
// be shorter than 64 KiB (an extension block is far smaller).
func AppendExtension(b []byte, t ExtType, v []byte) []byte {
	b = append(b, byte(t))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// ParseExtension splits the first extension off b: its type, its value
// (aliasing b) and the rest of b. It fails with ErrShort when b ends
// inside the extension.
func ParseExtension(b []byte) (t ExtType, v, rest []byte, err error) {
	if len(b) < ExtHeaderSize {
		return 0, nil, nil, ErrShort
	}
	n := int(binary.LittleEndian.Uint16(b[1:]))
	if len(b) < ExtHeaderSize+n {
		return 0, nil, nil, ErrShort
	}
	return ExtType(b[0]), b[ExtHeaderSize : ExtHeaderSize+n], b[ExtHeaderSize+n:], nil
}
