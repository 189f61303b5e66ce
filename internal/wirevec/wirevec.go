// Package wirevec reads the wire test vectors of docs/WIRE.md, so that the
// tests of each layer (noise, mesh, rpc) regenerate the bytes that layer
// puts on the wire and compare them with the document: the document and
// the code cannot drift apart, and another implementation can check itself
// against the same lines.
//
// The vectors are the lines of the document's fenced blocks tagged
// "vectors":
//
//	name = value
//
// A value continues on the lines below that start with a space. It is hex
// bytes (spaces between them are ignored), a number (decimal, or hex with
// 0x), or a Go-quoted string.
//
// With the environment variable NETMESH_UPDATE_VECTORS=1, Check writes
// what it got into the document instead of failing: for a deliberate
// change of the protocol, after which the new lines are reviewed like
// code. The layers read each other's vectors as inputs, so update them
// in order: noise and rpc first, then mesh.
package wirevec

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// UpdateEnv names the environment variable that turns on update mode.
const UpdateEnv = "NETMESH_UPDATE_VECTORS"

// bytesPerLine is how many bytes a long hex value shows per line, in
// groups of groupBytes: 32 bytes is one key, and a group of four bytes
// lines up with the 4-byte fields of the headers.
const (
	bytesPerLine = 32
	groupBytes   = 4
)

// Doc is the vectors of one document.
type Doc struct {
	tb      testing.TB
	path    string
	update  bool
	lines   []string
	entries map[string]entry

	mu      sync.Mutex
	updates map[string][]string // name to its new lines, in update mode
}

// entry is one vector: its lines in the document and its value with the
// continuation lines joined.
type entry struct {
	first, last int // lines[first:last+1]
	value       string
}

// Load reads the vectors of the document at path. In update mode, the
// changed vectors are written back when the test ends.
func Load(tb testing.TB, path string) *Doc {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("wire vectors: %v", err)
	}
	d := &Doc{tb: tb, path: path, update: os.Getenv(UpdateEnv) == "1", entries: map[string]entry{}, updates: map[string][]string{}}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		d.lines = append(d.lines, sc.Text())
	}
	if err := d.parse(); err != nil {
		tb.Fatalf("wire vectors in %s: %v", path, err)
	}
	if d.update {
		tb.Cleanup(d.write)
	}
	return d
}

// parse finds the entries in the vectors blocks.
func (d *Doc) parse() error {
	in, cur := false, ""
	for i, l := range d.lines {
		switch {
		case !in && strings.TrimSpace(l) == "```vectors":
			in, cur = true, ""
		case in && strings.TrimSpace(l) == "```":
			in = false
		case !in:
		case strings.HasPrefix(l, " ") && cur != "":
			e := d.entries[cur]
			e.last, e.value = i, e.value+" "+strings.TrimSpace(l)
			d.entries[cur] = e
		case strings.TrimSpace(l) == "":
			cur = ""
		default:
			name, value, ok := strings.Cut(l, "=")
			name = strings.TrimSpace(name)
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return fmt.Errorf("line %d: %q is not name = value", i+1, l)
			}
			if _, dup := d.entries[name]; dup {
				return fmt.Errorf("line %d: %s given twice", i+1, name)
			}
			d.entries[name] = entry{first: i, last: i, value: strings.TrimSpace(value)}
			cur = name
		}
	}
	if in {
		return fmt.Errorf("a vectors block is not closed")
	}
	return nil
}

// value returns the text of vector name.
func (d *Doc) value(name string) string {
	d.tb.Helper()
	e, ok := d.entries[name]
	if !ok {
		d.tb.Fatalf("wire vectors: %s has no line %q in a vectors block", d.path, name)
	}
	return strings.TrimSpace(e.value)
}

// Bytes returns vector name as bytes.
func (d *Doc) Bytes(name string) []byte {
	d.tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(d.value(name)), ""))
	if err != nil {
		d.tb.Fatalf("wire vectors: %s: %v", name, err)
	}
	return b
}

// Uint returns vector name as a number.
func (d *Doc) Uint(name string) uint64 {
	d.tb.Helper()
	n, err := strconv.ParseUint(d.value(name), 0, 64)
	if err != nil {
		d.tb.Fatalf("wire vectors: %s: %v", name, err)
	}
	return n
}

// Text returns vector name as a string.
func (d *Doc) Text(name string) string {
	d.tb.Helper()
	s, err := strconv.Unquote(d.value(name))
	if err != nil {
		d.tb.Fatalf("wire vectors: %s: %v", name, err)
	}
	return s
}

// Check compares got with vector name (bytes) and reports a difference
// as the line the document should have; in update mode it records got
// instead.
func (d *Doc) Check(name string, got []byte) {
	d.tb.Helper()
	if _, ok := d.entries[name]; ok && bytes.Equal(got, d.Bytes(name)) {
		return
	}
	lines := Format(name, got)
	if d.update {
		if _, ok := d.entries[name]; !ok {
			d.tb.Fatalf("wire vectors: add a line %q to a vectors block of %s, then update", name+" =", d.path)
		}
		d.mu.Lock()
		d.updates[name] = lines
		d.mu.Unlock()
		return
	}
	d.tb.Errorf("wire vectors: %s differs from %s; the code makes\n%s\n(if the protocol changed on purpose, run the test with %s=1)", name, d.path, strings.Join(lines, "\n"), UpdateEnv)
}

// Format returns the document lines of vector name with value b.
func Format(name string, b []byte) []string {
	h := hex.EncodeToString(b)
	if len(b) <= bytesPerLine {
		return []string{name + " = " + group(h)}
	}
	out := []string{name + " ="}
	for len(h) > 0 {
		n := min(len(h), 2*bytesPerLine)
		out = append(out, "  "+group(h[:n]))
		h = h[n:]
	}
	return out
}

// group puts a space between groups of groupBytes bytes of hex h.
func group(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 * groupBytes {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h[i:min(len(h), i+2*groupBytes)])
	}
	return b.String()
}

// write replaces the updated vectors' lines and writes the document.
func (d *Doc) write() {
	if len(d.updates) == 0 {
		return
	}
	lines := d.lines
	// From the bottom up, so that the line numbers above stay right.
	for i := len(lines) - 1; i >= 0; i-- {
		for name, e := range d.entries {
			if e.first != i {
				continue
			}
			if repl, ok := d.updates[name]; ok {
				lines = append(lines[:e.first:e.first], append(repl, lines[e.last+1:]...)...)
			}
		}
	}
	out := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(d.path, []byte(out), 0o644); err != nil {
		d.tb.Errorf("wire vectors: %v", err)
		return
	}
	d.tb.Logf("wire vectors: updated %d vectors in %s", len(d.updates), d.path)
}
