package stream

import "time"

// Protocol constants. Every size is in bytes unless its name says
// otherwise; every value says why it is what it is.
const (
	// chunkSize is the capacity of a pooled fragment buffer on ordinary
	// paths: 1536 holds the payload of any frame on a 1500-byte Ethernet
	// path while charging the window only 1.4x the payload of a default
	// 1280-byte-path fragment.
	chunkSize = 1536
	// jumboChunkSize is the capacity of a fragment buffer on a path whose
	// MTU the probe raised above Ethernet's, and so bounds a fragment's
	// payload: 9216 holds the payload of a frame in a 9000-byte jumbo
	// packet (data centres, cloud VPCs, loopback). Each packet costs a
	// seal, an open and its share of system calls and scheduling
	// whatever its size, so six times fewer packets move bulk data
	// faster on the same CPU.
	jumboChunkSize = 9 << 10
	// smallChunkSize is the capacity of a pooled buffer for a fragment that
	// holds only small messages: a 64-byte message must not pin 2 KiB of
	// send-window memory.
	smallChunkSize = 256

	// maxAckRanges bounds the selective-ACK ranges of one ACK frame: 32
	// ranges describe 32 separate holes, far more than a loss burst on a
	// path with a sane loss rate produces within one window, and keep the
	// worst-case ACK frame at 274 bytes, well inside a 1280-byte path.
	maxAckRanges = 32

	// packetThreshold is RFC 9002's kPacketThreshold: a fragment is lost
	// when one sent 3 transmissions after it has been acknowledged. Three
	// tolerates the mild reordering of multipath relays without waiting
	// for a retransmission timeout.
	packetThreshold = 3

	// ackEveryFragments makes the receiver acknowledge at least every
	// eighth in-order data fragment (out-of-order ones are acknowledged at
	// once, so loss detection is not slowed). RFC 9000 §13.2.2 suggests
	// every second packet, but an ACK costs a packet, a seal, an open and
	// a scheduling round on both ends: on loopback every second fragment
	// held one bulk stream to about 540 MB/s, every eighth reached 580-800
	// MB/s. The congestion controller counts bytes, so fewer ACKs do not
	// slow its growth; they release the window in bursts of 8 fragments
	// (about 11 KB), the order of what GRO coalesces anyway. Like Linux
	// TCP's ACK per coalesced GRO segment, and the thresholds QUIC's ACK
	// frequency extension lets senders request.
	ackEveryFragments = 8

	// quickAckFragments is how many fragments after one that arrived out
	// of order (a loss or reordering) the receiver acknowledges one by
	// one, as Linux TCP's quick-ACK mode does after out-of-order data: a
	// sender recovering from loss has a small congestion window, and ACKs
	// held for ackEveryFragments or MaxAckDelay stall its ACK clock (at
	// 10 % loss and 1131-byte frames that halved the stream's speed). 16
	// covers the few round trips a recovery takes; a clean path goes back
	// to every eighth.
	quickAckFragments = 16

	// finAckDelay bounds how long the ACK of a FIN is held back (at most
	// MaxAckDelay): long enough for a reply to carry it (an rpc handler
	// answers within tens of µs, and its reply then acknowledges the
	// request and its end in one packet), short enough that a sender
	// waiting in Close is not held for a whole MaxAckDelay.
	finAckDelay = 250 * time.Microsecond

	// maxUnreliablePartials bounds the unreliable messages one stream
	// reassembles at once. Four covers a sender whose messages overlap
	// through reordering; more would only hold memory for messages that
	// will be dropped as stale anyway.
	maxUnreliablePartials = 4

	// partialFragsKept bounds the fragment table an unreliable reassembly
	// slot keeps for its next message: 64 entries (512 bytes) take
	// messages of up to 64 fragments without allocating; a larger table,
	// sized by the peer's fragment count, is freed with its message.
	partialFragsKept = 64

	// minFrameSize is the smallest Link.MaxFrameSize the engine accepts:
	// a worst-case ACK (274 bytes) must fit, and fragments below ~500
	// bytes of payload would spend more than 3 % on headers.
	minFrameSize = 512

	// initialWindowFragments is the receive window a sender may assume
	// before the first ACK: 32 fragments (48 KiB of buffers). Every
	// receiver accepts at least this much (Config clamps RecvWindow).
	initialWindowFragments = 32

	// maxResetRetries is how often an unacknowledged RESET is resent
	// before the stream is forgotten: at 10 % loss, 8 tries fail together
	// with probability 1e-8.
	maxResetRetries = 8

	// skippedIDLimit bounds the peer stream ids remembered as "skipped"
	// (a higher id arrived first, through reordering or loss). A peer
	// cannot make the set grow beyond it.
	skippedIDLimit = 4096

	// tombWindow is how many of the most recent stream ids of each side
	// (opened locally, opened by the peer) keep a tombstone once their
	// stream is forgotten (see tombs.go): 2 bits per id, 8 KiB per Mux,
	// allocated when the Mux forgets its first stream. A frame for an
	// older forgotten stream is stale. At 10,000 streams per second the
	// window spans 1.6 s, several RTOs.
	tombWindow = 1 << 14

	// owedAckLimit bounds the ACKs that forgotten streams owe the peer
	// (see owed.go); at the limit they are all sent at once. 128 ACKs
	// pack into 3 packets.
	owedAckLimit = 128

	// maxStreamIDJump bounds how far above the highest peer stream id seen
	// a new peer stream id may be: an honest peer opens streams in order,
	// so a larger jump is an attack on the skipped-id set.
	maxStreamIDJump = 2 * skippedIDLimit

	// reassemblyInitial is the first reassembly buffer of a received
	// message; it doubles as bytes arrive. 64 KiB takes most messages in
	// one buffer, and a peer must send the bytes before the receiver
	// allocates for them (a 4-byte length prefix cannot cost 16 MiB).
	reassemblyInitial = 64 << 10

	// sizeClassMinShift and sizeClassMaxShift bound the pooled reassembly buffers of
	// received messages: powers of two from 256 B to 32 MiB, so any
	// message up to the 16 MiB default maximum fits one buffer.
	sizeClassMinShift = 8
	sizeClassMaxShift = 25
)

