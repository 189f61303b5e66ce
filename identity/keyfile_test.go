package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netmesh/netmesh/internal/testenv"
)

// TestKeyFilePKCS8 saves a key as PKCS#8 and loads it back.
func TestKeyFilePKCS8(t *testing.T) {
	id, _ := Generate()
	path := filepath.Join(t.TempDir(), "node.pem")
	if err := id.SaveAs(path, KeyPKCS8); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("PKCS#8 file starts %q", data[:min(len(data), 40)])
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeID() != id.NodeID() {
		t.Fatal("loaded identity differs")
	}
	if err := id.SaveAs(path, KeyPKCS8); err == nil {
		t.Fatal("SaveAs overwrote an existing key file")
	}
}

// TestParsePEMRejects checks the PKCS#8 files that are not an ed25519
// key netmesh can use.
func TestParsePEMRejects(t *testing.T) {
	rsaLike := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}})
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})
	id, _ := Generate()
	good, _ := id.MarshalPEM(KeyPKCS8)
	cases := map[string]struct {
		data []byte
		want string
	}{
		"not PKCS#8":    {rsaLike, "PKCS#8"},
		"not ed25519":   {ecKey, "want an ed25519 key"},
		"trailing data": {append(append([]byte{}, good...), "x"...), "trailing data"},
		"headers":       {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}}), "headers"},
		"too large":     {bytes.Repeat([]byte(" "), maxKeyFile+1), "too large"},
	}
	for name, c := range cases {
		_, err := ParsePEM(c.data)
		if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrKeyFile saying %q", name, err, c.want)
		}
	}
}

// TestOpenSSLKeys reads a key openssl made and has openssl read a key
// netmesh made: both must name the same public key.
func TestOpenSSLKeys(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		testenv.Missing(t, "keys made by openssl (openssl)", "openssl is not installed (Debian package openssl)")
	}
	dir := t.TempDir()

	theirs := filepath.Join(dir, "openssl.pem")
	run(t, openssl, "genpkey", "-algorithm", "ed25519", "-out", theirs)
	if err := os.Chmod(theirs, 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := Load(theirs)
	if err != nil {
		t.Fatal(err)
	}
	if pub := publicKeyOf(t, run(t, openssl, "pkey", "-in", theirs, "-pubout")); !pub.Equal(id.PublicKey()) {
		t.Fatalf("openssl's public key %x, netmesh's %x", pub, id.PublicKey())
	}

	ours := filepath.Join(dir, "netmesh.pem")
	mine, _ := Generate()
	if err := mine.SaveAs(ours, KeyPKCS8); err != nil {
		t.Fatal(err)
	}
	if pub := publicKeyOf(t, run(t, openssl, "pkey", "-in", ours, "-pubout")); !pub.Equal(mine.PublicKey()) {
		t.Fatalf("openssl read public key %x from our file, want %x", pub, mine.PublicKey())
	}
}

// run runs a command and returns its standard output.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// publicKeyOf decodes a "PUBLIC KEY" PEM block holding an ed25519 key.
func publicKeyOf(t *testing.T, data []byte) ed25519.PublicKey {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("not a public key: %q", data)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		t.Fatalf("public key is %T", k)
	}
	return pub
}

// FuzzParsePEM feeds arbitrary bytes to the key file parser, which reads
// files an operator may have got from anywhere: it must never panic, and
// a key it accepts must survive a round trip through both formats.
func FuzzParsePEM(f *testing.F) {
	id, _ := FromSeed(bytes.Repeat([]byte{7}, SeedSize))
	for _, format := range []KeyFormat{KeyNetmesh, KeyPKCS8} {
		b, _ := id.MarshalPEM(format)
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"))
	// An X25519 key: PKCS#8 that parses, with the wrong algorithm.
	x, _ := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	der, _ := x509.MarshalPKCS8PrivateKey(x)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := ParsePEM(data)
		if err != nil {
			if !errors.Is(err, ErrKeyFile) {
				t.Fatalf("error %v does not wrap ErrKeyFile", err)
			}
			return
		}
		for _, format := range []KeyFormat{KeyNetmesh, KeyPKCS8} {
			b, err := id.MarshalPEM(format)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParsePEM(b)
			if err != nil || again.NodeID() != id.NodeID() {
				t.Fatalf("format %d round trip: %v", format, err)
			}
		}
	})
}
