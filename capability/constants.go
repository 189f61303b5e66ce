package capability

import "time"

// Limits of a capability set. They bound what one announcement can make every
// node in the mesh store and index, and keep an announcement small enough for
// the mesh to carry in a handful of packets.
const (
	// MinTagLen is the shortest tag: one-letter tags are too easy to collide.
	MinTagLen = 2
	// MaxTagLen is the longest tag, enough for "skill:summarize-v2" style
	// names and for scope tags with an id ("scope:tenant:<uuid>").
	MaxTagLen = 64
	// MaxTags bounds the tags of one set; a node that needs more is
	// describing data, which belongs in metadata or in an RPC.
	MaxTags = 64
	// MaxMetadataEntries bounds the metadata entries of one set. Telemetry
	// uses at most 6 + 4*MaxTelemetryGPUs of them.
	MaxMetadataEntries = 64
	// MaxMetadataKeyLen is the longest metadata key (same alphabet as tags).
	MaxMetadataKeyLen = 64
	// MaxMetadataValueLen is the longest metadata value in bytes: enough for
	// a GPU model name or a URL, not for a document.
	MaxMetadataValueLen = 256
	// MinNameLen and MaxNameLen bound a node's name (Config.Name): short
	// names collide, and a name must fit a terminal column.
	MinNameLen = 3
	// MaxNameLen is the longest node name.
	MaxNameLen = 64
	// MaxSetSize is the largest encoded set in bytes. With the fixed fields
	// an announcement stays under 4.2 KiB, so a 10,000-node index holds at
	// most ~42 MB of sets.
	MaxSetSize = 4096
)

// Limits of the announcement wire format (see docs/CAPABILITIES.md).
const (
	// MaxHops is the largest hop count an announcement may carry: the same
	// limit as routed packets, so every node that can learn an origin can
	// also route to it. An announcement received with MaxHops is indexed
	// but not forwarded.
	MaxHops = 16
	// MaxAnnouncementSize is the largest encoded announcement in bytes.
	MaxAnnouncementSize = headerLen + MaxSetSize + signatureLen
	// MinTTL and MaxTTL bound the TTL an announcement may carry. The wire
	// carries whole seconds.
	MinTTL = 3 * time.Second
	// MaxTTL is one day: a node that has not refreshed for a day is gone.
	MaxTTL = 24 * time.Hour
)

// Defaults for the zero Config.
const (
	// DefaultTTL is how long an announcement stays valid. The origin
	// re-announces every TTL/3 (30 s), so one lost refresh does not make a
	// node look gone, and a dead node disappears within 90 s.
	DefaultTTL = 90 * time.Second
	// DefaultMinAnnounceInterval is the origin-side rate limit: at most one
	// broadcast per 10 s. Every broadcast floods the whole mesh (each node
	// sends it to all its peers), so a node flapping its set must not
	// multiply that cost.
	DefaultMinAnnounceInterval = 10 * time.Second
	// DefaultMaxNodes bounds the origins an engine remembers (live entries
	// plus the pins and versions of offline ones): a mesh of 10,000 nodes
	// with as many departed ones remembered. It bounds the index's memory:
	// about 3 KiB per typical live node, 23 KiB at most (a 4 KiB set of
	// 128 keys no other node uses; docs/CAPABILITIES.md), so 60 MiB
	// typical and 450 MiB at worst.
	DefaultMaxNodes = 20_000
	// DefaultMaxOriginsPerPeer bounds the origins one neighbour can have
	// introduced: what a peer making up identities can make this node
	// store, 6 MiB of typical announcements and 46 MiB at worst. A node
	// that learns a mesh of more nodes than this through one neighbour
	// must raise it.
	DefaultMaxOriginsPerPeer = 2048
	// DefaultOriginBurst new origins from one neighbour are accepted at
	// once: a mesh of a thousand nodes is learned from the first
	// neighbour's sync without delay.
	DefaultOriginBurst = 1024
	// DefaultOriginRate new origins per second from one neighbour are
	// accepted beyond the burst: what a flood can push through a node to
	// the nodes behind it. Refused origins come again with their next
	// refresh (every TTL/3), so a node joining a mesh of 2,048 nodes
	// through one neighbour learns all of them within about a minute.
	DefaultOriginRate = 32
	// DefaultTelemetryInterval is how often telemetry is sampled when
	// enabled. Changes are announced subject to MinAnnounceInterval.
	DefaultTelemetryInterval = 30 * time.Second
	// TickInterval is how often the mesh should call Engine.Tick. Every
	// timing above is a multiple of seconds, so a 1 s tick is precise
	// enough and costs one pass over the index per second.
	TickInterval = time.Second
)

// Liveness fractions of a TTL.
const (
	// refreshDivisor: the origin re-announces every TTL/refreshDivisor.
	refreshDivisor = 3
	// degradedDivisor: by default (Config.DegradedAfter zero) a receiver
	// marks a node Degraded when its newest announcement is older than
	// TTL/degradedDivisor, that is when the refresh expected at TTL/3 has
	// not arrived with TTL/6 of slack.
	degradedDivisor = 2
)

// Telemetry limits.
const (
	// MaxTelemetryGPUs bounds the devices reported in telemetry (4 metadata
	// entries each).
	MaxTelemetryGPUs = 8
	// telemetryTimeout bounds one telemetry sample (nvidia-smi can hang on
	// a wedged driver).
	telemetryTimeout = 5 * time.Second
)
