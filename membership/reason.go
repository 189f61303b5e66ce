package membership

import (
	"errors"
	"fmt"

	"github.com/netmesh/netmesh/identity"
)

// Sentinel errors of this package; certificate problems match the
// identity.ErrCert... sentinels instead.
var (
	// ErrNoCertificate: a closed mesh's peer presented no certificate.
	ErrNoCertificate = errors.New("membership: no certificate")
	// ErrRevoked: the certificate's authority revoked it.
	ErrRevoked = errors.New("membership: certificate revoked")
	// ErrPairingCode: the pairing code is not one the issuer handed out.
	ErrPairingCode = errors.New("membership: wrong pairing code")
	// ErrPairingExpired: the pairing code's lifetime is over.
	ErrPairingExpired = errors.New("membership: pairing code expired")
	// ErrPairingReused: the pairing code was used already.
	ErrPairingReused = errors.New("membership: pairing code already used")
	// ErrPairingRateLimited: too many pairing attempts from this source.
	ErrPairingRateLimited = errors.New("membership: too many pairing attempts")
	// ErrNotIssuer: the node holds no authority key, so it cannot pair,
	// renew or revoke.
	ErrNotIssuer = errors.New("membership: this node holds no authority key")
	// ErrNotDue: a renewal asked for too early, or for a certificate
	// another authority issued.
	ErrNotDue = errors.New("membership: certificate not due for renewal")
	// ErrUntrustedRevocation: a revocation signed by an authority the node
	// does not trust.
	ErrUntrustedRevocation = errors.New("membership: revocation from an untrusted authority")
	// ErrInvalidConfig: a configuration that cannot be used.
	ErrInvalidConfig = errors.New("membership: invalid configuration")
	// ErrMalformed: a membership message that does not decode.
	ErrMalformed = errors.New("membership: malformed message")
)

// Reason says why a node refuses a peer's membership. The values travel
// in handshake refusals and are stable.
type Reason uint8

// Reasons. Zero means no refusal.
const (
	ReasonNone               Reason = iota
	ReasonNoCertificate             // no certificate in the handshake
	ReasonInvalid                   // malformed, or the signature does not verify
	ReasonUntrusted                 // issued by an authority the node does not trust
	ReasonKeyMismatch               // issued for another key than the handshake's
	ReasonExpired                   // past its NotAfter
	ReasonNotYetValid               // before its NotBefore
	ReasonRevoked                   // its authority revoked it
	ReasonPairingCode               // wrong pairing code
	ReasonPairingExpired            // pairing code expired
	ReasonPairingReused             // pairing code used already
	ReasonPairingRateLimited        // too many pairing attempts from the source
	ReasonNotIssuer                 // a pairing proof sent to a node without an authority key
	numReasons
)

var reasonNames = [numReasons]string{
	"", "no certificate", "certificate invalid", "certificate from an untrusted authority",
	"certificate for another key", "certificate expired", "certificate not yet valid",
	"certificate revoked", "wrong pairing code", "pairing code expired",
	"pairing code already used", "too many pairing attempts", "node issues no certificates",
}

// String returns the reason in words.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Valid reports whether r is a known refusal (not ReasonNone).
func (r Reason) Valid() bool { return r > ReasonNone && r < numReasons }

var reasonErrs = [numReasons]error{
	nil, ErrNoCertificate, identity.ErrCertSignature, identity.ErrCertUntrusted,
	identity.ErrCertKeyMismatch, identity.ErrCertExpired, identity.ErrCertNotYetValid,
	ErrRevoked, ErrPairingCode, ErrPairingExpired, ErrPairingReused,
	ErrPairingRateLimited, ErrNotIssuer,
}

// Err returns the sentinel error r matches, or nil for ReasonNone and
// unknown values.
func (r Reason) Err() error {
	if r < numReasons {
		return reasonErrs[r]
	}
	return nil
}

// ReasonOf maps a certificate check's error to its reason.
func ReasonOf(err error) Reason {
	switch {
	case err == nil:
		return ReasonNone
	case errors.Is(err, identity.ErrCertMalformed):
		return ReasonInvalid
	}
	for r := ReasonNoCertificate; r < numReasons; r++ {
		if errors.Is(err, reasonErrs[r]) {
			return r
		}
	}
	return ReasonInvalid
}