// Defaults for the zero values of Config and MuxConfig.
const (
	// DefaultMaxMessageSize is Config.MaxMessageSize when zero: 16 MiB.
	DefaultMaxMessageSize = 16 << 20
	// DefaultSendWindow is Config.SendWindow when zero: 4 MiB is the
	// bandwidth-delay product of 320 Mbit/s over a 100 ms path.
	DefaultSendWindow = 4 << 20
	// DefaultRecvWindow is Config.RecvWindow when zero, for the same
	// reason as DefaultSendWindow.
	DefaultRecvWindow = 4 << 20
	// DefaultCloseTimeout is Config.CloseTimeout when zero: how long Close
	// waits for the peer to acknowledge the data before it resets.
	DefaultCloseTimeout = 30 * time.Second

	// DefaultAcceptBacklog is MuxConfig.AcceptBacklog when zero: peer
	// streams waiting for Accept before further ones are refused. As many
	// as MaxStreams: a peer may open that many at once, and a burst of
	// them reaches the socket reader faster than an accept loop runs, so
	// a smaller backlog refuses streams an application would accept. What
	// a waiting stream holds is bounded by MaxStreams and RecvBudget.
	DefaultAcceptBacklog = 4096
	// DefaultMaxStreams is MuxConfig.MaxStreams when zero: concurrently
	// open peer-initiated streams before further ones are refused.
	DefaultMaxStreams = 4096
	// DefaultRecvBudget is MuxConfig.RecvBudget when zero: 64 MiB per peer
	// holds 16 full default receive windows, or four 16 MiB messages.
	DefaultRecvBudget = 64 << 20
	// DefaultSendBudget is MuxConfig.SendBudget when zero: 64 MiB per
	// peer, for the same reason as DefaultRecvBudget. Without it a peer
	// that opens MaxStreams streams, has each of them answered and never
	// acknowledges the answers made the node hold 4096 send windows of
	// 4 MiB, 16 GiB.
	DefaultSendBudget = 64 << 20
	// DefaultIdleTimeout is MuxConfig.IdleTimeout when zero: a stream the
	// peer opened on which nothing arrived and the application sent
	// nothing for 30 s, while it waits on the peer, is reset with
	// CodeIdle. 30 s is the idle timeout QUIC stacks commonly use for a
	// whole connection (quic-go's default); it is what stands between a
	// peer that opens streams and goes silent and the goroutines and
	// buffers the streams hold.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultMinRTO is MuxConfig.MinRTO when zero: the floor of the
	// retransmission timeout, which otherwise follows the measured RTT as
	// QUIC's probe timeout does (SRTT + max(4·RTTVAR, 1 ms) + MaxAckDelay).
	// On the Internet the RTT puts the timeout far above it; on a LAN or
	// loopback, where the RTT is 0.05-2 ms, it keeps a process that a busy
	// host deschedules for a few ms from taking its peer for lost. The
	// floor was 100 ms, 50-100 times the RTT of a loopback path, and a
	// lossy path spent its time waiting out tail losses: 0.11 MB/s at 10 %
	// loss.
	DefaultMinRTO = 5 * time.Millisecond
	// DefaultMaxRTO caps the exponential RTO back-off (RFC 6298 §5.5
	// allows a cap of at least 60 s; a mesh peer silent for longer is
	// declared dead by the session layer anyway).
	DefaultMaxRTO = 60 * time.Second
	// DefaultInitialRTT seeds the RTT estimator before the first sample.
	// RFC 9002 uses 333 ms for the open Internet; mesh peers usually have
	// a measured session RTT, and 100 ms gives a 300 ms first RTO.
	DefaultInitialRTT = 100 * time.Millisecond
	// DefaultMaxAckDelay is MuxConfig.MaxAckDelay when zero: how long a
	// receiver may hold an ACK for a lone in-order fragment. 1 ms keeps
	// request/response latency low; every second fragment is acked at once.
	DefaultMaxAckDelay = time.Millisecond
	// DefaultReassemblyTimeout is MuxConfig.ReassemblyTimeout when zero:
	// how long an incomplete unreliable message is kept. A fragment later
	// than 1 s is useless to a datagram user.
	DefaultReassemblyTimeout = time.Second
	// DefaultLinkRetry is how long the engine waits before retrying a
	// frame the Link refused with back-pressure: one socket-queue drain
	// at a few hundred thousand packets per second.
	DefaultLinkRetry = 200 * time.Microsecond
)

