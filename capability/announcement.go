package capability

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Wire layout of an announcement (big endian; see docs/CAPABILITIES.md):
//
//	off  size  field
//	0    1     message type (msgAnnouncement)
//	1    1     format version (formatV2)
//	2    1     hop count            -- not signed, bumped by forwarders
//	3    4     remaining seconds    -- not signed, set by every sender, <= TTL
//	7    1     flags (bit 0: degraded; bit 1: withdrawn; other bits zero)
//	8    16    origin NodeID
//	24   32    origin ed25519 public key
//	56   8     version
//	64   4     TTL in seconds
//	68   2     set length L
//	70   L     set
//	70+L 64    signature (all zero: unsigned)
//
// The signature covers signDomain || bytes 0..1 || bytes 7..70+L: all but
// the two unsigned fields (bytes 2..6) and the signature itself.
const (
	msgAnnouncement = 0x01
	// formatV2 added the remaining lifetime; format 1 had none, so a
	// forwarded announcement got a full TTL again at every receiver.
	formatV2 = 2

	offHops      = 2
	offRemaining = offHops + 1
	offFlags     = offRemaining + 4
	offOrigin    = offFlags + 1
	offKey       = offOrigin + identity.NodeIDSize
	offVersion   = offKey + ed25519.PublicKeySize
	offTTL       = offVersion + 8
	offSetLen    = offTTL + 4
	headerLen    = offSetLen + 2
	signatureLen = ed25519.SignatureSize

	flagDegraded  = 1 << 0
	flagWithdrawn = 1 << 1
	knownFlags    = flagDegraded | flagWithdrawn

	signDomain = "netmesh capability announcement v1\x00"
)

// Announcement is one origin's signed statement of its capability set, or
// its withdrawal. The origin signs everything but Hops, which forwarders
// bump, and Remaining, which every sender sets from its own copy.
type Announcement struct {
	Origin   identity.NodeID
	Key      ed25519.PublicKey // the origin's ed25519 key; Origin must be NodeIDFromKey(Key)
	Version  uint64            // strictly increasing per origin
	TTL      time.Duration     // whole seconds, MinTTL..MaxTTL
	Degraded bool              // the origin reports itself degraded
	// Withdrawn: the origin leaves, and withdraws every announcement
	// older than this one. A withdrawal has an empty Set and is not
	// Degraded.
	Withdrawn bool
	Set       Set
	Signature []byte // signatureLen bytes; nil or all zero means unsigned
	Hops      uint8  // links travelled; 1 when received from the origin
	// Remaining is the lifetime the sender had left for this announcement
	// when it sent it, whole seconds in [0, TTL]: TTL from the origin, less
	// from a node that has held it a while. Receivers expire the
	// announcement Remaining after receipt; 0 means expired.
	Remaining time.Duration
}

// Sign sets Origin and Key from id and signs the announcement.
func (a *Announcement) Sign(id *identity.Identity) error {
	a.Origin, a.Key, a.Signature = id.NodeID(), id.PublicKey(), nil
	b, err := a.MarshalBinary()
	if err != nil {
		return err
	}
	a.Signature = id.Sign(signedMessage(b))
	return nil
}

// Signed reports whether the announcement carries a (non-zero) signature.
func (a *Announcement) Signed() bool {
	return len(a.Signature) == signatureLen && !isZero(a.Signature)
}

// MarshalBinary encodes the announcement. It fails with ErrInvalidSet,
// ErrOversized or ErrMalformed if the announcement could not be decoded.
func (a *Announcement) MarshalBinary() ([]byte, error) {
	if err := a.Set.Validate(); err != nil {
		if a.Set.encodedLen() > MaxSetSize {
			return nil, fmt.Errorf("%w: %w", ErrOversized, err)
		}
		return nil, err
	}
	if len(a.Key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: key is %d bytes", ErrMalformed, len(a.Key))
	}
	if a.TTL < MinTTL || a.TTL > MaxTTL || a.TTL%time.Second != 0 {
		return nil, fmt.Errorf("%w: TTL %v is not whole seconds in [%v, %v]", ErrMalformed, a.TTL, MinTTL, MaxTTL)
	}
	if a.Remaining < 0 || a.Remaining > a.TTL || a.Remaining%time.Second != 0 {
		return nil, fmt.Errorf("%w: remaining lifetime %v is not whole seconds in [0, TTL %v]", ErrMalformed, a.Remaining, a.TTL)
	}
	if a.Signature != nil && len(a.Signature) != signatureLen {
		return nil, fmt.Errorf("%w: signature is %d bytes", ErrMalformed, len(a.Signature))
	}
	if a.Withdrawn && (a.Degraded || len(a.Set.Tags) > 0 || len(a.Set.Metadata) > 0) {
		return nil, fmt.Errorf("%w: a withdrawal with a set or the degraded flag", ErrMalformed)
	}
	setLen := a.Set.encodedLen()
	b := make([]byte, headerLen, headerLen+setLen+signatureLen)
	b[0], b[1], b[offHops] = msgAnnouncement, formatV2, a.Hops
	putRemaining(b, a.Remaining)
	if a.Degraded {
		b[offFlags] |= flagDegraded
	}
	if a.Withdrawn {
		b[offFlags] |= flagWithdrawn
	}
	copy(b[offOrigin:], a.Origin[:])
	copy(b[offKey:], a.Key)
	binary.BigEndian.PutUint64(b[offVersion:], a.Version)
	binary.BigEndian.PutUint32(b[offTTL:], uint32(a.TTL/time.Second))
	binary.BigEndian.PutUint16(b[offSetLen:], uint16(setLen))
	b = appendSet(b, a.Set)
	b = b[:len(b)+signatureLen]
	copy(b[len(b)-signatureLen:], a.Signature)
	return b, nil
}

