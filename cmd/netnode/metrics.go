package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/netmesh/netmesh/mesh"
)

// metricsHandler serves the Prometheus metrics of the node: its mesh,
// capability, channel, rpc and (in nat builds) NAT traversal counters,
// plus the Go runtime and process collectors. docs/OPERATIONS.md lists
// every metric; keep the two in step.
func metricsHandler(n *node) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(nodeCollectors(n)...)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// nodeCollectors returns the collectors of the node's own metrics.
func nodeCollectors(n *node) []prometheus.Collector {
	return append([]prometheus.Collector{
		newStatsCollector(n.m),
		newCapabilityCollector(n.m.Capabilities()),
		newChannelCollector(n.m.Channels(), n.rc.channelNames()),
		newRPCCollector(n.srv, n.rpc),
	}, natCollectors(n.m)...)
}

// statsCollector exports mesh.Stats as Prometheus metrics. It reads a
// fresh snapshot on every scrape and keeps no state of its own.
type statsCollector struct {
	m *mesh.Mesh

	info, peersUp, peersKnown                        *prometheus.Desc
	peerUp, peerRelayed, peerRTT, peerLastSeen       *prometheus.Desc
	peerTxBytes, peerRxBytes, peerTxPkts, peerRxPkts *prometheus.Desc
	peerHandshakes                                   *prometheus.Desc
	drops, backpressure, hsInit, hsDone, hsWork      *prometheus.Desc
	cookies, relayed, routesRefused                  *prometheus.Desc
}

func newStatsCollector(m *mesh.Mesh) *statsCollector {
	return &statsCollector{
		m:              m,
		info:           newDesc("node_info", "Always 1; labels name the node and its socket batching mode.", "node_id", "io_mode"),
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
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.info, c.peersUp, c.peersKnown,
		c.peerUp, c.peerRelayed, c.peerRTT, c.peerLastSeen,
		c.peerTxBytes, c.peerRxBytes, c.peerTxPkts, c.peerRxPkts, c.peerHandshakes,
		c.drops, c.backpressure, c.hsInit, c.hsDone, c.hsWork, c.cookies, c.relayed, c.routesRefused,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.info, 1, st.NodeID.String(), st.IOMode)
	up := 0
	for _, p := range st.Peers {
		id := p.ID.String()
		if p.Up {
			up++
		}
		gauge(c.peerUp, b2f(p.Up), id)
		gauge(c.peerRelayed, b2f(p.Path == "relayed"), id)
		if p.RTT > 0 {
			gauge(c.peerRTT, p.RTT.Seconds(), id)
		}
		if !p.LastSeen.IsZero() {
			gauge(c.peerLastSeen, float64(p.LastSeen.UnixNano())/1e9, id)
		}
		counter(c.peerTxBytes, p.TxBytes, id)
		counter(c.peerRxBytes, p.RxBytes, id)
		counter(c.peerTxPkts, p.TxPackets, id)
		counter(c.peerRxPkts, p.RxPackets, id)
		counter(c.peerHandshakes, p.Handshakes, id)
	}
	gauge(c.peersUp, float64(up))
	gauge(c.peersKnown, float64(len(st.Peers)))
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
}

// b2f is 1 for true and 0 for false.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
