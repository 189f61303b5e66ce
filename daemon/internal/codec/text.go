package codec

import (
	"encoding/base32"
	"fmt"
	"strings"
)

// textEncoding is the text form of ids: lower-case base32, no padding.
var textEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// FormatID returns the text form of the id b.
func FormatID(b []byte) string { return textEncoding.EncodeToString(b) }

// ParseID decodes s, the text form of an id of len(dst) bytes, into dst.
// Upper case is accepted; anything else that is not exactly the canonical
// form fails with an error wrapping invalid.
func ParseID(dst []byte, s string, invalid error) error {
	if n := textEncoding.EncodedLen(len(dst)); len(s) != n {
		return fmt.Errorf("%w: %q is not %d characters", invalid, s, n)
	}
	lower := strings.ToLower(s)
	b, err := textEncoding.DecodeString(lower)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("%w: %q", invalid, s)
	}
	if FormatID(b) != lower { // a non-canonical last character
		return fmt.Errorf("%w: %q is not canonical", invalid, s)
	}
	copy(dst, b)
	return nil
}
