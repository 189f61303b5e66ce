package membership

import "time"

// Limits and timings, each with its unit and the reason for its value.
const (
	// MaxAuthorities bounds the authority keys a node trusts: a mesh
	// that rotates its authority trusts the old and the new one for a
	// while; more than a handful is a configuration mistake.
	MaxAuthorities = 16

	// VerifiedCacheSize (4096 certificates, about 200 KiB) is how many
	// certificates a Verifier remembers as correctly signed, keyed by a
	// hash of their exact bytes, so a peer that handshakes again (every
	// rekey, every 2 minutes) costs no signature check.
	VerifiedCacheSize = 4096

	// MaxRevocations (16384, about 3 MiB with their index) bounds the
	// revocations a node holds. A revocation is kept until every
	// certificate it covers has expired (identity.MaxCertValidity after
	// it); when the store is full, the one that would expire first is
	// forgotten, since it protects against the certificates closest to
	// their end.
	MaxRevocations = 16384

	// MaxPairingCodes bounds the pairing codes an issuer has outstanding
	// at once: each proof is checked against every one of them (a MAC
	// each, well under a microsecond), and an operator pairs nodes a few
	// at a time.
	MaxPairingCodes = 64
	// maxSpentCodes bounds the codes an issuer remembers after their use
	// or expiry, to tell a reused or expired code from a wrong one.
	maxSpentCodes = 64
	// DefaultCodeLifetime is how long a pairing code is valid when the
	// grant names no lifetime: long enough to copy it to the new machine
	// and run one command there, short enough that a code left in a
	// terminal's scrollback is soon worthless.
	DefaultCodeLifetime = 10 * time.Minute
	// MaxCodeLifetime bounds a pairing code's lifetime.
	MaxCodeLifetime = 24 * time.Hour
	// DefaultCertValidity is the validity of a certificate issued by
	// pairing when the grant names none: renewed online at two thirds,
	// so a member that is offline for up to ten days keeps its place.
	DefaultCertValidity = 30 * 24 * time.Hour

	// DefaultPairingBurst and DefaultPairingInterval are the per-source
	// budget for pairing attempts: 5 at once, then one every 10 s. A
	// genuine node needs one; a 160-bit code cannot be guessed at any
	// rate, so the limit only bounds the work (a full handshake and a MAC
	// per outstanding code) a stranger can buy.
	DefaultPairingBurst    = 5
	DefaultPairingInterval = 10 * time.Second
	// maxPairingSources bounds the sources the pairing limiter tracks;
	// when it is full of recent sources, a new one is refused (failing
	// closed keeps a flood of spoofed sources from buying attempts).
	maxPairingSources = 4096

	// maxRevocationsPerMessage bounds the revocations one gossip message
	// carries: 470 of 137 bytes fit in 64 KiB, well under a stream
	// message's limit; a node that holds more sends several messages.
	maxRevocationsPerMessage = 470
)
