package meshprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
)

// Options configures New.
type Options struct {
	// Channels names the channels the node publishes: each gets a
	// netmesh_channel_subscribers gauge. The mesh does not list them
	// itself.
	Channels []string
}

// New returns a collector of m's metrics: the node and its peers
// (mesh.Stats), the capability index and gossip, the channels, NAT
// traversal when m was built with the nat tag (mesh.TraversalStats), and
// membership (mesh.MembershipStats).
func New(m *mesh.Mesh, opts Options) prometheus.Collector {
	return collectors{
		newStatsCollector(m),
		newCapabilityCollector(m.Capabilities()),
		newChannelCollector(m.Channels(), opts.Channels),
		newNATCollector(m),
		newMembershipCollector(m),
	}
}

// collectors is several collectors as one.
type collectors []prometheus.Collector

// Describe implements prometheus.Collector.
func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// statsCollector exports mesh.Stats.
type statsCollector struct {
	m *mesh.Mesh

	info, peersUp, peersKnown                        *prometheus.Desc
	peerInfo                                         *prometheus.Desc
	peerUp, peerRelayed, peerRTT, peerLastSeen       *prometheus.Desc
	peerTxBytes, peerRxBytes, peerTxPkts, peerRxPkts *prometheus.Desc
	peerHandshakes                                   *prometheus.Desc
	drops, backpressure, hsInit, hsDone, hsWork      *prometheus.Desc
	cookies, relayed, routesRefused                  *prometheus.Desc
	socketWrites, packetsWritten, suiteFallbacks     *prometheus.Desc
}