// DecodeAnnouncement decodes b. It checks the structure only (lengths, the
// canonical set encoding, the set limits, TTL range, a remaining lifetime
// of at most the TTL, flags, a withdrawal's empty set); it does not
// verify the signature or the hop limit, which the engine does. The result
// does not alias b. Errors wrap ErrMalformed or ErrOversized; arbitrary
// input never panics.
func DecodeAnnouncement(b []byte) (*Announcement, error) {
	if len(b) > MaxAnnouncementSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrOversized, len(b))
	}
	if len(b) < headerLen+signatureLen {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrMalformed, len(b), headerLen+signatureLen)
	}
	if b[0] != msgAnnouncement || b[1] != formatV2 {
		return nil, fmt.Errorf("%w: type %#x format %d", ErrMalformed, b[0], b[1])
	}
	flags := b[offFlags]
	if flags&^knownFlags != 0 || flags == knownFlags {
		return nil, fmt.Errorf("%w: flags %#x", ErrMalformed, flags)
	}
	setLen := int(binary.BigEndian.Uint16(b[offSetLen:]))
	if setLen > MaxSetSize {
		return nil, fmt.Errorf("%w: set of %d bytes", ErrOversized, setLen)
	}
	if len(b) != headerLen+setLen+signatureLen {
		return nil, fmt.Errorf("%w: %d bytes, set length says %d", ErrMalformed, len(b), headerLen+setLen+signatureLen)
	}
	ttl := time.Duration(binary.BigEndian.Uint32(b[offTTL:])) * time.Second
	if ttl < MinTTL || ttl > MaxTTL {
		return nil, fmt.Errorf("%w: TTL %v", ErrMalformed, ttl)
	}
	// Compared in whole seconds: a 32-bit count times time.Second could
	// overflow a Duration.
	remaining := binary.BigEndian.Uint32(b[offRemaining:])
	if uint64(remaining) > uint64(ttl/time.Second) {
		return nil, fmt.Errorf("%w: remaining lifetime %d s exceeds TTL %v", ErrMalformed, remaining, ttl)
	}
	set, err := decodeSet(b[headerLen : headerLen+setLen])
	if err != nil {
		return nil, err
	}
	withdrawn := flags&flagWithdrawn != 0
	if withdrawn && (set.Tags != nil || set.Metadata != nil) {
		return nil, fmt.Errorf("%w: a withdrawal with a set", ErrMalformed)
	}
	a := &Announcement{
		Key:       bytes.Clone(b[offKey:offVersion]),
		Version:   binary.BigEndian.Uint64(b[offVersion:]),
		TTL:       ttl,
		Degraded:  flags&flagDegraded != 0,
		Withdrawn: withdrawn,
		Set:       set,
		Hops:      b[offHops],
		Remaining: time.Duration(remaining) * time.Second,
	}
	copy(a.Origin[:], b[offOrigin:])
	if sig := b[len(b)-signatureLen:]; !isZero(sig) {
		a.Signature = bytes.Clone(sig)
	}
	return a, nil
}

// verifyEncoded checks the signature of an encoded announcement under key.
func verifyEncoded(key ed25519.PublicKey, b []byte) bool {
	return identity.Verify(key, signedMessage(b), b[len(b)-signatureLen:])
}

// signedMessage returns what the origin signs: the domain, then the encoding
// without the unsigned fields (hop count, remaining lifetime) and the
// signature.
func signedMessage(b []byte) []byte {
	body := b[:len(b)-signatureLen]
	m := make([]byte, 0, len(signDomain)+len(body)-(offFlags-offHops))
	m = append(m, signDomain...)
	m = append(m, body[:offHops]...)
	return append(m, body[offFlags:]...)
}

// remainingAt is the lifetime left at now of an announcement that expires
// at expires, as sent: rounded down to whole seconds, so that a relay never
// hands on more than it has, and capped at ttl.
func remainingAt(expires, now time.Time, ttl time.Duration) time.Duration {
	r := expires.Sub(now).Truncate(time.Second)
	return max(0, min(r, ttl))
}

// putRemaining sets the remaining lifetime field of the encoded
// announcement b to r (whole seconds in [0, TTL]).
func putRemaining(b []byte, r time.Duration) {
	binary.BigEndian.PutUint32(b[offRemaining:], uint32(r/time.Second))
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
