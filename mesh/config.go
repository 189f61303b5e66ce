package mesh

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/stream"
	"github.com/netmesh/netmesh/mesh/udp"
	"github.com/netmesh/netmesh/noise"
)

// Config configures a Mesh. The zero value of every field is a documented
// default, so Config{} is a working node with a fresh identity on a random
// loopback-and-wildcard port.
type Config struct {
	// Identity is the node's long-term key. Nil generates a new one, which
	// gives the node a new NodeID on every start.
	Identity *identity.Identity

	// ListenAddr is the UDP address to listen on, as "host:port". An empty
	// host (":7946") opens one socket per address family: 0.0.0.0 and [::].
	// The empty string means ":0", a random port.
	ListenAddr string

	// Conn, if set, replaces the sockets that ListenAddr would open. Tests
	// pass a meshtest.FaultConn here. The mesh closes it on Close.
	Conn udp.Conn

	// Relays are nodes that forward for this node when a peer cannot be
	// reached directly. The node connects to each at Start and keeps the
	// sessions up; ConnectNode routes through them when it knows no better
	// route.
	Relays []Relay

	// DisableRelay stops this node from forwarding routed packets between
	// other nodes. It still uses relays itself.
	DisableRelay bool

	// Capabilities configures the node's capability engine (TTL, announce
	// rate limit, telemetry, ...). Its zero value is documented in package
	// capability. OnRoute, if set, is called besides the mesh's own route
	// learning.
	Capabilities capability.Config

	// Channels configures the node's pub/sub engine: the subnet policy,
	// a pinned subnet, sweep and limiter settings. Its zero value is
	// documented in package channel.
	Channels channel.Options

	// Streams configures every peer's stream multiplexer, including the
	// defaults for streams peers open. The zero value is documented in
	// package mesh/stream.
	Streams stream.MuxConfig

	// NAT configures NAT traversal: reflex discovery, hole punching and
	// port mapping. It takes effect only in builds with the nat build tag
	// (portmap too for port mapping); see NATConfig and docs/NAT.md.
	NAT NATConfig

	// Membership closes the mesh to all but the members of trusted
	// authorities, and holds this node's certificate; the zero value is
	// an open mesh. See MembershipConfig and docs/SECURITY.md.
	Membership MembershipConfig

	// Logger receives the node's logs. Nil discards them.
	Logger *slog.Logger

	// SendQueue bounds packets waiting for the socket, per socket.
	// 0 means 2048. When full, sends fail with ErrBackpressure.
	SendQueue int
	// DatagramQueue bounds received datagrams waiting for ReadDatagram.
	// 0 means 1024. When full, new datagrams are dropped and counted.
	DatagramQueue int
	// HandshakeQueue bounds handshake messages waiting for the handshake
	// workers. 0 means 256. Beyond an eighth of it the node is under load
	// and demands cookies; when full, handshake messages are dropped.
	HandshakeQueue int
	// HandshakeRate is the number of handshake initiations per second one
	// source (an IPv4 address, or an IPv6 /64) may make, with a burst of
	// the same size, while the node is under load; the same holds for
	// initiations one peer relays. 0 means 20.
	HandshakeRate int

	// MaxPeers bounds the peers the node keeps state for. Handshakes from
	// new nodes beyond it are refused (counted as peer_limit), unless a
	// peer that never came up (an IK initiation that was never completed)
	// can be forgotten to make room; the node's own Connect calls are not
	// limited. 0 means 4096.
	MaxPeers int

	// IKOnly makes the node answer only initiators that already know its
	// key (Noise IK): an XX initiation, which anyone who knows only the
	// address can send, is dropped unanswered (counted as xx_refused), so
	// a scanner learns nothing from the node, not even that one is there.
	// Peers must then connect with the node's key (Pin.Key, or
	// ConnectNode with the key). The node's own XX dials still work. See
	// docs/SECURITY.md.
	IKOnly bool
	// CipherSuite is the AEAD of the sessions this node starts: the
	// initiator of a handshake picks the suite, and a node answers both.
	// Zero means noise.PreferredSuite(): AES-256-GCM where the CPU has
	// AES instructions, about twice as fast as ChaCha20-Poly1305 there,
	// else ChaCha20-Poly1305. Nodes older than the suite byte of the
	// handshake header answer ChaCha20-Poly1305 only: set
	// noise.SuiteChaChaPoly to reach them. See docs/SECURITY.md.
	CipherSuite noise.Suite

	// Timers: zero means the default from package noise, unless said
	// otherwise. Tests shrink them.

	// RekeyAfter starts a new handshake when a session is this old.
	RekeyAfter time.Duration
	// RejectAfter drops a session this old.
	RejectAfter time.Duration
	// KeepaliveInterval sends a ping when nothing was sent for this long;
	// the peer's answer tells the node it is alive, and the pings keep NAT
	// mappings open. 0 means 2 s: about 34 bytes/s each way per idle peer
	// (see docs/OPERATIONS.md, Failure detection).
	KeepaliveInterval time.Duration
	// HandshakeRetransmit is the base interval between handshake attempts.
	HandshakeRetransmit time.Duration
	// HandshakeGiveUp abandons a handshake that has not completed.
	HandshakeGiveUp time.Duration
	// DeadPeerTimeout is how long a peer may stay silent (nothing
	// authenticated arrived) before the node probes it; a peer is probed
	// sooner when something the node sent went unanswered for a keepalive
	// interval. 0 means 1.25 keepalive intervals (2.5 s).
	DeadPeerTimeout time.Duration
	// ProbeTimeout is how long the probes of a silent peer may all go
	// unanswered before the peer is down: its sessions end (streams with
	// it fail), it is reported down, and the node dials it once more, in
	// case it restarted. Probes are pings, four at least, a quarter of it
	// apart; the window is at least four round trips, and restarts
	// whenever this node itself was stalled (its timer ran late by a
	// quarter of it), so a starved machine does not declare live peers
	// dead. 0 means 1.5 s: a peer that dies is down within about 4 s with
	// the defaults.
	ProbeTimeout time.Duration
	// ForgetAfter is how long a peer with no session is remembered; then
	// it is dropped from Peers, and a *Peer held for it stays down for good
	// (look the node up again). 0 means 10 minutes.
	ForgetAfter time.Duration
	// RoamSilence is how long the current endpoint must have been silent
	// before an authenticated packet from another address moves the
	// endpoint. It keeps two live addresses from making the path flap.
	// 0 means 1 s.
	RoamSilence time.Duration
}

