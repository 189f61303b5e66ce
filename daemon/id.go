package daemon

import (
	"crypto/ed25519"
	"crypto/sha256"

	"github.com/netmesh/netmesh/daemon/internal/codec"
	"github.com/netmesh/netmesh/identity"
)

// IDSize is the size of a daemon id in bytes.
const IDSize = 16

// ID identifies a daemon wherever it runs: the first 16 bytes of the
// SHA-256 of "netmesh daemon id v1" and the daemon's ed25519 public key.
// It never changes while the daemon lives, through migrations and
// promotions; the domain string keeps it apart from every NodeID. Its
// text form is 26 characters of the NodeID alphabet (lowercase base32).
// The zero ID means "no daemon".
type ID [IDSize]byte

// IDFromKey derives the id of the daemon whose public key is pub.
func IDFromKey(pub ed25519.PublicKey) ID {
	h := sha256.New()
	h.Write([]byte("netmesh daemon id v1"))
	h.Write(pub)
	var id ID
	copy(id[:], h.Sum(nil))
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

// Short returns the first 8 characters of String, for logs and tables.
func (id ID) Short() string { return id.String()[:8] }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

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

// idOf returns the id of a daemon key.
func idOf(key *identity.Identity) ID { return IDFromKey(key.PublicKey()) }
