package mesh

import (
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
)

// The mesh's limits and timings, each with its unit and the reason for its
// value. The session timers themselves (rekey, reject, keepalive,
// handshake retransmit and give-up) are package noise's; Config overrides
// them and the defaults below, and tests shrink them.

// Size budget of one packet.
const (
	// minPathMTU is the UDP payload every IPv6 path carries: the 1280-byte
	// IPv6 minimum MTU less the IPv6 (40) and UDP (8) headers. Packets are
	// kept within it until a larger path MTU is proven.
	minPathMTU = 1280 - 40 - 8

	// routeHeaderSize is a routed packet's header: hop count and the
	// source and destination NodeIDs.
	routeHeaderSize = 1 + 2*identity.NodeIDSize

	// MaxDatagramSize is the largest payload SendDatagram accepts. It fits
	// a 1280-byte IPv6 path even when the packet is relayed (wrapped in a
	// second session layer and a route header), so a datagram that is
	// valid on one path stays valid when the path changes.
	MaxDatagramSize = minPathMTU - 2*(wire.DataOverhead+wire.FrameHeaderSize) - routeHeaderSize

	// jumboMTU is the largest IP packet netmesh sends: a 9000-byte jumbo
	// frame, on paths whose interface and probes allow it.
	jumboMTU = 9000

	// outBufSize is the buffer of a pooled outgoing packet (bytes): a
	// 1500-byte Ethernet frame's payload with room to spare, so the common
	// packet takes the small pool. jumboBufSize is that of one too large
	// for it, up to a jumbo frame with its headers.
	outBufSize   = 2048
	jumboBufSize = 9216

	// routedHeadroom is where the inner packet of a routed frame starts in
	// a pooled packet: room for the hop session's data header, the frame
	// header and the route header in front of it.
	routedHeadroom = wire.DataHeaderSize + wire.FrameHeaderSize + wire.RouteHeaderSize
)

// Socket batching.
const (
	// readBatch is the most datagrams one ReadBatch call returns: a
	// recvmmsg batch, or one GRO-coalesced read of up to 64 segments.
	readBatch = 64
	// writeBatch is the most packets the writer hands the socket at once,
	// the size of one sendmmsg or GSO batch (udp.maxGSOSegments).
	writeBatch = 64
)

// Queue bounds. Every queue between goroutines is bounded: a full send
// queue returns ErrBackpressure, a full receive queue drops and counts.
const (
	// defaultSendQueue is Config.SendQueue's default (packets per
	// socket): 2048 packets are about 2.5 MB, a few milliseconds of a
	// fast sender, enough to ride out the writer's scheduling delays.
	defaultSendQueue = 2048
	// defaultDatagramQueue is Config.DatagramQueue's default (datagrams
	// waiting for ReadDatagram): about 1.2 MB of pooled buffers.
	defaultDatagramQueue = 1024
	// defaultHandshakeQueue is Config.HandshakeQueue's default (handshake
	// messages waiting for the workers). At a few hundred microseconds of
	// DH work each it is about 100 ms of backlog; beyond an eighth of it
	// the node is under load.
	defaultHandshakeQueue = 256
	// maxHandshakePacket is the largest handshake message: the buffer a
	// queued one is copied into.
	maxHandshakePacket = wire.HandshakeOverhead + wire.MaxNoiseMessage
	// watcherQueue bounds the events waiting for one WatchPeers reader.
	watcherQueue = 64
	// peerChangeQueue bounds peer ups and downs waiting for the engines:
	// a burst of 1024 sessions coming up or down at once.
	peerChangeQueue = 1024
)

