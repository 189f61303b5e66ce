package task

import (
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/netmesh/netmesh/daemon/internal/codec"
)

// IDSize is the size of a task id in bytes.
const IDSize = 16

// ID identifies a task everywhere: a 48-bit Unix time in milliseconds
// followed by 80 random bits, so ids are unique without coordination and
// sort by creation time. Its text form is 26 characters of the NodeID
// alphabet (lowercase base32). The zero ID means "no task".
type ID [IDSize]byte

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
	if err := codec.ParseID(id[:], s, ErrInvalidID); err != nil {
		return ID{}, err
	}
	return id, nil
}

// String returns the id's text form.
func (id ID) String() string { return codec.FormatID(id[:]) }

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
