package channel

import "fmt"

// ValidateName reports whether s is a valid channel name: 1..MaxNameLen
// bytes of lowercase ASCII letters, digits and "-_./:". The alphabet is the
// one capability tags use, so names are safe in logs, file names, filters
// and command lines, and one name has one spelling. Names are hierarchical
// by convention ("sensors/eu/temp") so a prefix token can cover a subtree.
// Errors wrap ErrInvalidName and say what is wrong.
func ValidateName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("%w: %q must be 1..%d characters, is %d", ErrInvalidName, truncate(s), MaxNameLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !nameChar(s[i]) {
			return fmt.Errorf("%w: %q has %q at byte %d (allowed: a-z 0-9 and -_./:)", ErrInvalidName, truncate(s), s[i], i)
		}
	}
	return nil
}

func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/' || c == ':'
}

// truncate shortens a string for an error message.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
