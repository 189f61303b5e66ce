package identity

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// pemType is the PEM block type of a netmesh key file. The block holds the
// 32-byte ed25519 seed.
const pemType = "NETMESH ED25519 PRIVATE KEY"

// ErrKeyFile reports a key file that cannot be used. The error text names
// the file and the reason.
var ErrKeyFile = errors.New("identity: bad key file")

// Save writes the identity's seed to path as a PEM file with mode 0600. It
// refuses to overwrite an existing file.
func (id *Identity) Save(path string) error {
	data := pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: id.priv.Seed()})
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("identity: saving key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("identity: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("identity: writing %s: %w", path, err)
	}
	return nil
}

// Load reads an identity from a key file written by Save. It fails if the
// file can be read or written by anyone but its owner, or is not exactly one
// netmesh key block.
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
	if len(data) > 4096 {
		return nil, fmt.Errorf("%w %s: %d bytes is too large for a key file", ErrKeyFile, path, len(data))
	}
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, fmt.Errorf("%w %s: no PEM block", ErrKeyFile, path)
	case block.Type != pemType:
		return nil, fmt.Errorf("%w %s: PEM type %q, want %q", ErrKeyFile, path, block.Type, pemType)
	case len(block.Bytes) != SeedSize:
		return nil, fmt.Errorf("%w %s: key is %d bytes, want %d", ErrKeyFile, path, len(block.Bytes), SeedSize)
	case len(block.Headers) != 0:
		return nil, fmt.Errorf("%w %s: unexpected PEM headers", ErrKeyFile, path)
	}
	if len(trimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w %s: trailing data after the key", ErrKeyFile, path)
	}
	return FromSeed(block.Bytes)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
