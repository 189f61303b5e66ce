package identity

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PEM block types of the key files Load reads.
const (
	// pemType is netmesh's own format: the block holds the 32-byte
	// ed25519 seed.
	pemType = "NETMESH ED25519 PRIVATE KEY"
	// pkcs8PEMType is the standard format (RFC 5958 and RFC 8410), as
	// written by openssl genpkey -algorithm ed25519 and read by most
	// tools: the block holds a PKCS#8 PrivateKeyInfo.
	pkcs8PEMType = "PRIVATE KEY"
)

// maxKeyFile bounds a key file, bytes: either format takes about 120.
const maxKeyFile = 4096

// KeyFormat is the encoding of a key file.
type KeyFormat uint8

const (
	// KeyNetmesh is netmesh's own PEM block, "NETMESH ED25519 PRIVATE
	// KEY", holding the seed. Save writes it.
	KeyNetmesh KeyFormat = iota
	// KeyPKCS8 is a PKCS#8 "PRIVATE KEY" PEM block, the format of
	// openssl genpkey -algorithm ed25519 and other tools.
	KeyPKCS8
)

// ErrKeyFile reports a key file that cannot be used. The error text names
// the file and the reason.
var ErrKeyFile = errors.New("identity: bad key file")

// Save writes the identity's seed to path as a PEM file in netmesh's own
// format with mode 0600. It refuses to overwrite an existing file.
func (id *Identity) Save(path string) error {
	return id.SaveAs(path, KeyNetmesh)
}

// SaveAs is Save in the format f.
func (id *Identity) SaveAs(path string, f KeyFormat) error {
	data, err := id.MarshalPEM(f)
	if err != nil {
		return err
	}
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("identity: saving key: %w", err)
	}
	if _, err := file.Write(data); err != nil {
		file.Close()
		os.Remove(path)
		return fmt.Errorf("identity: writing %s: %w", path, err)
	}
	if err := file.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("identity: writing %s: %w", path, err)
	}
	return nil
}

// MarshalPEM returns the identity's private key as one PEM block in
// format f, for keys kept elsewhere than a file.
func (id *Identity) MarshalPEM(f KeyFormat) ([]byte, error) {
	switch f {
	case KeyNetmesh:
		return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: id.priv.Seed()}), nil
	case KeyPKCS8:
		der, err := x509.MarshalPKCS8PrivateKey(id.priv)
		if err != nil {
			return nil, fmt.Errorf("identity: encoding key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: pkcs8PEMType, Bytes: der}), nil
	}
	return nil, fmt.Errorf("identity: unknown key format %d", f)
}

// Load reads an identity from a key file in either format (see
// ParsePEM). It fails if the file can be read or written by anyone but
// its owner, or is not exactly one ed25519 key block.
func Load(path string) (*Identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("identity: loading key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w %s: not a regular file", ErrKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w %s: mode %04o lets others read it; run chmod 600 %s",
			ErrKeyFile, path, perm, filepath.Clean(path))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: loading key: %w", err)
	}
	id, reason := parsePEM(data)
	if reason != "" {
		return nil, fmt.Errorf("%w %s: %s", ErrKeyFile, path, reason)
	}
	return id, nil
}

// ParsePEM reads an identity from one PEM block in either format:
// netmesh's own ("NETMESH ED25519 PRIVATE KEY") or PKCS#8 ("PRIVATE KEY",
// holding an ed25519 key). Anything but whitespace after the block is an
// error. Errors wrap ErrKeyFile.
func ParsePEM(data []byte) (*Identity, error) {
	id, reason := parsePEM(data)
	if reason != "" {
		return nil, fmt.Errorf("%w: %s", ErrKeyFile, reason)
	}
	return id, nil
}

// parsePEM is ParsePEM with the reason for a failure in words.
func parsePEM(data []byte) (*Identity, string) {
	if len(data) > maxKeyFile {
		return nil, fmt.Sprintf("%d bytes is too large for a key file", len(data))
	}
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, "no PEM block"
	case len(block.Headers) != 0:
		return nil, "unexpected PEM headers"
	case len(trimSpace(rest)) != 0:
		return nil, "trailing data after the key"
	}
	var seed []byte
	switch block.Type {
	case pemType:
		seed = block.Bytes
	case pkcs8PEMType:
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("PKCS#8: %v", err)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Sprintf("PKCS#8 key is %T, want an ed25519 key", k)
		}
		seed = priv.Seed()
	default:
		return nil, fmt.Sprintf("PEM type %q, want %q or %q", block.Type, pemType, pkcs8PEMType)
	}
	if len(seed) != SeedSize {
		return nil, fmt.Sprintf("key is %d bytes, want %d", len(seed), SeedSize)
	}
	id, err := FromSeed(seed)
	if err != nil {
		return nil, err.Error()
	}
	return id, ""
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
