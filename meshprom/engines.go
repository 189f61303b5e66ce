package meshprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
)

// capabilityCollector exports the capability engine's index health and
// gossip counters.
type capabilityCollector struct {
	e               *capability.Engine
	nodes, known    *prometheus.Desc
	duplicateNames  *prometheus.Desc
	counters        []counterField[capability.Stats]
	rejected        *prometheus.Desc
	rejectedReasons []reasonField[capability.Stats]
}

func newCapabilityCollector(e *capability.Engine) *capabilityCollector {
	type S = capability.Stats
	return &capabilityCollector{
		e:              e,
		nodes:          newDesc("capability_nodes", "Nodes in the capability index by status: online, degraded (a refresh missed), offline (expired, still remembered), left (withdrew its announcement, still remembered).", "status"),
		known:          newDesc("capability_nodes_known", "Live nodes in the capability index, this node included."),
		duplicateNames: newDesc("capability_duplicate_names", "Names that more than one live node in the index claims (a name is a label, not an identity)."),
		counters: []counterField[S]{
			counter("capability_received_total", "Capability gossip messages received.", func(s *S) uint64 { return s.Received }),
			counter("capability_accepted_total", "Announcement versions accepted into the index.", func(s *S) uint64 { return s.Accepted }),
			counter("capability_duplicates_total", "Announcements received that the index already held.", func(s *S) uint64 { return s.Duplicates }),
			counter("capability_forwarded_total", "Accepted announcements queued for forwarding to neighbours.", func(s *S) uint64 { return s.Forwarded }),
			counter("capability_broadcasts_total", "Versions of this node's own announcement sent out.", func(s *S) uint64 { return s.Broadcasts }),
			counter("capability_messages_sent_total", "Capability gossip messages sent.", func(s *S) uint64 { return s.MessagesSent }),
			counter("capability_sent_bytes_total", "Bytes of capability gossip sent.", func(s *S) uint64 { return s.BytesSent }),
			counter("capability_send_errors_total", "Capability gossip messages the mesh refused to send.", func(s *S) uint64 { return s.SendErrors }),
			counter("capability_events_dropped_total", "Index change events lost to slow subscribers.", func(s *S) uint64 { return s.EventsDropped }),
			counter("capability_telemetry_errors_total", "Telemetry samples that failed or did not fit the announcement.", func(s *S) uint64 { return s.TelemetryErrors }),
			counter("capability_evicted_total", "Offline origins forgotten to make room for new ones.", func(s *S) uint64 { return s.Evicted }),
			counter("capability_withdrawals_total", "Withdrawals accepted: nodes that left.", func(s *S) uint64 { return s.Withdrawals }),
			counter("capability_withdrawals_unknown_total", "Withdrawals of origins never seen, ignored.", func(s *S) uint64 { return s.WithdrawalsUnknown }),
		},
		rejected: newDesc("capability_rejected_total", "Announcements rejected, by reason.", "reason"),
		rejectedReasons: []reasonField[S]{
			{"malformed", func(s *S) uint64 { return s.RejectedMalformed }},
			{"oversized", func(s *S) uint64 { return s.RejectedOversized }},
			{"hop_limit", func(s *S) uint64 { return s.RejectedHopLimit }},
			{"bad_signature", func(s *S) uint64 { return s.RejectedBadSignature }},
			{"tampered", func(s *S) uint64 { return s.RejectedTampered }},
			{"rebinding", func(s *S) uint64 { return s.RejectedRebinding }},
			{"old_version", func(s *S) uint64 { return s.RejectedOldVersion }},
			{"unsigned", func(s *S) uint64 { return s.RejectedUnsigned }},
			{"index_full", func(s *S) uint64 { return s.RejectedIndexFull }},
			{"peer_origins", func(s *S) uint64 { return s.RejectedPeerOrigins }},
			{"origin_rate", func(s *S) uint64 { return s.RejectedOriginRate }},
			{"expired", func(s *S) uint64 { return s.RejectedExpired }},
		},
	}
}

