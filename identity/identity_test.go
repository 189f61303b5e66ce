package identity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/curve25519"
)

func TestSeedRoundTrip(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromSeed(a.Seed())
	if err != nil {
		t.Fatal(err)
	}
	if !a.PublicKey().Equal(b.PublicKey()) || a.NodeID() != b.NodeID() {
		t.Fatal("identity from the same seed differs")
	}
	if _, err := FromSeed(make([]byte, 31)); !errors.Is(err, ErrBadSeed) {
		t.Fatalf("31-byte seed: err = %v, want ErrBadSeed", err)
	}
}

func TestSignVerify(t *testing.T) {
	id, _ := Generate()
	msg := []byte("netmesh")
	sig := id.Sign(msg)
	if !Verify(id.PublicKey(), msg, sig) {
		t.Fatal("valid signature rejected")
	}
	sig[0] ^= 1
	if Verify(id.PublicKey(), msg, sig) {
		t.Fatal("tampered signature accepted")
	}
	if Verify(id.PublicKey()[:31], msg, sig) || Verify(id.PublicKey(), msg, sig[:63]) {
		t.Fatal("wrong-size key or signature accepted")
	}
}

func TestX25519MatchesEd25519(t *testing.T) {
	for range 20 {
		id, _ := Generate()
		want, err := curve25519.X25519(id.X25519(), curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		got, err := X25519PublicKey(id.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("X25519 public key from ed25519 key = %x, want %x", got, want)
		}
	}
	if _, err := X25519PublicKey(make([]byte, 5)); !errors.Is(err, ErrBadPublicKey) {
		t.Fatalf("short key: err = %v", err)
	}
}

func TestNodeIDString(t *testing.T) {
	id, _ := Generate()
	n := id.NodeID()
	s := n.String()
	if len(s) != 26 || s != strings.ToLower(s) {
		t.Fatalf("String() = %q, want 26 lowercase characters", s)
	}
	for _, in := range []string{s, strings.ToUpper(s)} {
		got, err := ParseNodeID(in)
		if err != nil || got != n {
			t.Fatalf("ParseNodeID(%q) = %v, %v", in, got, err)
		}
	}
	bad := []string{"", "abc", s[:25], s + "a", s[:25] + "1", s[:25] + "!"}
	// The last character carries 2 unused bits: a non-canonical spelling
	// must not parse to the same id.
	last := s[len(s)-1]
	if last != 'a' && last != 'q' && last != '2' && last != 'i' && last != 'y' && last != '6' {
		t.Logf("last char %c", last)
	}
	bad = append(bad, s[:25]+"b")
	for _, in := range bad {
		if got, err := ParseNodeID(in); err == nil && got == n && in != s {
			t.Errorf("ParseNodeID(%q) accepted as %v", in, got)
		} else if err != nil && !errors.Is(err, ErrBadNodeID) {
			t.Errorf("ParseNodeID(%q): err = %v, want ErrBadNodeID", in, err)
		}
	}
	m := map[NodeID]int{n: 1}
	if m[NodeIDFromKey(id.PublicKey())] != 1 {
		t.Fatal("NodeID is not a usable map key")
	}
	var txt NodeID
	if err := txt.UnmarshalText([]byte(s)); err != nil || txt != n {
		t.Fatalf("UnmarshalText: %v, %v", txt, err)
	}
}

func FuzzParseNodeID(f *testing.F) {
	id, _ := Generate()
	f.Add(id.NodeID().String())
	f.Add("")
	f.Add("zzzzzzzzzzzzzzzzzzzzzzzzzz")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNodeID(s)
		if err != nil {
			return
		}
		if n.String() != strings.ToLower(s) {
			t.Fatalf("ParseNodeID(%q) = %v, which prints differently", s, n)
		}
	})
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	id, _ := Generate()
	if err := id.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeID() != id.NodeID() {
		t.Fatal("loaded identity differs")
	}
	if err := id.Save(path); err == nil {
		t.Fatal("Save overwrote an existing key file")
	}
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	id, _ := Generate()
	good := filepath.Join(dir, "good.key")
	if err := id.Save(good); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(good)
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode) // WriteFile's mode is filtered by umask
		return p
	}
	cases := map[string]struct {
		path string
		want string
	}{
		"world readable": {write("open.key", data, 0o644), "mode 0644"},
		"group readable": {write("group.key", data, 0o640), "mode 0640"},
		"not pem":        {write("junk.key", []byte("hello"), 0o600), "no PEM block"},
		"wrong type":     {write("type.key", []byte("-----BEGIN OTHER-----\nAAAA\n-----END OTHER-----\n"), 0o600), "PEM type"},
		"wrong size": {write("size.key", []byte("-----BEGIN NETMESH ED25519 PRIVATE KEY-----\nAAAA\n-----END NETMESH ED25519 PRIVATE KEY-----\n"), 0o600),
			"key is 3 bytes"},
		"trailing data": {write("trail.key", append(append([]byte{}, data...), "extra"...), 0o600), "trailing data"},
		"missing":       {filepath.Join(dir, "none.key"), "no such file"},
		"directory":     {dir, "not a regular file"},
	}
	for name, c := range cases {
		_, err := Load(c.path)
		if err == nil {
			t.Errorf("%s: Load succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.path)) {
			t.Errorf("%s: error %q should name the file and say %q", name, err, c.want)
		}
	}
}
