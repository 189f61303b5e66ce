package capability

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Set is what a node says it can do: tags ("gpu", "skill:summarize",
// "region:eu") and metadata ("gpu_mem_gb" = "24"). Metadata values that parse
// as numbers can be compared with AtLeast and AtMost.
//
// Tags and metadata keys are MinTagLen..MaxTagLen (keys: 1..MaxMetadataKeyLen)
// characters of lowercase letters, digits and "-:._/". Tags beginning with
// "scope:" are reserved for scopes (see Scope). The order of Tags does not
// matter; the encoding sorts them. A Set held by the index is shared and must
// not be modified.
type Set struct {
	Tags     []string
	Metadata map[string]string
}

// ScopeKind is the visibility a set asks for through its scope tag. Larger
// values are stricter.
type ScopeKind uint8

// Scope kinds, from the loosest to the strictest.
const (
	// ScopeGlobal: no scope tag, visible to every query.
	ScopeGlobal ScopeKind = iota
	// ScopeRegion: "scope:region:<name>", visible to queries from that region.
	ScopeRegion
	// ScopeTenant: "scope:tenant:<id>", visible to queries from that tenant.
	ScopeTenant
	// ScopeSubnetLocal: "scope:subnet-local", visible only to queries from
	// the node's own subnet.
	ScopeSubnetLocal
)

// Reserved scope tags and prefixes.
const (
	scopePrefix       = "scope:"
	tagSubnetLocal    = "scope:subnet-local"
	scopeTenantPrefix = "scope:tenant:"
	scopeRegionPrefix = "scope:region:"
)

// String returns the kind's name.
func (k ScopeKind) String() string {
	switch k {
	case ScopeGlobal:
		return "global"
	case ScopeRegion:
		return "region"
	case ScopeTenant:
		return "tenant"
	case ScopeSubnetLocal:
		return "subnet-local"
	}
	return "ScopeKind(" + strconv.Itoa(int(k)) + ")"
}

// HasTag reports whether the set carries tag t.
func (s Set) HasTag(t string) bool { return slices.Contains(s.Tags, t) }

// Number returns metadata key k parsed as a finite number.
func (s Set) Number(k string) (float64, bool) {
	v, ok := s.Metadata[k]
	if !ok {
		return 0, false
	}
	return parseNumber(v)
}

// Equal reports whether s and t say the same: the same tags, in any order,
// and the same metadata (nil and empty are the same).
func (s Set) Equal(t Set) bool {
	if len(s.Tags) != len(t.Tags) || !maps.Equal(s.Metadata, t.Metadata) {
		return false
	}
	return slices.Equal(s.Tags, t.Tags) || // the canonical, sorted order
		slices.Equal(slices.Sorted(slices.Values(s.Tags)), slices.Sorted(slices.Values(t.Tags)))
}

// Scope returns the set's effective scope: the strictest of its scope tags,
// and the tenant id or region name it names ("" for global and subnet-local).
func (s Set) Scope() (ScopeKind, string) {
	kind, val := ScopeGlobal, ""
	for _, t := range s.Tags {
		var k ScopeKind
		var v string
		switch {
		case t == tagSubnetLocal:
			k = ScopeSubnetLocal
		case strings.HasPrefix(t, scopeTenantPrefix):
			k, v = ScopeTenant, t[len(scopeTenantPrefix):]
		case strings.HasPrefix(t, scopeRegionPrefix):
			k, v = ScopeRegion, t[len(scopeRegionPrefix):]
		default:
			continue
		}
		if k > kind {
			kind, val = k, v
		}
	}
	return kind, val
}

// Validate reports the first limit the set breaks as a *ValidationError, or
// nil. Duplicate tags, unknown "scope:" tags, more than one tenant or
// region scope, and a NameKey value that is not a valid name are errors.
func (s Set) Validate() error {
	if len(s.Tags) > MaxTags {
		return &ValidationError{Field: "set", Reason: fmt.Sprintf("%d tags, at most %d allowed", len(s.Tags), MaxTags)}
	}
	if len(s.Metadata) > MaxMetadataEntries {
		return &ValidationError{Field: "set", Reason: fmt.Sprintf("%d metadata entries, at most %d allowed", len(s.Metadata), MaxMetadataEntries)}
	}
	seen := make(map[string]struct{}, len(s.Tags))
	var tenant, region bool
	for _, t := range s.Tags {
		if err := validateName("tag", t, MinTagLen, MaxTagLen); err != nil {
			return err
		}
		if _, dup := seen[t]; dup {
			return &ValidationError{Field: "tag", Value: t, Reason: "duplicate"}
		}
		seen[t] = struct{}{}
		if !strings.HasPrefix(t, scopePrefix) {
			continue
		}
		switch {
		case t == tagSubnetLocal:
		case strings.HasPrefix(t, scopeTenantPrefix) && len(t) > len(scopeTenantPrefix):
			if tenant {
				return &ValidationError{Field: "tag", Value: t, Reason: "more than one tenant scope"}
			}
			tenant = true
		case strings.HasPrefix(t, scopeRegionPrefix) && len(t) > len(scopeRegionPrefix):
			if region {
				return &ValidationError{Field: "tag", Value: t, Reason: "more than one region scope"}
			}
			region = true
		default:
			return &ValidationError{Field: "tag", Value: t, Reason: `unknown scope; want scope:subnet-local, scope:tenant:<id> or scope:region:<name>`}
		}
	}
	for k, v := range s.Metadata {
		if err := validateName("metadata key", k, 1, MaxMetadataKeyLen); err != nil {
			return err
		}
		if err := validateValue(k, v); err != nil {
			return err
		}
	}
	if name, ok := s.Metadata[NameKey]; ok {
		if why := nameFault(name); why != "" {
			return &ValidationError{Field: "metadata value", Value: NameKey, Reason: "not a node name: " + why}
		}
	}
	if n := s.encodedLen(); n > MaxSetSize {
		return &ValidationError{Field: "set", Reason: fmt.Sprintf("encodes to %d bytes, at most %d allowed", n, MaxSetSize)}
	}
	return nil
}

// validateName checks a tag or a metadata key.
func validateName(field, s string, minLen, maxLen int) error {
	if len(s) < minLen || len(s) > maxLen {
		return &ValidationError{Field: field, Value: s, Reason: fmt.Sprintf("length %d, want %d to %d", len(s), minLen, maxLen)}
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return &ValidationError{Field: field, Value: s, Reason: fmt.Sprintf("character %q not allowed; use a-z 0-9 - : . _ /", s[i])}
		}
	}
	return nil
}

