package channel

import (
	"encoding/binary"
	"fmt"

	"github.com/netmesh/netmesh/identity"
)

// Channel messages travel as the body of mesh frames of subprotocol
// ProtoChannel. Every message starts with a type byte and a format version
// byte; all integers are big endian; every length is checked exactly. The
// byte layouts are in docs/CHANNELS.md.

// msgType is a channel message's first byte.
type msgType uint8

const (
	msgSubscribe   msgType = 1 // subscriber → publisher: join a channel
	msgAck         msgType = 2 // publisher → subscriber: joined
	msgReject      msgType = 3 // publisher → subscriber: refused
	msgPublish     msgType = 4 // publisher → subscriber: one message
	msgUnsubscribe msgType = 5 // subscriber → publisher: leave
	msgEnd         msgType = 6 // publisher → subscriber: you were removed
)

const (
	formatV1 = 1

	subscribeHeaderLen   = 2 + 8 + 1 + 2 // type, version, request id, name length, token length
	ackLen               = 2 + 8 + 4     // type, version, request id, pending limit
	rejectLen            = 2 + 8 + 1 + 1 // type, version, request id, reason, token problem
	publishHeaderLen     = 2 + 1 + 8 + 4 // type, version, name length, sequence, payload length
	unsubscribeHeaderLen = 2 + 1         // type, version, name length
	endHeaderLen         = 2 + 1 + 2     // type, version, name length, reason, token problem
)

// message is any channel message, decoded. Only the fields of its type are
// set. name, token and payload alias the decoded bytes.
type message struct {
	typ     msgType
	reqID   uint64       // subscribe, ack, reject
	name    []byte       // subscribe, publish, unsubscribe, end
	token   []byte       // subscribe; empty means none
	pending uint32       // ack
	reason  Reason       // reject, end
	problem TokenProblem // reject, end
	seq     uint64       // publish
	payload []byte       // publish
}

// appendTo appends the encoding of m to b. m must be valid (as decode would
// accept it); the engine only encodes messages it built from checked parts.
func (m *message) appendTo(b []byte) []byte {
	b = append(b, byte(m.typ), formatV1)
	switch m.typ {
	case msgSubscribe:
		b = binary.BigEndian.AppendUint64(b, m.reqID)
		b = append(b, byte(len(m.name)))
		b = append(b, m.name...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.token)))
		b = append(b, m.token...)
	case msgAck:
		b = binary.BigEndian.AppendUint64(b, m.reqID)
		b = binary.BigEndian.AppendUint32(b, m.pending)
	case msgReject:
		b = binary.BigEndian.AppendUint64(b, m.reqID)
		b = append(b, byte(m.reason), byte(m.problem))
	case msgPublish:
		b = append(b, byte(len(m.name)))
		b = append(b, m.name...)
		b = binary.BigEndian.AppendUint64(b, m.seq)
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.payload)))
		b = append(b, m.payload...)
	case msgUnsubscribe:
		b = append(b, byte(len(m.name)))
		b = append(b, m.name...)
	case msgEnd:
		b = append(b, byte(len(m.name)))
		b = append(b, m.name...)
		b = append(b, byte(m.reason), byte(m.problem))
	}
	return b
}

