package rpc

import (
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// ProtocolName names the mesh protocol rpc calls travel on (see
// mesh.NewProtocol); its streams never mix with the application's.
const ProtocolName = "netmesh/rpc"

// protocol is the mesh protocol named ProtocolName.
var protocol = mesh.MustProtocol(ProtocolName)

// Defaults for the zero values of ServerOptions and ClientOptions.
const (
	// DefaultMaxRequestSize is ServerOptions.MaxRequestSize when zero: a
	// request body the server hands to a handler. 1 MiB is generous for
	// request/response; bulk data belongs in a stream.
	DefaultMaxRequestSize = 1 << 20
	// DefaultRequestTimeout is ServerOptions.RequestTimeout when zero: the
	// time a request has to arrive whole once its first fragment did.
	// 30 s carries the largest accepted request (16 MiB) at about
	// 4 Mbit/s.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultMaxConcurrent is ServerOptions.MaxConcurrent when zero:
	// handlers running at once before further calls are refused with
	// StatusUnavailable (and fail over elsewhere), instead of queueing
	// without bound.
	DefaultMaxConcurrent = 1024
	// DefaultMaxMessageSize is ClientOptions.MaxMessageSize when zero: the
	// largest request frame a client sends and reply frame it accepts.
	// 4 MiB bounds what one reply can make a caller buffer.
	DefaultMaxMessageSize = 4 << 20
	// DefaultCredit is the initial credit of a streaming call: chunks the
	// server may send before the caller consumes any. 16 keeps a LAN
	// stream busy without letting a slow consumer buffer much.
	DefaultCredit = 16
	// DefaultMaxAttempts is ClientOptions.MaxAttempts when zero: nodes
	// CallService tries before giving up.
	DefaultMaxAttempts = 3
	// DefaultBreakerFailures is BreakerConfig.Failures when zero.
	DefaultBreakerFailures = 5
	// DefaultBreakerCooldown is BreakerConfig.Cooldown when zero: long
	// enough for a restarting node to come back, short enough that a
	// recovered node is probed again within seconds.
	DefaultBreakerCooldown = 5 * time.Second
	// DefaultRetryInitial, DefaultRetryMax and DefaultRetryAttempts are the
	// zero RetryPolicy's back-off: 10 ms doubling to at most 1 s, 5 attempts.
	DefaultRetryInitial  = 10 * time.Millisecond
	DefaultRetryMax      = time.Second
	DefaultRetryAttempts = 5
)

// Internal timings.
const (
	// stallTimeout bounds how long a server waits for a caller that makes
	// no progress taking the call's final frame: while the frame and the
	// end of the stream wait for the caller's acknowledgement, a check
	// every stallTimeout resets the stream (abandoned) when nothing was
	// acknowledged or queued since the previous check. A slow reader keeps
	// acknowledging, so it is never cut off; a silent one is within 30 to
	// 60 s.
	stallTimeout = 30 * time.Second
	// closeLinger bounds how long Close (and Shutdown once its context
	// ended) waits, after cancelling the handlers, for callers to take
	// their calls' final frames: a caller that is there acknowledges
	// within a round trip, so a second is ample; one that went away
	// would otherwise hold the server for stallTimeout.
	closeLinger = time.Second
)

// maxPooledFrame bounds, in bytes, the buffers kept for encoding the
// frames calls send (a request, a final frame): a buffer grown beyond it
// by a large call is left to the collector, so one such call does not pin
// its size in the pool. 64 KiB holds the frames of the calls most
// services make.
const maxPooledFrame = 64 << 10

// Bounds of a Client's per-node table (see Client).
const (
	// nodeTableMin is the table size below which a Client forgets no node:
	// it sweeps idle nodes when a new node would take the table to
	// max(nodeTableMin, twice what the last sweep kept). 4096 is the mesh's
	// default MaxPeers, so a client that calls every peer of a default mesh
	// never sweeps; at about 130 bytes a node (measured, map included)
	// the table stays near half a MiB unless more nodes than that must be
	// remembered.
	nodeTableMin = 4096
	// breakerMemory is how long, beyond its Cooldown, a Client remembers a
	// node with no call in flight whose breaker holds failures (open,
	// half-open, or closed with failures counted), counted from its last
	// failure or probe. Once its cooldown has passed, a breaker only makes
	// the next call a lone probe; forgotten, the next call goes through
	// just the same, and up to Failures calls fail before a fresh breaker
	// opens. A minute is far longer than CallWithRetry's back-off
	// (DefaultRetryMax, 1 s), so a node still being called keeps its
	// history, while a departed node nobody calls is forgotten a minute
	// after its cooldown; the nodes kept are then those that failed in
	// the last Cooldown plus a minute, and those with calls in flight.
	breakerMemory = time.Minute
)

// Stream reset codes of package rpc, in the application's range (below
// stream.CodeReservedMin). "RP" in the upper half.
const (
	// resetDone: the caller read the final frame; the call is over.
	resetDone uint32 = 0x5250_0000
	// resetCancelled: the caller's context was cancelled.
	resetCancelled uint32 = 0x5250_0001
	// resetDeadline: the caller's deadline passed.
	resetDeadline uint32 = 0x5250_0002
	// resetProtocol: the peer sent a frame that does not parse or does
	// not belong at that point of the call.
	resetProtocol uint32 = 0x5250_0003
	// resetUnavailable: the server is closed and refused the call unread.
	resetUnavailable uint32 = 0x5250_0004
	// resetAbandoned: the server gave up on the caller: its request did
	// not arrive whole within RequestTimeout, or it stopped acknowledging
	// the final frame (see stallTimeout).
	resetAbandoned uint32 = 0x5250_0005
)

// capabilityLayer is the layer of the node's capability set that holds
// the server's "rpc:<service>" tags, apart from the application's own
// part, so an application announcing its set does not drop them.
const capabilityLayer = "rpc"
