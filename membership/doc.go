// Package membership decides who may join a closed mesh: it checks the
// membership certificates peers present in their handshakes against the
// authorities a node trusts and the revocations it holds, issues
// certificates on behalf of an authority (one-time pairing codes, online
// renewal) and encodes the membership messages nodes gossip (revocations,
// renewed certificates).
//
// It does no I/O and starts no goroutines: package mesh calls a Verifier
// from its handshake workers (the signature of a certificate is checked
// once, then remembered by its exact bytes, so a peer that re-handshakes
// costs a hash and a map lookup), and an Issuer when a pairing proof or a
// renewal request arrives. Certificates and revocations themselves, their
// byte layouts and signatures, are package identity's.
//
// A certificate proves that an authority admitted a key; it does not make
// the key's holder behave. docs/SECURITY.md says what membership promises
// and what it does not; docs/OPERATIONS.md how to run a closed mesh.
package membership
