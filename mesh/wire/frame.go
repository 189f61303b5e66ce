package wire

// Proto is the subprotocol of an inner frame: it says which layer above
// the session gets the frame's body.
type Proto uint8

// Subprotocols. Ids below ProtoUserMin belong to netmesh; the layers above
// mesh register ids from ProtoUserMin up.
const (
	ProtoKeepalive  Proto = 0 // empty body; keeps NAT mappings open and proves liveness
	ProtoDatagram   Proto = 1 // an unreliable user datagram
	ProtoPing       Proto = 2 // RTT probe; body is PingSize bytes
	ProtoPong       Proto = 3 // RTT probe answer; echoes the ping body
	ProtoRoute      Proto = 4 // a routed packet (see RouteHeader)
	ProtoCapability Proto = 5 // capability gossip
	ProtoStream     Proto = 6 // stream frames
	ProtoChannel    Proto = 7 // pub/sub channel frames
	ProtoNAT        Proto = 8 // NAT traversal frames
	ProtoRPC        Proto = 9 // package rpc's streams

	// ProtoUserMin is the first id the layers above mesh may register.
	ProtoUserMin Proto = 64
)

// FrameFlags are per-frame flags, reserved for future use; senders write 0
// and receivers ignore bits they do not know.
type FrameFlags uint8

// PutFrameHeader writes the inner frame header into b[:FrameHeaderSize].
func PutFrameHeader(b []byte, p Proto, f FrameFlags) {
	_ = b[1]
	b[0] = byte(p)
	b[1] = byte(f)
}

// ParseFrame splits a decrypted payload into its subprotocol, flags and body.
func ParseFrame(b []byte) (Proto, FrameFlags, []byte, error) {
	if len(b) < FrameHeaderSize {
		return 0, 0, nil, ErrShort
	}
	return Proto(b[0]), FrameFlags(b[1]), b[FrameHeaderSize:], nil
}

// PingSize is the body of a ping or pong: an 8-byte sender timestamp in
// nanoseconds of the sender's monotonic clock.
const PingSize = 8
