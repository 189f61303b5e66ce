package wirevec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = "# A page\n\nProse, then vectors:\n\n```vectors\n" +
	"key = 00010203 04050607\n" +
	"count = 0x10\n" +
	"word = \"hi\"\n" +
	"\n" +
	"long =\n" +
	"  00000000 00000000\n" +
	"  ffff\n" +
	"```\n\nMore prose.\n\n```go\nnot = vectors\n```\n"

func writeSample(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "WIRE.md")
	if err := os.WriteFile(path, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// recorder is a TB that records Errorf instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestReadAndCheck(t *testing.T) {
	rec := &recorder{TB: t}
	d := Load(rec, writeSample(t))
	if got := fmt.Sprintf("%x", d.Bytes("key")); got != "0001020304050607" {
		t.Errorf("key = %s", got)
	}
	if d.Uint("count") != 16 || d.Text("word") != "hi" {
		t.Errorf("count %d, word %q", d.Uint("count"), d.Text("word"))
	}
	if got := fmt.Sprintf("%x", d.Bytes("long")); got != "0000000000000000ffff" {
		t.Errorf("long = %s", got)
	}
	if _, ok := d.entries["not"]; ok {
		t.Error("a line of a go block was read as a vector")
	}
	d.Check("key", []byte{0, 1, 2, 3, 4, 5, 6, 7})
	if len(rec.errs) != 0 {
		t.Fatalf("equal bytes reported: %v", rec.errs)
	}
	d.Check("key", []byte{0, 1, 2, 3, 4, 5, 6, 8})
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "key = 00010203 04050608") {
		t.Fatalf("a difference reported as %q, want the line the document should have", rec.errs)
	}
}

// In update mode the document gets the new lines and keeps the rest.
func TestUpdate(t *testing.T) {
	path := writeSample(t)
	long := make([]byte, 40)
	long[39] = 0xff
	t.Run("update", func(t *testing.T) {
		t.Setenv(UpdateEnv, "1")
		d := Load(t, path)
		d.Check("key", []byte{0xaa})
		d.Check("long", long)
	})
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(sample, "key = 00010203 04050607\n", "key = aa\n", 1)
	want = strings.Replace(want, "long =\n  00000000 00000000\n  ffff\n",
		"long =\n  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n  00000000 000000ff\n", 1)
	if string(raw) != want {
		t.Fatalf("updated document:\n%s\nwant:\n%s", raw, want)
	}
	d := Load(t, path)
	if fmt.Sprintf("%x", d.Bytes("long")) != fmt.Sprintf("%x", long) {
		t.Fatal("the updated vector does not read back")
	}
}