func newStatsCollector(m *mesh.Mesh) *statsCollector {
	return &statsCollector{
		m:              m,
		info:           newDesc("node_info", "Always 1; labels name the node (its NodeID, and the name it announces or empty) and its socket batching mode.", "node_id", "name", "io_mode"),
		peerInfo:       newDesc("peer_info", "Always 1; the label is the name the peer announces, or empty. A name is a label, not an identity.", "peer", "name"),
		peersUp:        newDesc("peers_up", "Peers with an established session."),
		peersKnown:     newDesc("peers_known", "Peers the node has had a session with, up or not."),
		peerUp:         newDesc("peer_up", "1 if the peer has an established session, else 0.", "peer"),
		peerRelayed:    newDesc("peer_relayed", "1 if packets to the peer go through a relay, else 0.", "peer"),
		peerRTT:        newDesc("peer_rtt_seconds", "Smoothed round-trip time to the peer; absent until measured.", "peer"),
		peerLastSeen:   newDesc("peer_last_seen_timestamp_seconds", "Unix time of the last authenticated packet from the peer; absent if none.", "peer"),
		peerTxBytes:    newDesc("peer_tx_bytes_total", "Bytes sent to the peer.", "peer"),
		peerRxBytes:    newDesc("peer_rx_bytes_total", "Bytes received from the peer.", "peer"),
		peerTxPkts:     newDesc("peer_tx_packets_total", "Packets sent to the peer.", "peer"),
		peerRxPkts:     newDesc("peer_rx_packets_total", "Packets received from the peer.", "peer"),
		peerHandshakes: newDesc("peer_handshakes_total", "Sessions established with the peer.", "peer"),
		drops:          newDesc("drops_total", "Incoming packets discarded, by reason.", "reason"),
		backpressure:   newDesc("send_backpressure_total", "Sends refused because a bounded queue was full."),
		hsInit:         newDesc("handshakes_initiated_total", "Handshake initiations this node sent."),
		hsDone:         newDesc("handshakes_completed_total", "Sessions established, either side."),
		hsWork:         newDesc("handshakes_processed_total", "Handshake messages the node did Diffie-Hellman work for."),
		cookies:        newDesc("cookies_sent_total", "Cookie replies sent while under handshake load."),
		relayed:        newDesc("relayed_packets_total", "Packets this node forwarded for other nodes."),
		routesRefused:  newDesc("reverse_routes_refused_total", "Reverse routes this relay did not learn because its tables were full (the packets were still forwarded)."),
		socketWrites:   newDesc("socket_writes_total", "System calls that wrote packets; packets_written_total over it is how well sends batch."),
		packetsWritten: newDesc("packets_written_total", "Packets written to the node's sockets, handshakes included."),
		suiteFallbacks: newDesc("suite_fallbacks_total", "Dials that fell back from AES-256-GCM to ChaCha20-Poly1305 after an unanswered initiation."),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.info, c.peersUp, c.peersKnown, c.peerInfo,
		c.peerUp, c.peerRelayed, c.peerRTT, c.peerLastSeen,
		c.peerTxBytes, c.peerRxBytes, c.peerTxPkts, c.peerRxPkts, c.peerHandshakes,
		c.drops, c.backpressure, c.hsInit, c.hsDone, c.hsWork, c.cookies, c.relayed, c.routesRefused,
		c.socketWrites, c.packetsWritten, c.suiteFallbacks,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	ix := c.m.Capabilities().Index()
	name := func(id identity.NodeID) string {
		n, _ := ix.Lookup(id)
		return n.Name()
	}
	gauge(ch, c.info, 1, st.NodeID.String(), name(st.NodeID), st.IOMode)
	up := 0
	for _, p := range st.Peers {
		id := p.ID.String()
		if p.Up {
			up++
		}
		gauge(ch, c.peerInfo, 1, id, name(p.ID))
		gauge(ch, c.peerUp, b2f(p.Up), id)
		gauge(ch, c.peerRelayed, b2f(p.Path == "relayed"), id)
		if p.RTT > 0 {
			gauge(ch, c.peerRTT, p.RTT.Seconds(), id)
		}
		if !p.LastSeen.IsZero() {
			gauge(ch, c.peerLastSeen, float64(p.LastSeen.UnixNano())/1e9, id)
		}
		counter(c.peerTxBytes, p.TxBytes, id)
		counter(c.peerRxBytes, p.RxBytes, id)
		counter(c.peerTxPkts, p.TxPackets, id)
		counter(c.peerRxPkts, p.RxPackets, id)
		counter(c.peerHandshakes, p.Handshakes, id)
	}
	gauge(ch, c.peersUp, float64(up))
	gauge(ch, c.peersKnown, float64(len(st.Peers)))
	// Every reason, zeros included, so that rate() works from the start.
	for r := mesh.DropReason(0); r.String() != "unknown"; r++ {
		counter(c.drops, st.Drops[r.String()], r.String())
	}
	counter(c.backpressure, st.SendBackpressure)
	counter(c.hsInit, st.HandshakesInitiated)
	counter(c.hsDone, st.HandshakesCompleted)
	counter(c.hsWork, st.HandshakesProcessed)
	counter(c.cookies, st.CookiesSent)
	counter(c.relayed, st.Relayed)
	counter(c.routesRefused, st.RoutesRefused)
	counter(c.socketWrites, st.SocketWrites)
	counter(c.packetsWritten, st.PacketsWritten)
	counter(c.suiteFallbacks, st.SuiteFallbacks)
}

// natCollector exports mesh.TraversalStats: the NAT classification and
// the hole-punching counters. A node built without the nat tag has none
// of them, and the collector sends nothing.
type natCollector struct {
	m        *mesh.Mesh
	info     *prometheus.Desc
	counters []counterField[mesh.TraversalStats]
}

func newNATCollector(m *mesh.Mesh) *natCollector {
	type S = mesh.TraversalStats
	return &natCollector{
		m:    m,
		info: newDesc("nat_info", "Always 1; the label is the NAT type this node found: unknown, open, cone or symmetric.", "type"),
		counters: []counterField[S]{
			counter("nat_punches_attempted_total", "Hole punches this node probed for, either side.", func(s *S) uint64 { return s.PunchesAttempted }),
			counter("nat_punches_succeeded_total", "Hole punches that ended with a direct path.", func(s *S) uint64 { return s.PunchesSucceeded }),
			counter("nat_punches_skipped_total", "Introductions declined because the two NAT types cannot be punched.", func(s *S) uint64 { return s.PunchesSkipped }),
			counter("nat_relay_fallbacks_total", "Times a peer stayed on or went back to a relay: failed or skipped punches, direct paths that went silent.", func(s *S) uint64 { return s.RelayFallbacks }),
			counter("nat_introductions_total", "Introductions this node made as the coordinator of a punch.", func(s *S) uint64 { return s.Introductions }),
			counter("nat_reflex_queries_total", "STUN and peer reflexive-address requests sent.", func(s *S) uint64 { return s.ReflexQueries }),
			counter("nat_reflex_answers_total", "Answers to reflexive-address requests.", func(s *S) uint64 { return s.ReflexAnswers }),
			counter("nat_classifications_total", "Completed NAT classifications.", func(s *S) uint64 { return s.Classifications }),
		},
	}
}

// Describe implements prometheus.Collector.
func (c *natCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.info
	describeCounters(ch, c.counters, nil)
}

// Collect implements prometheus.Collector.
func (c *natCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.TraversalStats()
	if !st.Enabled {
		return
	}
	gauge(ch, c.info, 1, st.Type.String())
	collectCounters(ch, &st, c.counters, nil, nil)
}

// membershipCollector exports mesh.MembershipStats and when this node's
// own certificate ends.
type membershipCollector struct {
	m                          *mesh.Mesh
	closed, revocations, until *prometheus.Desc
	counters                   []counterField[mesh.MembershipStats]
}

func newMembershipCollector(m *mesh.Mesh) *membershipCollector {
	type S = mesh.MembershipStats
	return &membershipCollector{
		m:           m,
		closed:      newDesc("membership_closed", "1 if the node admits members only (a closed mesh), else 0."),
		revocations: newDesc("membership_revocations", "Membership revocations the node holds."),
		until:       newDesc("membership_certificate_expiry_seconds", "When this node's membership certificate ends (Unix seconds); 0 without one."),
		counters: []counterField[S]{
			counter("membership_signatures_checked_total", "Peer certificate signatures checked.", func(s *S) uint64 { return s.Signatures }),
			counter("membership_certificate_cache_hits_total", "Peer certificates found verified already (a peer handshaking again).", func(s *S) uint64 { return s.CacheHits }),
			counter("membership_renewals_total", "Times this node's certificate was renewed online.", func(s *S) uint64 { return s.Renewals }),
			counter("membership_issued_total", "Certificates this node issued with its authority key (pairings and renewals).", func(s *S) uint64 { return s.Issued }),
		},
	}
}

// Describe implements prometheus.Collector.
func (c *membershipCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.closed
	ch <- c.revocations
	ch <- c.until
	describeCounters(ch, c.counters, nil)
}

// Collect implements prometheus.Collector.
func (c *membershipCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.MembershipStats()
	gauge(ch, c.closed, b2f(st.Closed))
	gauge(ch, c.revocations, float64(st.Revocations))
	var until float64
	if cert := c.m.Certificate(); cert != nil {
		until = float64(cert.NotAfter.Unix())
	}
	gauge(ch, c.until, until)
	collectCounters(ch, &st, c.counters, nil, nil)
}
