package channel

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/netmesh/netmesh/capability"
)

// SubnetLevels is the depth of the subnet hierarchy.
const SubnetLevels = 4

// SubnetID places a node in a four-level hierarchy, one byte per level,
// written like "3.1.7.0": region 3, zone 1, rack 7. Levels are filled from
// the left and the first zero ends the id, so 3.1.0.0 is the parent of
// 3.1.7.0 and 3.0.0.0 of 3.1.0.0. The zero SubnetID means "no subnet": a
// node without one sees only Global channels and is no one's ancestor.
type SubnetID [SubnetLevels]byte

// Depth returns the number of levels set (0 for the zero id).
func (s SubnetID) Depth() int {
	for i, b := range s {
		if b == 0 {
			return i
		}
	}
	return SubnetLevels
}

// Valid reports whether no level follows a zero level.
func (s SubnetID) Valid() bool {
	d := s.Depth()
	for _, b := range s[d:] {
		if b != 0 {
			return false
		}
	}
	return true
}

// IsZero reports whether s is the zero id (no subnet).
func (s SubnetID) IsZero() bool { return s == SubnetID{} }

// Parent returns the id one level up: 3.1.7.0 → 3.1.0.0 → 3.0.0.0.
// A top-level id and the zero id have no parent: ok is false.
func (s SubnetID) Parent() (p SubnetID, ok bool) {
	d := s.Depth()
	if d <= 1 {
		return SubnetID{}, false
	}
	s[d-1] = 0
	return s, true
}

// IsAncestorOf reports whether s is a strict ancestor of t: t lies below s
// in the hierarchy. The zero id is no one's ancestor.
func (s SubnetID) IsAncestorOf(t SubnetID) bool {
	d := s.Depth()
	if d == 0 || d >= t.Depth() {
		return false
	}
	return bytes.Equal(s[:d], t[:d])
}

// String returns the dotted form, e.g. "3.1.0.0".
func (s SubnetID) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", s[0], s[1], s[2], s[3])
}

// MarshalText implements encoding.TextMarshaler.
func (s SubnetID) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *SubnetID) UnmarshalText(b []byte) error {
	id, err := ParseSubnetID(string(b))
	if err != nil {
		return err
	}
	*s = id
	return nil
}

// ParseSubnetID parses the dotted form: four decimal levels 0..255 without
// leading zeros, no level after a zero ("3.0.1.0" is invalid). Errors wrap
// ErrInvalidSubnet.
func ParseSubnetID(str string) (SubnetID, error) {
	var s SubnetID
	parts := strings.Split(str, ".")
	if len(parts) != SubnetLevels {
		return s, fmt.Errorf("%w: %q does not have %d levels", ErrInvalidSubnet, truncate(str), SubnetLevels)
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil || strconv.FormatUint(n, 10) != p {
			return SubnetID{}, fmt.Errorf("%w: level %d of %q is not a number 0..255", ErrInvalidSubnet, i+1, truncate(str))
		}
		s[i] = byte(n)
	}
	if !s.Valid() {
		return SubnetID{}, fmt.Errorf("%w: %q has a level after a zero level", ErrInvalidSubnet, str)
	}
	return s, nil
}

// SubnetTagPrefix starts the capability tag a node announces to pin its own
// subnet: "subnet:3.1.7.0" (see SubnetTag).
const SubnetTagPrefix = "subnet:"

// SubnetTag returns the capability tag that pins subnet s, e.g.
// "subnet:3.1.7.0". A node whose announcement carries a valid subnet tag is
// in that subnet whatever the policy says; the mesh adds it to the node's
// announcement when its channel Options pin a Subnet.
func SubnetTag(s SubnetID) string { return SubnetTagPrefix + s.String() }

// SubnetRule maps nodes that announce Tag to Subnet.
type SubnetRule struct {
	Tag    string
	Subnet SubnetID
}

// SubnetPolicy assigns subnets from announced capability tags. Every node
// uses the same policy, so every node derives the same subnet for a given
// announcement. Rules are tried in order and the first whose tag the node
// carries wins, so list specific rules ("rack:7" → 3.1.7.0) before general
// ones ("region:eu" → 3.0.0.0).
//
// Subnets are derived from what nodes announce about themselves: they scope
// channels (who sees what) but prove nothing. Use tokens to keep a node out.
type SubnetPolicy struct {
	Rules []SubnetRule
}

// Validate reports a rule with an invalid subnet or an empty tag.
func (p SubnetPolicy) Validate() error {
	for i, r := range p.Rules {
		if r.Tag == "" || r.Subnet.IsZero() || !r.Subnet.Valid() {
			return fmt.Errorf("%w: rule %d (%q → %s) needs a tag and a non-zero valid subnet", ErrInvalidSubnet, i, r.Tag, r.Subnet)
		}
	}
	return nil
}

// Subnet returns the subnet of a node with set s: the subnet its
// SubnetTag pins if it carries one (the first valid one in tag order),
// else the subnet of the first rule whose tag it carries, else zero.
func (p SubnetPolicy) Subnet(s capability.Set) SubnetID {
	for _, t := range s.Tags {
		if rest, ok := strings.CutPrefix(t, SubnetTagPrefix); ok {
			if id, err := ParseSubnetID(rest); err == nil && !id.IsZero() {
				return id
			}
		}
	}
	for _, r := range p.Rules {
		if s.HasTag(r.Tag) {
			return r.Subnet
		}
	}
	return SubnetID{}
}
