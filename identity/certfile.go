package identity

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// PEM block types of certificate and revocation files.
const (
	certPEMType       = "NETMESH CERTIFICATE"
	revocationPEMType = "NETMESH REVOCATION"
)

// File bounds, bytes: a certificate file holds one block (under 700
// bytes), a revocation file up to maxRevocationFileBlocks blocks (about
// 260 bytes each).
const (
	maxCertFile             = 4096
	maxRevocationFileBlocks = 1 << 16
	maxRevocationFile       = maxRevocationFileBlocks * 300
)

// MarshalPEM returns the certificate as one PEM block.
func (c *Certificate) MarshalPEM() ([]byte, error) {
	b, err := c.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: certPEMType, Bytes: b}), nil
}

// ParseCertificatePEM reads a certificate from one PEM block, as written
// by MarshalPEM. It checks the structure, not the signature. Errors wrap
// ErrCertMalformed.
func ParseCertificatePEM(data []byte) (*Certificate, error) {
	if len(data) > maxCertFile {
		return nil, fmt.Errorf("%w: %d bytes is too large for a certificate file", ErrCertMalformed, len(data))
	}
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, fmt.Errorf("%w: no PEM block", ErrCertMalformed)
	case block.Type != certPEMType || len(block.Headers) != 0:
		return nil, fmt.Errorf("%w: PEM type %q, want %q", ErrCertMalformed, block.Type, certPEMType)
	case len(trimSpace(rest)) != 0:
		return nil, fmt.Errorf("%w: trailing data after the certificate", ErrCertMalformed)
	}
	return DecodeCertificate(block.Bytes)
}

// LoadCertificate reads a certificate file (see ParseCertificatePEM).
func LoadCertificate(path string) (*Certificate, error) {
	data, err := readBounded(path, maxCertFile)
	if err != nil {
		return nil, err
	}
	c, err := ParseCertificatePEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// SaveCertificate writes c to path with mode 0644, replacing the file
// whole (a new file renamed over the old one), so a node that reads the
// path while it is renewed sees the old certificate or the new one.
func SaveCertificate(path string, c *Certificate) error {
	data, err := c.MarshalPEM()
	if err != nil {
		return err
	}
	return writeReplace(path, data, 0o644)
}

// MarshalRevocationsPEM returns revocations as consecutive PEM blocks,
// the format of a revocation file.
func MarshalRevocationsPEM(rs []*Revocation) ([]byte, error) {
	var out []byte
	for _, r := range rs {
		b, err := r.MarshalBinary()
		if err != nil {
			return nil, err
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: revocationPEMType, Bytes: b})...)
	}
	return out, nil
}

// ParseRevocationsPEM reads the PEM blocks of a revocation file: zero or
// more, at most 65536. It checks their structure, not their signatures.
// Errors wrap ErrRevocationMalformed.
func ParseRevocationsPEM(data []byte) ([]*Revocation, error) {
	if len(data) > maxRevocationFile {
		return nil, fmt.Errorf("%w: %d bytes is too large for a revocation file", ErrRevocationMalformed, len(data))
	}
	var rs []*Revocation
	for len(trimSpace(data)) > 0 {
		block, rest := pem.Decode(data)
		switch {
		case block == nil:
			return nil, fmt.Errorf("%w: data that is not a PEM block", ErrRevocationMalformed)
		case block.Type != revocationPEMType || len(block.Headers) != 0:
			return nil, fmt.Errorf("%w: PEM type %q, want %q", ErrRevocationMalformed, block.Type, revocationPEMType)
		case len(rs) == maxRevocationFileBlocks:
			return nil, fmt.Errorf("%w: more than %d revocations", ErrRevocationMalformed, maxRevocationFileBlocks)
		}
		r, err := DecodeRevocation(block.Bytes)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
		data = rest
	}
	return rs, nil
}

// LoadRevocations reads a revocation file; a file that does not exist
// holds none.
func LoadRevocations(path string) ([]*Revocation, error) {
	data, err := readBounded(path, maxRevocationFile)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rs, err := ParseRevocationsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rs, nil
}

// SaveRevocations writes rs to path (mode 0644), replacing the file whole.
func SaveRevocations(path string, rs []*Revocation) error {
	data, err := MarshalRevocationsPEM(rs)
	if err != nil {
		return err
	}
	return writeReplace(path, data, 0o644)
}

// readBounded reads a regular file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("identity: %s: not a regular file", path)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("identity: %s: %d bytes, at most %d", path, fi.Size(), max)
	}
	return os.ReadFile(path)
}

// writeReplace writes data to a new file beside path and renames it over
// path.
func writeReplace(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("identity: writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("identity: writing %s: %w", path, err)
	}
	return nil
}
