package task

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// IDSize is the size of a task id in bytes.
const IDSize = 16

// ID identifies a task everywhere: a 48-bit Unix time in milliseconds
// followed by 80 random bits, so ids are unique without coordination and
// sort by creation time. Its text form is 26 characters of the NodeID
// alphabet (lowercase base32). The zero ID means "no task".
type ID [IDSize]byte

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a fresh id stamped with now.
func NewID(now time.Time) ID {
	var id ID
	ms := uint64(now.UnixMilli())
	binary.BigEndian.PutUint16(id[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(id[2:6], uint32(ms))
	rand.Read(id[6:])
	return id
}

// ParseID parses the text form of an id.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != idEncoding.EncodedLen(IDSize) {
		return id, fmt.Errorf("%w: %q is not %d characters", ErrInvalidID, s, idEncoding.EncodedLen(IDSize))
	}
	b, err := idEncoding.DecodeString(strings.ToLower(s))
	if err != nil || len(b) != IDSize {
		return id, fmt.Errorf("%w: %q", ErrInvalidID, s)
	}
	copy(id[:], b)
	if id.String() != strings.ToLower(s) { // a non-canonical last character
		return ID{}, fmt.Errorf("%w: %q is not canonical", ErrInvalidID, s)
	}
	return id, nil
}

// String returns the id's text form.
func (id ID) String() string { return idEncoding.EncodeToString(id[:]) }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// Time returns the creation time stamped in the id.
func (id ID) Time() time.Time {
	ms := uint64(binary.BigEndian.Uint16(id[0:2]))<<32 | uint64(binary.BigEndian.Uint32(id[2:6]))
	return time.UnixMilli(int64(ms))
}

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}
