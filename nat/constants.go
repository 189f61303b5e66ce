//go:build nat

package nat

import "time"

// Protocol timing defaults. Config fields override them; tests shrink them.
const (
	// DefaultReflexTimeout bounds one reflex query (STUN or peer). STUN
	// servers and peers answer in one round trip; 2 s covers slow
	// intercontinental paths with a retransmission or two.
	DefaultReflexTimeout = 2 * time.Second
	// DefaultPunchTimeout is how long both sides keep probing after the
	// coordinator's go signal. Probes cross in one round trip once both
	// NATs hold a mapping; 3 s leaves room for loss and for a peer that
	// learned the go signal late.
	DefaultPunchTimeout = 3 * time.Second
	// DefaultProbeInterval spaces the probe rounds within a punch: often
	// enough that one lost probe costs little, rare enough that eight
	// candidates cost at most 80 packets/s.
	DefaultProbeInterval = 100 * time.Millisecond
	// DefaultRetryAfter is the wait before retrying a failed punch, or
	// before punching again after a direct path fell back to the relay. It
	// doubles per failure up to maxRetryFactor times. 30 s also outlasts a
	// conflicting conntrack entry a too-early probe can leave on a Linux
	// router (its unreplied UDP timeout is 30 s).
	DefaultRetryAfter = 30 * time.Second
	// DefaultReclassifyInterval is how often the NAT is classified again.
	// A change of local address triggers it at once.
	DefaultReclassifyInterval = 10 * time.Minute
)

const (
	// maxRetryFactor caps the retry backoff at 32 × RetryAfter (16 min by
	// default): a pair that never punches costs one introduction per
	// quarter hour.
	maxRetryFactor = 32
	// rendezvousFactor × ReflexTimeout is how long the requester waits for
	// the coordinator's go signal, and the coordinator for the target's
	// Accept: two frames each way, relayed.
	rendezvousFactor = 2
	// tickInterval is the engine's housekeeping period: retries, expiry of
	// introductions, local address changes.
	tickInterval = 250 * time.Millisecond
	// pathPoll is how often a punch checks whether the path became direct;
	// it sets the resolution of the time-to-direct figure.
	pathPoll = 10 * time.Millisecond
	// stunRetransmit spaces STUN and peer reflex retransmissions.
	stunRetransmit = 500 * time.Millisecond
	// maxReflexPeers is how many directly connected peers a
	// classification asks; two distinct destinations suffice.
	maxReflexPeers = 3
	// maxPending bounds the introductions one node tracks at once in each
	// role (requester, coordinator, target): the frames come from
	// authenticated peers, but a peer must not make us hold unbounded
	// state or send unbounded probes.
	maxPending = 64
	// maxRemembered bounds the peers whose failed punches the engine
	// remembers to retry, in each of its two maps (those it asked for,
	// those peers asked for): one per peer, so a node with more relayed
	// peers than this retries only some of them.
	maxRemembered = 4 * maxPending
	// unknownRetry is how often a node whose NAT type is still unknown
	// tries to classify again.
	unknownRetry = 30 * time.Second
	// forgetRetry drops retry state for a peer without a session this long.
	forgetRetry = 10 * time.Minute
)