// Relay names a relay node: its address and, optionally, the key or id it
// must have.
type Relay struct {
	Addr netip.AddrPort
	Pin  Pin
}

// timers is Config's timing knobs with defaults applied.
type timers struct {
	rekeyAfter, rejectAfter, keepalive    time.Duration
	retransmit, giveUp, dead, roamSilence time.Duration
	probe, probeInterval                  time.Duration
	forget                                time.Duration
	tick                                  time.Duration
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (c *Config) timers() timers {
	t := timers{
		rekeyAfter:  orDefault(c.RekeyAfter, noise.RekeyAfterTime),
		rejectAfter: orDefault(c.RejectAfter, noise.RejectAfterTime),
		keepalive:   orDefault(c.KeepaliveInterval, defaultKeepalive),
		retransmit:  orDefault(c.HandshakeRetransmit, noise.HandshakeRetransmit),
		giveUp:      orDefault(c.HandshakeGiveUp, noise.HandshakeGiveUp),
		roamSilence: orDefault(c.RoamSilence, defaultRoamSilence),
		forget:      orDefault(c.ForgetAfter, defaultForgetAfter),
	}
	t.dead = orDefault(c.DeadPeerTimeout, t.keepalive*deadPeerKeepalives/4)
	t.probe = orDefault(c.ProbeTimeout, defaultProbeTimeout)
	t.probeInterval = t.probe / minProbes
	// The timer loop runs often enough to honour the shortest knob, and
	// to send each probe within half a probe interval of its time.
	t.tick = min(t.retransmit/4, t.keepalive/4, t.roamSilence/4, t.probeInterval/2)
	t.tick = max(t.tick, minTick)
	t.tick = min(t.tick, maxTick)
	return t
}