// Path-MTU discovery constants, from RFC 8899.
const (
	// pmtuMaxProbes is MAX_PROBES: a size is refuted after 3 lost probes
	// in a row, so one random loss does not lower the search.
	pmtuMaxProbes = 3
	// pmtuResolution ends the search when the confirmed and refuted sizes
	// are this close: 32 bytes is 2-3 % of a frame, not worth more probes.
	pmtuResolution = 32
	// pmtuProbeTimeoutRTOs is how many RTOs a probe waits for its PONG
	// before it counts as lost: a slow PONG must not refute a size, and a
	// late one still confirms it.
	pmtuProbeTimeoutRTOs = 3
)

// DefaultPathProbeInterval is MuxConfig.PathProbeInterval when zero:
// RFC 8899's PMTU_RAISE_TIMER of 600 s, the wait before searching again
// after a completed search or a black-hole fallback.
const DefaultPathProbeInterval = 600 * time.Second

// Congestion control constants, from RFC 9002 §7 and appendix B.
const (
	// initialWindowPackets is the initial congestion window in full-size
	// frames (RFC 9002 §7.2: 10 datagrams).
	initialWindowPackets = 10
	// minWindowPackets is the minimum congestion window (kMinimumWindow,
	// 2 datagrams).
	minWindowPackets = 2
	// persistentCongestionPTOs is kPersistentCongestionThreshold (RFC 9002
	// §7.6.1): fragments lost over more than 3 PTOs, with nothing sent in
	// between acknowledged on any stream, are persistent congestion, which
	// collapses the window to the minimum.
	persistentCongestionPTOs = 3
)

// Loss detection constants, from RFC 9002 §6.
const (
	// timeThresholdNum/timeThresholdDen is kTimeThreshold, 9/8: a
	// fragment sent that many RTTs before one that was acknowledged is
	// lost, even with fewer than packetThreshold acknowledged after it (a
	// stream's tail, or a stream that has one fragment in flight among
	// many streams).
	timeThresholdNum, timeThresholdDen = 9, 8
	// granularity is kGranularity: timers and RTT variance are not trusted
	// below 1 ms.
	granularity = time.Millisecond
	// zeroWindowProbeMin is the floor of the zero-window probe's timer,
	// where the retransmission timeout (a few ms on a LAN) would be: a
	// probe carries a whole fragment to a receiver that most likely drops
	// it, and many streams may wait for one receiver at once. A window
	// update lost on the path costs at most this, with back-off.
	zeroWindowProbeMin = 100 * time.Millisecond
)