// Describe implements prometheus.Collector.
func (c *capabilityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.nodes
	ch <- c.known
	ch <- c.duplicateNames
	describeCounters(ch, c.counters, c.rejected)
}

// Collect implements prometheus.Collector.
func (c *capabilityCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.e.Health()
	gauge(ch, c.known, float64(h.Known))
	gauge(ch, c.nodes, float64(h.Online), "online")
	gauge(ch, c.nodes, float64(h.Degraded), "degraded")
	gauge(ch, c.nodes, float64(h.Offline), "offline")
	gauge(ch, c.nodes, float64(h.Left), "left")
	gauge(ch, c.duplicateNames, float64(h.DuplicateNames))
	st := c.e.Stats()
	collectCounters(ch, &st, c.counters, c.rejected, c.rejectedReasons)
}

// channelCollector exports the channel engine's counters and the
// subscribers of each channel the node publishes.
type channelCollector struct {
	e               *channel.Engine
	names           []string // the channels this node publishes
	subscribers     *prometheus.Desc
	counters        []counterField[channel.Stats]
	rejected        *prometheus.Desc
	rejectedReasons []reasonField[channel.Stats]
}

func newChannelCollector(e *channel.Engine, names []string) *channelCollector {
	type S = channel.Stats
	return &channelCollector{
		e:           e,
		names:       names,
		subscribers: newDesc("channel_subscribers", "Subscribers of a channel this node publishes.", "channel"),
		counters: []counterField[S]{
			counter("channel_received_total", "Channel messages received.", func(s *S) uint64 { return s.Received }),
			counter("channel_malformed_total", "Channel messages received that did not decode.", func(s *S) uint64 { return s.Malformed }),
			counter("channel_messages_sent_total", "Channel messages sent (a publish counts once per subscriber).", func(s *S) uint64 { return s.MessagesSent }),
			counter("channel_send_errors_total", "Channel messages the mesh refused to send.", func(s *S) uint64 { return s.SendErrors }),
			counter("channel_published_total", "Messages this node published, once per message.", func(s *S) uint64 { return s.Published }),
			counter("channel_subscribes_admitted_total", "Subscribe requests admitted to this node's channels.", func(s *S) uint64 { return s.Acks }),
			counter("channel_evicted_total", "Subscribers removed by this node (expiry, revocation, config change).", func(s *S) uint64 { return s.Evicted }),
			counter("channel_unsubscribes_total", "Subscribers that left this node's channels.", func(s *S) uint64 { return s.Unsubscribes }),
			counter("channel_delivered_total", "Publishes queued to this node's subscriptions.", func(s *S) uint64 { return s.Delivered }),
			counter("channel_dropped_total", "Publishes dropped because one of this node's subscriptions was full.", func(s *S) uint64 { return s.Dropped }),
			counter("channel_stray_total", "Publishes received for no current subscription.", func(s *S) uint64 { return s.Stray }),
		},
		rejected: newDesc("channel_subscribes_rejected_total", "Subscribe requests this node's channels refused, by reason.", "reason"),
		rejectedReasons: []reasonField[S]{
			{"unknown_channel", func(s *S) uint64 { return s.RejectedUnknown }},
			{"token", func(s *S) uint64 { return s.RejectedToken }},
			{"subnet", func(s *S) uint64 { return s.RejectedSubnet }},
			{"capabilities", func(s *S) uint64 { return s.RejectedCaps }},
			{"rate_limited", func(s *S) uint64 { return s.RejectedRateLimited }},
			{"full", func(s *S) uint64 { return s.RejectedFull }},
			{"groups", func(s *S) uint64 { return s.RejectedGroups }},
		},
	}
}

// Describe implements prometheus.Collector.
func (c *channelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.subscribers
	describeCounters(ch, c.counters, c.rejected)
}

// Collect implements prometheus.Collector.
func (c *channelCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range c.names {
		gauge(ch, c.subscribers, float64(len(c.e.Subscribers(name))), name)
	}
	st := c.e.Stats()
	collectCounters(ch, &st, c.counters, c.rejected, c.rejectedReasons)
}
