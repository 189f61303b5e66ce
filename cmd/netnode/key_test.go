package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeygenPKCS8 writes a PKCS#8 key file with keygen --format pkcs8 and
// reads it back with id; an unknown format is a usage error.
func TestKeygenPKCS8(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.pem")
	var made, read keyInfo
	mustJSON(t, &made, "keygen", "--json", "--format", "pkcs8", "-k", path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "-----BEGIN PRIVATE KEY-----\n") {
		t.Fatalf("keygen --format pkcs8 wrote %q", data)
	}
	mustJSON(t, &read, "id", "--json", "-k", path)
	if read.NodeID != made.NodeID || read.PublicKey != made.PublicKey {
		t.Fatalf("id read %+v from the file keygen made as %+v", read, made)
	}
	r := netnode(t, "keygen", "--format", "der", "-k", filepath.Join(t.TempDir(), "x"))
	if r.code != 2 || !strings.Contains(r.stderr, "want netmesh or pkcs8") {
		t.Fatalf("keygen --format der: exit %d, %q; want a usage error", r.code, r.stderr)
	}
}