// State bounds: what one peer, or every stranger together, can make the
// node keep.
const (
	// defaultMaxPeers is Config.MaxPeers's default: peers the node keeps
	// state for (about 2.5 KB each when idle).
	defaultMaxPeers = 4096
	// maxRetired is how many replaced sessions a peer keeps for
	// receiving. After a rekey the peer goes on sealing on the session we
	// just replaced until it has switched too. When two handshakes cross
	// (both sides start one at once and complete both), each side retires
	// one session more: the one of the two that is not kept (see
	// keepsOwnLocked), which a side was sending on until it took the
	// other. With the default timers a session is RejectAfter old before
	// two more rekeys replace it, so the limit only matters when
	// handshakes come faster than that.
	maxRetired = 2
	// maxResponderPending bounds XX handshakes waiting for their final
	// message. An XX initiation carries no identity and its source may be
	// spoofed, so from half full the node counts as under load
	// (initiations need a cookie, which spoofers cannot get, and each
	// source is rate limited), and a new initiation that finds the table
	// full replaces the oldest one there: a genuine handshake needs its
	// entry for one round trip only.
	maxResponderPending = 4096
	// Reverse routes are bounded, because a relay cannot check the source
	// of the packets it forwards: any neighbour can name made-up sources.
	// A destination learns them only from packets it authenticated (see
	// receiveData), but a relay learns them from whatever it forwards. A
	// reverse route that would exceed either bound is not learned
	// (counted in Stats.RoutesRefused); the packet is still delivered or
	// forwarded.
	//
	// maxReverseRoutesPerPeer bounds the reverse routes through one
	// neighbour: a neighbour that lies fills its own share only.
	maxReverseRoutesPerPeer = 1024
	// maxReverseRoutes bounds all reverse routes, so the route table and
	// the timer loop's walk over it stay small (16384 routes are about
	// 1.5 MiB).
	maxReverseRoutes = 16384
)

// Handshake flood defence (see cookie.go).
const (
	// defaultHandshakeRate is Config.HandshakeRate's default: initiations
	// per second, and burst, from one source while under load. A genuine
	// node needs one per HandshakeRetransmit; 20 lets a NAT with a few
	// nodes behind it share a source.
	defaultHandshakeRate = 20
	// bucketIdle is how long a source's token bucket is kept after its
	// last initiation: past it the bucket would be full again (the burst
	// equals one second of rate), so forgetting it changes nothing.
	bucketIdle = time.Second
	// maxBuckets bounds each rate limiter's buckets: sources seen in the
	// last second or so. 65536 buckets are about 4 MiB; a flood from more
	// sources than that (spoofed, since each needs an address) leaves new
	// sources without a token until the idle ones are forgotten.
	maxBuckets = 1 << 16
	// initMemorySize bounds the newest IK initiation times remembered
	// for forgotten peers whose session once came up (about 50 bytes
	// each), so that an initiation recorded before a peer was forgotten
	// stays stale after; initMemoryStrangers bounds those of peers that
	// never came up, apart, so strangers cannot push real peers out.
	initMemorySize      = 4096
	initMemoryStrangers = 1024
	// cookieSecretLifetime is how long a cookie secret is used; cookies
	// older than that stop validating, so a cookie cannot be farmed for
	// long.
	cookieSecretLifetime = 2 * time.Minute
	// underLoadHold keeps the node in cookie mode this long after the
	// handshake queue was last found busy, so load does not flap per
	// packet.
	underLoadHold = time.Second
)

// Timings besides the session timers.
// Receiver indexes (handshake.go, sockets.go).
const (
	// indexTagMask selects the bits of every receiver index a node hands
	// out that hold its index tag, a random value fixed for the life of
	// its transport. The sockets' kernel filter drops data packets whose
	// receiver index lacks the tag, so a flood of junk shaped like data
	// from a sender that never had a session costs the node nothing but
	// one packet in 4096; 20 bits, a million indexes, are left for the
	// sessions and pending handshakes.
	indexTagMask uint32 = 0xFFF00000
)

// Stream handler goroutines (handlerpool.go).
const (
	// handlerIdle is how long a goroutine that ran a stream handler waits
	// for the next; maxIdleHandlers bounds those waiting, each holding the
	// stack its handlers grew (a few KiB to tens of KiB).
	handlerIdle     = 5 * time.Second
	maxIdleHandlers = 64
)

