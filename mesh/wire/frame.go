package wire

import "encoding/binary"

// Proto is the protocol number of an inner frame: it says which handler
// above the session gets the frame's body. The numbers are assigned by
// package mesh's protocol registry, not here.
type Proto uint16

// PutFrameHeader writes the inner frame header into b[:FrameHeaderSize].
func PutFrameHeader(b []byte, p Proto) {
	binary.LittleEndian.PutUint16(b[:FrameHeaderSize], uint16(p))
}

// ParseFrame splits a decrypted payload into its protocol and body.
func ParseFrame(b []byte) (Proto, []byte, error) {
	if len(b) < FrameHeaderSize {
		return 0, nil, ErrShort
	}
	return Proto(binary.LittleEndian.Uint16(b)), b[FrameHeaderSize:], nil
}

// PingSize is the body of a ping or pong: an 8-byte sender timestamp in
// nanoseconds of the sender's monotonic clock.
const PingSize = 8
