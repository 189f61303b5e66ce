package mesh

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/noise"
)

// DropReason says why an incoming packet was discarded.
type DropReason uint8

// Reasons for dropping an incoming packet. Every drop is counted under one.
const (
	DropShort           DropReason = iota // shorter than its type's header
	DropOversized                         // larger than any netmesh packet
	DropUnknownType                       // first byte is not a netmesh type (and not STUN)
	DropUnknownIndex                      // receiver index names no session or handshake
	DropBadTag                            // AEAD authentication failed
	DropReplay                            // counter already seen or older than the window
	DropBadMAC                            // handshake MAC1 wrong
	DropBadHandshake                      // Noise message did not decrypt or parse
	DropBadIdentity                       // identity payload signature or key binding wrong
	DropPinMismatch                       // peer is not the pinned key or id
	DropStaleInitiation                   // initiation timestamp not newer than the last one
	DropRateLimited                       // per-source handshake limit
	DropCookieRequired                    // under load without a valid MAC2 (a cookie was sent)
	DropQueueFull                         // a bounded receive queue was full
	DropExpired                           // session past its reject-after limits
	DropNoHandler                         // frame for an unregistered protocol
	DropBadRoute                          // routed packet whose source or path is not what it claims
	DropRelayDisabled                     // routed packet for another node while relaying is off
	DropHopLimit                          // routed packet that already crossed MaxHops relays
	DropNoRoute                           // routed packet for a node this relay cannot reach
	DropPeerLimit                         // handshake from a new node while at MaxPeers
	DropStreamBacklog                     // a peer's new stream found its listener's backlog full (refused)
	DropXXRefused                         // XX initiation to a node with Config.IKOnly
	DropLeaving                           // handshake initiation while the node leaves (Mesh.Leave)
	DropNoCertificate                     // closed mesh: handshake without a membership certificate
	DropCertInvalid                       // closed mesh: certificate malformed or wrongly signed
	DropCertUntrusted                     // closed mesh: certificate from an authority not trusted
	DropCertKeyMismatch                   // closed mesh: certificate for another key than the handshake's
	DropCertExpired                       // closed mesh: certificate past its validity
	DropCertNotYetValid                   // closed mesh: certificate before its validity
	DropCertRevoked                       // closed mesh: certificate revoked
	DropPairingCode                       // pairing proof for no code this node handed out
	DropPairingExpired                    // pairing proof for an expired code
	DropPairingReused                     // pairing proof for a code used already
	DropPairingLimited                    // pairing attempt beyond the source's budget
	DropNotIssuer                         // pairing proof to a node without an authority key
	DropNotMember                         // closed mesh: engine message or routed packet of a peer that is no longer a member
	DropSuiteRefused                      // AES-GCM initiation to a node without AES instructions (the initiator falls back)
	numDropReasons
)

var dropNames = [numDropReasons]string{
	"short", "oversized", "unknown_type", "unknown_index", "bad_tag", "replay",
	"bad_mac", "bad_handshake", "bad_identity", "pin_mismatch", "stale_initiation",
	"rate_limited", "cookie_required", "queue_full", "expired", "no_handler",
	"bad_route", "relay_disabled", "hop_limit", "no_route", "peer_limit",
	"stream_backlog", "xx_refused", "leaving", "no_certificate", "cert_invalid", "cert_untrusted",
	"cert_key_mismatch", "cert_expired", "cert_not_yet_valid", "cert_revoked",
	"pairing_code", "pairing_expired", "pairing_reused", "pairing_rate_limited",
	"pairing_not_issuer", "not_member", "suite_refused",
}

// String returns the reason's snake_case name, as used in Stats.Drops.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Stats is a snapshot of a node's counters.
type Stats struct {
	NodeID      identity.NodeID
	ListenAddrs []netip.AddrPort
	// IOMode names the socket batching in use, e.g. "gso+gro".
	IOMode string
	Peers  []PeerStats
	// Drops counts discarded incoming packets by DropReason name. Reasons
	// that never happened are absent.
	Drops map[string]uint64
	// SocketDrops counts datagrams the kernel dropped before the node
	// read them: neither netmesh packets nor STUN messages (the sockets'
	// filter refuses them), or arrived with a receive buffer full. Linux
	// only.
	SocketDrops uint64
	// SocketWrites counts the system calls that wrote packets, and
	// PacketsWritten the packets they wrote: each call writes what is
	// queued for its socket by then, up to 64 packets, so their ratio is
	// how well sends batch.
	SocketWrites   uint64
	PacketsWritten uint64
	// SendBackpressure counts sends refused because a queue was full.
	SendBackpressure uint64
	// HandshakesInitiated counts handshake initiations this node sent.
	HandshakesInitiated uint64
	// SuiteFallbacks counts dials that fell back from AES-256-GCM to
	// ChaCha20-Poly1305 after an unanswered initiation: the peer has no
	// AES instructions, predates the cipher suite byte, or a packet was
	// lost.
	SuiteFallbacks uint64
	// HandshakesCompleted counts sessions established, either side.
	HandshakesCompleted uint64
	// HandshakesProcessed counts handshake messages the node did
	// Diffie-Hellman work for, as responder or initiator.
	HandshakesProcessed uint64
	// CookiesSent counts cookie replies sent under load.
	CookiesSent uint64
	// Relayed counts packets this node forwarded for others.
	Relayed uint64
	// RoutesRefused counts reverse routes a relay did not learn because
	// it held 16384 of them, or 1024 through the neighbour the packet came
	// from (see docs/SECURITY.md); the packets were still forwarded.
	RoutesRefused uint64
	// PeerEventsDropped counts peer events lost because a WatchPeers
	// reader was more than 64 events behind.
	PeerEventsDropped uint64
}

// PeerStats is a snapshot of one peer.
type PeerStats struct {
	ID       identity.NodeID
	Endpoint netip.AddrPort
	// Path is "direct", "relayed" or "none" (no session).
	Path string
	// Via is the relay a relayed path goes through.
	Via identity.NodeID
	// PathReason explains Path in a few words.
	PathReason string
	Up         bool
	TxBytes    uint64
	RxBytes    uint64
	TxPackets  uint64
	RxPackets  uint64
	Handshakes uint64
	// RTT is the smoothed round-trip time; 0 until measured.
	RTT time.Duration
	// LastSeen is when the last authenticated packet arrived.
	LastSeen time.Time
	// SessionAge is how long the current session has existed.
	SessionAge time.Duration
	// CipherSuite is the current session's AEAD; zero without a session.
	CipherSuite noise.Suite
	// Streams lists the open streams of OpenStream and AcceptStream with
	// the peer, as Peer.StreamStats does.
	Streams []StreamStats
	// StreamMTU is the frame size, in bytes, those streams cut fragments
	// to: MaxDatagramSize until path MTU discovery confirms more (up to
	// 9232 on a path that carries jumbo frames); 0 before the first
	// stream.
	StreamMTU int
}

// counters are a node's atomic counters.
type counters struct {
	drops               [numDropReasons]atomic.Uint64
	sendBackpressure    atomic.Uint64
	socketWrites        atomic.Uint64
	packetsWritten      atomic.Uint64
	handshakesInitiated atomic.Uint64
	suiteFallbacks      atomic.Uint64
	handshakesCompleted atomic.Uint64
	handshakesProcessed atomic.Uint64
	cookiesSent         atomic.Uint64
	relayed             atomic.Uint64
	routesRefused       atomic.Uint64
	peerEventsDropped   atomic.Uint64
}

func (c *counters) drop(r DropReason) { c.drops[r].Add(1) }