// encodedLen returns the length appendTo will add.
func (m *message) encodedLen() int {
	switch m.typ {
	case msgSubscribe:
		return subscribeHeaderLen + len(m.name) + len(m.token)
	case msgAck:
		return ackLen
	case msgReject:
		return rejectLen
	case msgPublish:
		return publishHeaderLen + len(m.name) + len(m.payload)
	case msgUnsubscribe:
		return unsubscribeHeaderLen + len(m.name)
	case msgEnd:
		return endHeaderLen + len(m.name)
	}
	return 2
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// decode parses one channel message. It checks the type, the version, every
// length exactly, the name alphabet, the token length range, the reason
// and token problem codes and the payload bound; it does not decode the
// token. The result aliases b. Errors wrap ErrMalformed; arbitrary input
// never panics.
func decode(b []byte) (message, error) {
	var m message
	if len(b) < 2 {
		return m, malformed("%d bytes", len(b))
	}
	if b[1] != formatV1 {
		return m, malformed("format version %d", b[1])
	}
	m.typ = msgType(b[0])
	switch m.typ {
	case msgSubscribe:
		if len(b) < subscribeHeaderLen {
			return m, malformed("subscribe of %d bytes", len(b))
		}
		m.reqID = binary.BigEndian.Uint64(b[2:])
		n := int(b[10])
		if len(b) < subscribeHeaderLen+n {
			return m, malformed("subscribe of %d bytes, name of %d", len(b), n)
		}
		m.name = b[11 : 11+n]
		tl := int(binary.BigEndian.Uint16(b[11+n:]))
		if len(b) != subscribeHeaderLen+n+tl {
			return m, malformed("subscribe of %d bytes, want %d", len(b), subscribeHeaderLen+n+tl)
		}
		if tl != 0 && (tl < identity.MinTokenSize || tl > identity.MaxTokenSize) {
			return m, malformed("token of %d bytes", tl)
		}
		if tl != 0 {
			m.token = b[subscribeHeaderLen+n:]
		}
	case msgAck:
		if len(b) != ackLen {
			return m, malformed("ack of %d bytes", len(b))
		}
		m.reqID = binary.BigEndian.Uint64(b[2:])
		m.pending = binary.BigEndian.Uint32(b[10:])
		if m.pending == 0 || m.pending > MaxPendingLimit {
			return m, malformed("pending limit %d", m.pending)
		}
		return m, nil
	case msgReject:
		if len(b) != rejectLen {
			return m, malformed("reject of %d bytes", len(b))
		}
		m.reqID = binary.BigEndian.Uint64(b[2:])
		m.reason, m.problem = Reason(b[10]), TokenProblem(b[11])
		return m, checkReason(m.reason, m.problem)
	case msgPublish:
		if len(b) < publishHeaderLen {
			return m, malformed("publish of %d bytes", len(b))
		}
		n := int(b[2])
		if len(b) < publishHeaderLen+n {
			return m, malformed("publish of %d bytes, name of %d", len(b), n)
		}
		m.name = b[3 : 3+n]
		m.seq = binary.BigEndian.Uint64(b[3+n:])
		pl := binary.BigEndian.Uint32(b[11+n:])
		if pl > MaxPayloadSize || len(b) != publishHeaderLen+n+int(pl) {
			return m, malformed("publish of %d bytes, payload of %d", len(b), pl)
		}
		m.payload = b[publishHeaderLen+n:]
	case msgUnsubscribe:
		if len(b) < unsubscribeHeaderLen || len(b) != unsubscribeHeaderLen+int(b[2]) {
			return m, malformed("unsubscribe of %d bytes", len(b))
		}
		m.name = b[3:]
	case msgEnd:
		if len(b) < endHeaderLen || len(b) != endHeaderLen+int(b[2]) {
			return m, malformed("end of %d bytes", len(b))
		}
		m.name = b[3 : len(b)-2]
		m.reason, m.problem = Reason(b[len(b)-2]), TokenProblem(b[len(b)-1])
		if err := checkReason(m.reason, m.problem); err != nil {
			return m, err
		}
	default:
		return m, malformed("message type %d", b[0])
	}
	return m, checkNameBytes(m.name)
}

// checkReason accepts a known reason with a token problem exactly when the
// reason is ReasonToken.
func checkReason(r Reason, p TokenProblem) error {
	if r == 0 || r > reasonMax || p > tokenProblemMax || (r == ReasonToken) != (p != TokenOK) {
		return malformed("reason %d, token problem %d", r, p)
	}
	return nil
}

// checkNameBytes is ValidateName for a name still in the message, without
// converting it to a string.
func checkNameBytes(n []byte) error {
	if len(n) == 0 || len(n) > MaxNameLen {
		return malformed("channel name of %d bytes", len(n))
	}
	for _, c := range n {
		if !nameChar(c) {
			return malformed("channel name byte %#x", c)
		}
	}
	return nil
}