// validateValue checks a metadata value.
func validateValue(k, v string) error {
	if len(v) > MaxMetadataValueLen {
		return &ValidationError{Field: "metadata value", Value: k, Reason: fmt.Sprintf("%d bytes, at most %d allowed", len(v), MaxMetadataValueLen)}
	}
	if !utf8.ValidString(v) {
		return &ValidationError{Field: "metadata value", Value: k, Reason: "not valid UTF-8"}
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return &ValidationError{Field: "metadata value", Value: k, Reason: "contains a control character"}
		}
	}
	return nil
}

// isNameByte reports whether c may appear in a tag or metadata key.
func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == ':' || c == '.' || c == '_' || c == '/'
}

// parseNumber parses a metadata value as a finite number.
func parseNumber(v string) (float64, bool) {
	if v == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// quote quotes s for error messages.
func quote(s string) string { return strconv.Quote(s) }

// encodedLen is the size of appendSet's output.
func (s Set) encodedLen() int {
	n := 2
	for _, t := range s.Tags {
		n += 1 + len(t)
	}
	for k, v := range s.Metadata {
		n += 1 + len(k) + 2 + len(v)
	}
	return n
}

// appendSet appends the canonical encoding of a valid set: tag count, then
// each tag as length byte and bytes, in ascending order; entry count, then
// each entry as key length byte, key, value length (2 bytes, big endian),
// value, in ascending key order.
func appendSet(b []byte, s Set) []byte {
	tags := slices.Clone(s.Tags)
	slices.Sort(tags)
	b = append(b, byte(len(tags)))
	for _, t := range tags {
		b = append(b, byte(len(t)))
		b = append(b, t...)
	}
	keys := make([]string, 0, len(s.Metadata))
	for k := range s.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, byte(len(keys)))
	for _, k := range keys {
		v := s.Metadata[k]
		b = append(b, byte(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	return b
}

// decodeSet decodes exactly b as a canonical set encoding and validates it.
// An empty tag list decodes as nil and an empty metadata map as nil.
func decodeSet(b []byte) (Set, error) {
	var s Set
	r := reader{b: b}
	nt := int(r.byte())
	if nt > MaxTags {
		return s, fmt.Errorf("%w: %d tags", ErrMalformed, nt)
	}
	if nt > 0 {
		s.Tags = make([]string, 0, nt)
	}
	for i := 0; i < nt; i++ {
		t := string(r.bytes(int(r.byte())))
		if i > 0 && t <= s.Tags[i-1] {
			r.fail()
		}
		s.Tags = append(s.Tags, t)
	}
	nm := int(r.byte())
	if nm > MaxMetadataEntries {
		return Set{}, fmt.Errorf("%w: %d metadata entries", ErrMalformed, nm)
	}
	if nm > 0 {
		s.Metadata = make(map[string]string, nm)
	}
	prev := ""
	for i := 0; i < nm; i++ {
		k := string(r.bytes(int(r.byte())))
		v := string(r.bytes(int(r.uint16())))
		if i > 0 && k <= prev {
			r.fail()
		}
		prev = k
		s.Metadata[k] = v
	}
	if r.bad || len(r.b) != 0 {
		return Set{}, fmt.Errorf("%w: set encoding is truncated, unsorted or has trailing bytes", ErrMalformed)
	}
	if err := s.Validate(); err != nil {
		return Set{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, nil
}

// reader consumes a byte slice; after the first short read every read returns
// zeros and bad stays set.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) fail() { r.bad, r.b = true, nil }

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) uint16() uint16 {
	if v := r.bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}
