// Package noise implements netmesh's session crypto: Noise handshakes
// (through github.com/flynn/noise) that bind each node's ed25519 identity to
// its Noise static key, a transport AEAD with explicit nonces that allocates
// nothing per packet, and a sliding replay window.
//
// The cipher suites are Noise_{IK,XX}_25519_{ChaChaPoly,AESGCM}_BLAKE2s:
// X25519 is the Montgomery form of the ed25519 keys nodes already have, so
// a node's Noise static key is derived from its identity and a peer that
// knows its ed25519 key can use the one-round-trip IK pattern; the
// initiator picks the AEAD (Suite): ChaCha20-Poly1305, fast in constant
// time without AES hardware (ARM boards, older CPUs), as in WireGuard, or
// AES-256-GCM, about twice as fast where the CPU has AES instructions, as
// TLS 1.3 and QUIC prefer there (PreferredSuite; without such
// instructions Go's AES is not constant time, HardwareAES, and the mesh
// refuses it); BLAKE2s is fast on 32- and 64-bit CPUs alike.
//
// This package does no I/O and keeps no timers: limits.go holds the
// protocol constants and the mesh layer applies them.
package noise
