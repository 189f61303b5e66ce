package docvector

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// fakeT records a failure instead of stopping the test, so that the
// refusals can be checked.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Fatal(...any)          { f.failed = true; panic(f) }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true; panic(f) }

// read runs Bytes against doc and says whether it failed.
func read(t *testing.T, doc, name string) (b []byte, failed bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "doc.md")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fakeT{TB: t}
	defer func() {
		if r := recover(); r != nil && r != any(f) {
			panic(r)
		}
		failed = f.failed
	}()
	return Bytes(f, path, name), false
}

// TestBytes: a named vector is read across lines and spaces, another
// name's is not, and a block that is not hex fails.
func TestBytes(t *testing.T) {
	doc := "x\n<!-- other test vector -->\n```\nff\n```\n<!-- thing test vector -->\n```\n0102 03\n0a\n```\n"
	if b, failed := read(t, doc, "thing"); failed || !bytes.Equal(b, []byte{1, 2, 3, 10}) {
		t.Fatalf("thing: %x, failed %v", b, failed)
	}
	if _, failed := read(t, doc, "missing"); !failed {
		t.Fatal("a missing vector was read")
	}
	if _, failed := read(t, "<!-- bad test vector -->\n```\nzz\n```\n", "bad"); !failed {
		t.Fatal("a block that is not hex was read")
	}
}

// TestHex: 32 bytes a line, and what Hex prints reads back.
func TestHex(t *testing.T) {
	b := bytes.Repeat([]byte{0xab}, 40)
	s := Hex(b)
	if want := 64 + 1 + 16 + 1; len(s) != want {
		t.Fatalf("%q: %d characters, want %d", s, len(s), want)
	}
	got, failed := read(t, "<!-- round test vector -->\n```\n"+s+"```\n", "round")
	if failed || !bytes.Equal(got, b) {
		t.Fatalf("read back %x", got)
	}
}
