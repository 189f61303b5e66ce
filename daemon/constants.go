package daemon

import (
	"time"

	"github.com/netmesh/netmesh/capability"
)

// Names on the mesh. The runtime registers its protocol in one place,
// (*Runtime).serveOn in serve.go: one unary rpc service.
const (
	// HostService is the rpc service every Runtime serves: deliveries,
	// location, spawn, stop, snapshots, migrations and groups.
	HostService = "daemon.host"
	// ImageService is the streaming rpc service every Runtime serves:
	// a hosted daemon's snapshot (or its stop and final snapshot), the
	// state in chunks.
	ImageService = "daemon.image"
	// KindTagPrefix prefixes a kind's name to make the capability tag a
	// runtime announces for each kind it can run.
	KindTagPrefix = "daemon:"
	// LoadPrefix is the metadata prefix of a runtime's load:
	// daemon.running (daemons hosted), daemon.queued (always 0: a daemon
	// either runs or is not here) and daemon.limit (MaxDaemons). See
	// package placement. Every runtime announces it, so it also tells
	// which nodes run one.
	LoadPrefix = "daemon"
	// MaxKindName is the longest kind name: "daemon:<name>" must fit a
	// capability tag.
	MaxKindName = capability.MaxTagLen - len(KindTagPrefix)
)

// Defaults of Config.
const (
	// DefaultMaxDaemons is Config.MaxDaemons when zero: daemons a node
	// hosts, running or arriving. Beyond it spawns and inbound migrations
	// are refused with RESOURCE_EXHAUSTED and placement tries another
	// node.
	DefaultMaxDaemons = 1024
	// DefaultMaxPerOwner is Config.MaxPerOwner when zero: daemons one
	// owner node may have here, so one peer cannot take every slot.
	DefaultMaxPerOwner = 256
	// DefaultInboxSize is Config.InboxSize when zero: events accepted by
	// one daemon and not yet applied, all senders together. Beyond it a
	// delivery is refused with BACKPRESSURE. 4096 holds 32 full batches:
	// many senders keep the daemon busy without it buffering without
	// bound.
	DefaultInboxSize = 4096
	// DefaultMaxEventSize is Config.MaxEventSize when zero: one event's
	// data. Bulk data belongs in a stream.
	DefaultMaxEventSize = 64 << 10
	// DefaultMaxOutputSize is Config.MaxOutputSize when zero: the outputs
	// of one event together. A batch reply (128 events) then stays within
	// the 4 MiB an rpc client accepts.
	DefaultMaxOutputSize = 16 << 10
	// DefaultMaxStateSize is Config.MaxStateSize when zero: a daemon's
	// snapshot. Larger snapshots fail (SNAPSHOT_FAILED); an inbound one
	// announcing more is refused before a byte of it is held.
	DefaultMaxStateSize = 64 << 20
	// DefaultMigrationTimeout is Config.MigrationTimeout when zero: one
	// migration, snapshot to complete, when the caller's context has no
	// earlier deadline. A target holds an inbound transfer at most this
	// long without a message.
	DefaultMigrationTimeout = 30 * time.Second
	// DefaultCallTimeout is Config.CallTimeout when zero: one rpc call.
	DefaultCallTimeout = 10 * time.Second
	// DefaultLoadInterval is Config.LoadInterval when zero: how often the
	// load is re-announced when it changed.
	DefaultLoadInterval = time.Second
	// DefaultMaxReplayLog is Config.MaxReplayLog when zero: events a
	// migrating daemon applies and logs for the target before cutover,
	// and a standby buffers between syncs. A migration whose log
	// overflows fails (LIMIT_EXCEEDED): events arrive faster than the
	// target replays them. At 10,000 events/s it holds 6.5 s.
	DefaultMaxReplayLog = 1 << 16
)

// Bounds of the wire format and internal timings.
const (
	// maxBatchEvents and maxBatchBytes bound the events of one delivery
	// call (one event always goes, whatever its size): a reply with
	// every output at DefaultMaxOutputSize stays within 4 MiB.
	maxBatchEvents = 128
	maxBatchBytes  = 512 << 10
	// maxWireBytes bounds one byte string in a message: the largest rpc
	// message a client accepts.
	maxWireBytes = 4 << 20
	// maxOutputs bounds the outputs of one event.
	maxOutputs = 64
	// chunkSize is the size of one transfer chunk: about a quarter of the
	// rpc server's default request limit, less room for the chunk's and
	// the call's headers, so that the request fits the receiver's 64 KiB
	// reassembly buffer class. A whole 64 KiB chunk took a fresh 128 KiB
	// buffer, zeroed, per chunk: a 1 MiB move took 15 % longer.
	chunkSize = 64<<10 - 512
	// maxSenders bounds the senders a daemon remembers for deduplication
	// (the highest counter applied of each); the least recently seen is
	// forgotten first.
	maxSenders = 4096
	// maxLabel and maxMessage bound a kind name or code, and a message.
	maxLabel   = 64
	maxMessage = 1024
	// maxSealedKey bounds a sealed daemon key: an HPKE encapsulated key
	// (32 bytes), the 32-byte seed and the 16-byte tag, with room to
	// spare.
	maxSealedKey = 256
	// maxRoutes bounds the daemons a runtime remembers where they live;
	// idle routes are forgotten first.
	maxRoutes = 1 << 16
	// maxTombstones bounds the daemons a runtime remembers having moved
	// away, and tombstoneAge how long, so a stale sender is told where it
	// went rather than searching.
	maxTombstones = 1 << 16
	tombstoneAge  = 10 * time.Minute
	// maxRouteAttempts bounds the nodes one batch is sent to when it is
	// told the daemon moved or is not there.
	maxRouteAttempts = 6
	// locateFanout is how many nodes a locate asks at once, and
	// maxLocate how many it asks in all.
	locateFanout = 16
	maxLocate    = 256
	// notReadyRetry is how long a sender waits before sending again to a
	// daemon that is arriving and not serving yet.
	notReadyRetry = 2 * time.Millisecond
	// maxIncoming bounds inbound transfers held at once, and
	// maxIncomingPerNode those from one node.
	maxIncoming        = 16
	maxIncomingPerNode = 4
	// replayBatch bounds the log entries of one replay call, and
	// cutoverTail is the length under which the source stops replaying
	// and cuts over: the tail then ships inside the cutover call, while
	// senders wait.
	replayBatch = 1024
	cutoverTail = 64
	// maxReplayRounds bounds the replay calls before cutover whatever the
	// tail: a daemon busier than its target replays cuts over anyway.
	maxReplayRounds = 32
	// statusRetry is how often a source asks a target that did not answer
	// a cutover whether it committed.
	statusRetry = 20 * time.Millisecond
	// maxStandbys bounds the standbys of one active daemon.
	maxStandbys = 8
	// shipTimeout bounds one shipment of events to a standby: the active
	// waits for it before it answers the events' senders, so a standby
	// slower than this leaves the set rather than stall the daemon.
	shipTimeout = 2 * time.Second
	// maxForks bounds the members of a fork group, maxReplicas those of
	// a replica group.
	maxForks    = 64
	maxReplicas = 64
)
