package noise

import (
	"math"
	"math/rand/v2"
	"time"
)

// Protocol limits. The mesh layer copies the timing values into its
// overridable config so tests can shrink them; the rest are fixed by the
// wire protocol and must agree on both ends.
const (
	// RekeyAfterTime (120 s) is the session age after which the initiator of
	// the current session starts a new handshake. Bounds how much traffic
	// one key protects and how long a stolen key stays useful.
	RekeyAfterTime = 120 * time.Second

	// RejectAfterTime (180 s) is the session age after which the session's
	// keys are refused in both directions. The 60 s past RekeyAfterTime
	// leave room for a rekey to finish under loss (HandshakeGiveUp is 15 s).
	RejectAfterTime = 180 * time.Second

	// RekeyAfterMessages (2^60 messages) starts a rekey long before the
	// counter can run out, even at line rate.
	RekeyAfterMessages = uint64(1) << 60

	// RejectAfterMessages (2^64 - 2^13 messages) is the first counter that
	// is never sent nor accepted. It keeps the 64-bit nonce from wrapping
	// (nonce reuse breaks ChaCha20-Poly1305) with margin for counters
	// handed out concurrently before the limit is noticed; 2^64-1 is also
	// reserved by Noise for rekeying.
	RejectAfterMessages = uint64(math.MaxUint64 - 1<<13)

	// HandshakeRetransmit (1 s) is the first handshake retransmit delay.
	// One second is several times a typical internet RTT, so a retransmit
	// rarely races a response in flight. RetransmitDelay adds up to 1/3
	// random jitter so peers that start together do not stay in lockstep.
	HandshakeRetransmit = time.Second

	// HandshakeRetransmitMax (4 s) caps the exponential backoff of handshake
	// retransmits: 1, 2, 4, 4 s... still gives four retries before
	// HandshakeGiveUp.
	HandshakeRetransmitMax = 4 * time.Second

	// HandshakeGiveUp (15 s) is how long a handshake is retried before the
	// attempt fails and the caller gets an error. Long enough to ride out a
	// burst of loss, short enough that a dead peer is reported promptly.
	HandshakeGiveUp = 15 * time.Second

	// KeepaliveInterval (15 s) is how long a session may stay silent before
	// an empty keepalive is sent. Many home routers and Linux conntrack
	// (nf_conntrack_udp_timeout) drop an idle UDP mapping after 30 s; at
	// half that, the mapping stays open and a worker behind a NAT stays
	// reachable through the session it dialed out on.
	KeepaliveInterval = 15 * time.Second

	// SessionIdleTimeout (60 s, four keepalive intervals) is how long a
	// session may go without receiving an authenticated packet before it is
	// dropped as dead. Three keepalives in a row can be lost first.
	SessionIdleTimeout = 4 * KeepaliveInterval

	// ReplayWindowSize (8128 counters) is how far behind the highest
	// accepted counter a packet may arrive and still be accepted, as in
	// WireGuard. Reordering by multi-queue NICs, GSO batches and parallel
	// decryption stays well inside it; it costs 1 KiB per session.
	ReplayWindowSize = (replayBlocks - 1) * 64

	// replayBlocks is the size of the replay bitmap ring in 64-bit words
	// (8192 bits). A power of two, so the ring index is a mask. One word is
	// kept out of the window so sliding never clears a live bit.
	replayBlocks = 128

	// TagSize (16 bytes) is the Poly1305 tag appended to every sealed
	// message.
	TagSize = 16
)

// Handshake message sizes in bytes. Each message has this size plus its
// extensions (at most MaxExtensions bytes, see Handshake.SetExtensions),
// so the wire format can bound its handshake frames and ReadMessage
// rejects any other length before doing DH work. A key is 32 bytes, and
// every encrypted field carries a TagSize tag.
const (
	// IKInitiationSize is IK message 1: ephemeral key, encrypted static key,
	// encrypted identity payload, incarnation and timestamp.
	IKInitiationSize = keySize + (keySize + TagSize) + (identityPayloadSize + incarnationSize + timestampSize + TagSize)
	// IKResponseSize is IK message 2: ephemeral key and the encrypted
	// incarnation.
	IKResponseSize = keySize + (incarnationSize + TagSize)
	// XXInitiationSize is XX message 1: the ephemeral key in clear,
	// padded with zeros (carried as the message's payload, so the padding
	// is part of the handshake transcript) to the size of the response it
	// asks for. A responder then never sends more bytes to an address it
	// has not verified than it received from there: a spoofed XX
	// initiation cannot amplify a flood toward its victim.
	XXInitiationSize = XXResponseSize
	// XXResponseSize is XX message 2: ephemeral key, encrypted static key and
	// encrypted identity payload and incarnation.
	XXResponseSize = keySize + (keySize + TagSize) + (identityPayloadSize + incarnationSize + TagSize)
	// XXFinalSize is XX message 3: encrypted static key and encrypted
	// identity payload and incarnation.
	XXFinalSize = (keySize + TagSize) + (identityPayloadSize + incarnationSize + TagSize)
	// MaxExtensions (768 bytes) bounds the extensions one handshake
	// message carries: room for a membership certificate (at most 476
	// bytes) and a few small fields, while the largest message, relayed
	// (67 bytes of hop session and route header around a 44-byte
	// handshake header), stays inside the 1232 bytes every IPv6 path
	// carries.
	MaxExtensions = 768
	// MaxHandshakeSize is the largest handshake message.
	MaxHandshakeSize = IKInitiationSize + MaxExtensions

	// xxPadding is the zero padding after the ephemeral key in XX
	// message 1 (see XXInitiationSize).
	xxPadding = XXInitiationSize - keySize
	// keySize is the size of an X25519 or ed25519 public key.
	keySize = 32
	// identityPayloadSize is ed25519 public key || signature.
	identityPayloadSize = keySize + 64
	// incarnationSize is the sender's big-endian incarnation.
	incarnationSize = 8
	// timestampSize is the big-endian unix-nanosecond initiation time.
	timestampSize = 8
)

// RetransmitDelay returns how long to wait before retransmitting handshake
// attempt number attempt (0 for the wait after the first send): exponential
// backoff from base (HandshakeRetransmit unless a test shrinks it), capped
// at base*HandshakeRetransmitMax/HandshakeRetransmit, plus up to 1/3 random
// jitter. rnd returns a value in [0, 1); nil means math/rand/v2.
func RetransmitDelay(base time.Duration, attempt int, rnd func() float64) time.Duration {
	limit := base * (HandshakeRetransmitMax / HandshakeRetransmit)
	d := base
	for i := 0; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if rnd == nil {
		rnd = rand.Float64
	}
	return d + time.Duration(rnd()*float64(d)/3)
}