const (
	// defaultRoamSilence is Config.RoamSilence's default: a path moves to
	// another address only after the current one was silent this long,
	// several RTTs of any real path, so two live paths do not flap.
	defaultRoamSilence = time.Second
	// defaultForgetAfter is Config.ForgetAfter's default: a peer without
	// a session is forgotten this long after it was last heard from, long
	// enough for a laptop's sleep or a restart to come back as the same
	// Peer.
	defaultForgetAfter = 10 * time.Minute
	// defaultKeepalive is Config.KeepaliveInterval's default. An idle
	// session sends a ping this long after its last packet, and its
	// answer is what tells each side the other is alive: a peer that dies
	// is noticed a keepalive interval plus a probe timeout later at most,
	// within 5 s. It costs one ping and one pong (70 bytes each on the
	// wire over IPv4) every 2 s per idle peer, about 34 bytes/s each way,
	// and keeps any NAT mapping open (they commonly expire after 30 s).
	defaultKeepalive = 2 * time.Second
	// deadPeerKeepalives/4 × KeepaliveInterval is DeadPeerTimeout's
	// default (2.5 s): a peer that let a keepalive interval and a quarter
	// pass without a word is probed. The quarter covers the timer tick
	// and the network's jitter; a ping that is later still costs only a
	// probe, which the peer answers.
	deadPeerKeepalives = 5
	// defaultProbeTimeout is Config.ProbeTimeout's default: four probes
	// 375 ms apart, so a peer is declared down only after four round trips
	// failed in a row (at 10% loss each way, 1 in 770 suspicions; a
	// suspicion itself needs a keepalive interval of silence first).
	defaultProbeTimeout = 1500 * time.Millisecond
	// minProbes is how many probes a peer must leave unanswered before it
	// is down; they are ProbeTimeout/minProbes apart.
	minProbes = 4
	// probeRTTs: the probe window lasts at least this many smoothed round
	// trips, so a slow path is not mistaken for a dead one.
	probeRTTs = 4
	// minTick and maxTick bound the timer loop's period, which is a
	// quarter of the shortest timer it drives: at most 1000 wake-ups a
	// second, and at least 4 a second however long the timers.
	minTick = time.Millisecond
	maxTick = 250 * time.Millisecond
	// timerPauseLog: a timer loop that ran this much later than due logs
	// a warning; pauses that long mean the node gets too little CPU for
	// its timers (see transport.tick).
	timerPauseLog = time.Second
	// reverseRouteLifetime is how long a route learned from passing
	// traffic lasts without being refreshed: long enough for
	// request/response exchanges, short enough that a vanished path is
	// forgotten.
	reverseRouteLifetime = 2 * time.Minute
	// relayRetry is how often the node retries connecting to a configured
	// relay that is down.
	relayRetry = 5 * time.Second
	// leaveWait bounds how long Leave waits for its goodbyes to be
	// acknowledged: a few round trips of the longest path, with resends.
	// A peer that answers none is left to its failure detector.
	leaveWait = 2 * time.Second
	// leaveRetransmit spaces the resends of an unacknowledged goodbye:
	// the round trip of a long path, so a lost goodbye costs little.
	leaveRetransmit = 100 * time.Millisecond
)

// Membership (membership.go).
const (
	// memberSendTimeout bounds the wait for room to send a membership
	// message (a revocation must not be lost to back-pressure, but a
	// peer that stops reading must not hold a goroutine for long).
	memberSendTimeout = 30 * time.Second
	// renewRetry is how long a node waits before asking for a renewal
	// again when the last request got no certificate; renewal starts with
	// a third of the certificate's validity left, so retries have days.
	renewRetry = 10 * time.Second
	// renewTimeout bounds one renewal request: finding and reaching an
	// issuer (a handshake gives up after 15 s).
	renewTimeout = 20 * time.Second
)
