//go:build nat

package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netmesh/netmesh/mesh"
)

// natCollectors returns the collector of NAT traversal metrics: this
// netnode is built with -tags nat.
func natCollectors(m *mesh.Mesh) []prometheus.Collector {
	return []prometheus.Collector{newNATCollector(m)}
}

// natCollector exports mesh.TraversalStats: the NAT classification and
// the hole-punching counters.
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
	for _, f := range c.counters {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector.
func (c *natCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.TraversalStats()
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, st.Type.String())
	collectCounters(ch, &st, c.counters, nil, nil)
}
