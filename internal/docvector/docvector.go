// Package docvector reads the test vectors that the docs show, so that a
// test can check that the bytes drawn there are the bytes the code
// builds. A vector is a fenced block of hex right after an HTML comment
// naming it:
//
//	<!-- certificate test vector -->
//	```
//	0100...
//	```
package docvector

import (
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Bytes returns the test vector called name in the Markdown file path
// (the comment's text before " test vector"). It fails t when the file
// has no such vector or the block is not hex.
func Bytes(t testing.TB, path, name string) []byte {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- " + regexp.QuoteMeta(name) + " test vector -->\\s*```\\n(.*?)```")
	m := re.FindSubmatch(doc)
	if m == nil {
		t.Fatalf("%s has no %s test vector", path, name)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(m[1])), ""))
	if err != nil {
		t.Fatalf("%s: the %s test vector: %v", path, name, err)
	}
	return b
}

// Hex formats b as the docs show a vector: 32 bytes of hex a line, so a
// failing test can print what the block should now say.
func Hex(b []byte) string {
	var s strings.Builder
	for len(b) > 0 {
		n := min(len(b), 32)
		s.WriteString(hex.EncodeToString(b[:n]) + "\n")
		b = b[n:]
	}
	return s.String()
}
