package membership

import (
	"encoding/binary"
	"fmt"

	"github.com/netmesh/netmesh/identity"
)

// Messages that members exchange over their sessions (package mesh sends
// them on its membership protocol). Layout: a type byte, then
//
//	MsgRevocations   n × identity.RevocationSize bytes (1 ≤ n ≤ 470)
//	MsgCertificate   the sender's own certificate (after a renewal)
//	MsgRenew         nothing: the sender asks for a renewed certificate
//	MsgIssued        certificate length (2, big-endian), a certificate for
//	                 the receiver, and after a pairing the issuer's
//	                 confirmation (ProofSize bytes)
//
// docs/WIRE.md draws them.

// MessageType is the first byte of a membership message.
type MessageType uint8

// Message types.
const (
	MsgRevocations MessageType = 1
	MsgCertificate MessageType = 2
	MsgRenew       MessageType = 3
	MsgIssued      MessageType = 4
)

// Message is a decoded membership message. Which fields are set depends
// on Type.
type Message struct {
	Type         MessageType
	Revocations  []*identity.Revocation // MsgRevocations
	Certificate  *identity.Certificate  // MsgCertificate, MsgIssued
	Confirmation []byte                 // MsgIssued after a pairing: ProofSize bytes, else empty
}

// MarshalBinary encodes m.
func (m *Message) MarshalBinary() ([]byte, error) {
	b := []byte{byte(m.Type)}
	switch m.Type {
	case MsgRevocations:
		if len(m.Revocations) == 0 || len(m.Revocations) > maxRevocationsPerMessage {
			return nil, fmt.Errorf("%w: %d revocations in one message", ErrMalformed, len(m.Revocations))
		}
		for _, r := range m.Revocations {
			rb, err := r.MarshalBinary()
			if err != nil {
				return nil, err
			}
			b = append(b, rb...)
		}
	case MsgCertificate, MsgIssued:
		if m.Certificate == nil {
			return nil, fmt.Errorf("%w: no certificate", ErrMalformed)
		}
		cb, err := m.Certificate.MarshalBinary()
		if err != nil {
			return nil, err
		}
		if m.Type == MsgCertificate {
			return append(b, cb...), nil
		}
		if len(m.Confirmation) != 0 && len(m.Confirmation) != ProofSize {
			return nil, fmt.Errorf("%w: confirmation of %d bytes", ErrMalformed, len(m.Confirmation))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(cb)))
		b = append(append(b, cb...), m.Confirmation...)
	case MsgRenew:
	default:
		return nil, fmt.Errorf("%w: type %d", ErrMalformed, m.Type)
	}
	return b, nil
}

// MaxMessageSize bounds an encoded membership message.
const MaxMessageSize = 1 + maxRevocationsPerMessage*identity.RevocationSize

// DecodeMessage decodes a membership message. It checks structure only:
// signatures and trust are the receiver's to check. Errors wrap
// ErrMalformed or a decoding error of package identity; arbitrary input
// never panics.
func DecodeMessage(b []byte) (*Message, error) {
	if len(b) < 1 || len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	m := &Message{Type: MessageType(b[0])}
	body := b[1:]
	switch m.Type {
	case MsgRevocations:
		if len(body) == 0 || len(body)%identity.RevocationSize != 0 {
			return nil, fmt.Errorf("%w: %d bytes of revocations", ErrMalformed, len(body))
		}
		for ; len(body) > 0; body = body[identity.RevocationSize:] {
			r, err := identity.DecodeRevocation(body[:identity.RevocationSize])
			if err != nil {
				return nil, err
			}
			m.Revocations = append(m.Revocations, r)
		}
	case MsgCertificate:
		c, err := identity.DecodeCertificate(body)
		if err != nil {
			return nil, err
		}
		m.Certificate = c
	case MsgRenew:
		if len(body) != 0 {
			return nil, fmt.Errorf("%w: renewal request with a body", ErrMalformed)
		}
	case MsgIssued:
		if len(body) < 2 || len(body) < 2+int(binary.BigEndian.Uint16(body)) {
			return nil, fmt.Errorf("%w: truncated certificate", ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(body))
		c, err := identity.DecodeCertificate(body[2 : 2+n])
		if err != nil {
			return nil, err
		}
		m.Certificate = c
		if rest := body[2+n:]; len(rest) == ProofSize {
			m.Confirmation = append([]byte(nil), rest...)
		} else if len(rest) != 0 {
			return nil, fmt.Errorf("%w: %d bytes after the certificate", ErrMalformed, len(rest))
		}
	default:
		return nil, fmt.Errorf("%w: type %d", ErrMalformed, m.Type)
	}
	return m, nil
}

// RevocationMessages splits rs into as few MsgRevocations messages as fit.
func RevocationMessages(rs []*identity.Revocation) ([][]byte, error) {
	var out [][]byte
	for len(rs) > 0 {
		n := min(len(rs), maxRevocationsPerMessage)
		b, err := (&Message{Type: MsgRevocations, Revocations: rs[:n]}).MarshalBinary()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		rs = rs[n:]
	}
	return out, nil
}
