package channel

import (
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Limits of names and messages. They bound what a peer can make this node
// parse, store and forward.
const (
	// MaxNameLen is the longest channel name in bytes: room for a few path
	// segments ("tenant/region/service/topic") while a subscribe request
	// with a token stays under 450 bytes, one unfragmented packet.
	MaxNameLen = identity.MaxTokenChannelLen
	// MaxPayloadSize is the largest payload of one published message:
	// 64 KiB, the size of a stream write the mesh's reliable streams carry
	// in one piece. Larger data belongs in an RPC or a stream.
	MaxPayloadSize = 64 << 10
	// MaxMessageSize is the largest channel message of any type: a publish
	// of MaxPayloadSize with the longest name.
	MaxMessageSize = publishHeaderLen + MaxNameLen + MaxPayloadSize
	// MaxControlMessageSize is the largest message other than a publish:
	// a subscribe request with the longest name and token (434 bytes).
	// Control messages always fit one datagram.
	MaxControlMessageSize = subscribeHeaderLen + MaxNameLen + identity.MaxTokenSize
	// MaxPendingLimit caps Config.PendingLimit, and so the queue a
	// publisher can make a subscriber keep: 65,536 messages.
	MaxPendingLimit = 1 << 16
	// MaxSubscribersLimit caps Config.MaxSubscribers: fan-out is one Send
	// per subscriber per message, so more belongs in a relay tree.
	MaxSubscribersLimit = 1 << 16
)

// Defaults for zero fields of Config and Options.
const (
	// DefaultMaxSubscribers bounds the subscribers of one channel.
	DefaultMaxSubscribers = 1024
	// DefaultPendingLimit is how many received messages a subscription
	// queues before it drops new ones: with 1 KiB payloads, 1 MiB per
	// subscription.
	DefaultPendingLimit = 1024
	// DefaultMaxPending is Options.MaxPending when zero: the subscriber
	// leaves the queue length to the publisher (at most MaxPendingLimit),
	// since DefaultMaxPendingBytes bounds the memory.
	DefaultMaxPending = MaxPendingLimit
	// DefaultMaxPendingBytes is Options.MaxPendingBytes when zero: the
	// payload bytes one subscription queues, 16 MiB (256 maximal
	// payloads), whatever limit the publisher sets.
	DefaultMaxPendingBytes = 16 << 20

	// DefaultPublishWait is Config.PublishWait when zero: a publish waits
	// up to 1 s for a subscriber node that is slower than the publisher,
	// as a TCP sender waits for its window, before it reports it failed.
	DefaultPublishWait = time.Second
	// DefaultSweepInterval is how often Tick evicts subscribers whose
	// token expired or was revoked and re-checks capabilities and subnets
	// against fresh announcements. Expiry and revocation are also checked
	// on every publish, so the sweep only bounds how long an idle channel
	// keeps such subscribers (and frees their memory); 30 s is a third of
	// the capability TTL, so a changed announcement is seen within one.
	DefaultSweepInterval = 30 * time.Second
	// DefaultAuthFailureLimit, DefaultAuthFailureWindow and
	// DefaultAuthThrottle: a peer whose subscribe requests fail 16 times in
	// 60 s is answered RateLimited for 30 s without any check. Sixteen
	// covers a client retrying a handful of channels with a stale token;
	// a bad-token storm costs at most 16 signature checks per minute per
	// peer (~1 ms of CPU).
	DefaultAuthFailureLimit = 16
	// DefaultAuthFailureWindow is the window failures are counted in.
	DefaultAuthFailureWindow = 60 * time.Second
	// DefaultAuthThrottle is how long a peer over the limit is refused.
	DefaultAuthThrottle = 30 * time.Second
	// DefaultSubscribeTimeout bounds Subscribe when its context has no
	// deadline: an acknowledgement takes one round trip, so 10 s means the
	// publisher is unreachable or gone.
	DefaultSubscribeTimeout = 10 * time.Second
	// DefaultMaxTrackedPeers bounds the auth-failure limiter's table.
	// Only peers with a session can fail, and the mesh bounds sessions;
	// when the table is full every untracked peer is throttled (fail
	// closed) until Tick frees entries.
	DefaultMaxTrackedPeers = 1 << 16
	// DefaultMaxRevoked bounds the revoked token ids remembered; each is
	// forgotten when the token it names would have expired anyway.
	DefaultMaxRevoked = 1 << 16
	// ResubscribeMin and ResubscribeMax bound the wait between attempts
	// to subscribe again to a publisher that was lost (see
	// Engine.PeerDown): 1 s doubling to 30 s. The first attempt goes out
	// as soon as the publisher's session is back (Engine.PeerUp); the
	// retries cover a request or answer lost on the way, and publishers
	// that nothing else reconnects to (Reacher).
	ResubscribeMin = time.Second
	ResubscribeMax = 30 * time.Second
	// TickInterval is how often the mesh should call Engine.Tick. Timing
	// of sweeps and throttles is only as precise as the tick; one second
	// is ample for 30 s periods.
	TickInterval = time.Second
)
