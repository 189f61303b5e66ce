package meshprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netmesh/netmesh/daemon"
)

// NewDaemons returns a collector of a daemon runtime: the daemons it
// hosts, migrates and holds as standbys now, and the spawns, migrations
// (in, out, failed by phase) and failovers it took part in. rt may be
// nil: the metrics are then absent.
func NewDaemons(rt *daemon.Runtime) prometheus.Collector {
	return newDaemonCollector(rt)
}

// daemonCollector exports daemon.RuntimeStats.
type daemonCollector struct {
	rt *daemon.Runtime

	hosted, migrating, incoming, standbys, groups, limit *prometheus.Desc
	failures                                             *prometheus.Desc
	counters                                             []counterField[daemon.RuntimeStats]
}

func newDaemonCollector(rt *daemon.Runtime) *daemonCollector {
	type RS = daemon.RuntimeStats
	return &daemonCollector{
		rt:        rt,
		hosted:    newDesc("daemon_hosted", "Daemons this node hosts, whatever they are doing."),
		migrating: newDesc("daemon_migrating", "Daemons this node hosts that are being migrated away."),
		incoming:  newDesc("daemon_incoming_transfers", "Daemons arriving here now: by a spawn, a migration, or as a standby."),
		standbys:  newDesc("daemon_standbys", "Standby copies this node holds."),
		groups:    newDesc("daemon_groups", "Replica and standby groups this node coordinates."),
		limit:     newDesc("daemon_max", "Daemons this node hosts at most (MaxDaemons)."),
		failures:  newDesc("daemon_migration_failures_total", "Migrations from this node that did not commit (the daemon stayed), by the phase they failed in.", "phase"),
		counters: []counterField[RS]{
			counter("daemon_spawned_total", "Daemons started here by a spawn: placed, from a snapshot, or a fork's child.", func(s *RS) uint64 { return s.Spawned }),
			counter("daemon_migrated_out_total", "Migrations from this node whose target committed.", func(s *RS) uint64 { return s.MigratedOut }),
			counter("daemon_migrated_in_total", "Daemons that arrived here by a migration and serve here.", func(s *RS) uint64 { return s.MigratedIn }),
			counter("daemon_arrivals_dropped_total", "Inbound migrations dropped before they served here: aborted, silent, or not completed by their source.", func(s *RS) uint64 { return s.ArrivalsDropped }),
			counter("daemon_promoted_total", "Standby copies held here that took over as the active.", func(s *RS) uint64 { return s.Promoted }),
			counter("daemon_failovers_total", "Standby promotions by the standby groups this node coordinates.", func(s *RS) uint64 { return s.Failovers }),
			counter("daemon_respawns_total", "Replicas the replica groups this node coordinates started again after their node went down.", func(s *RS) uint64 { return s.Respawns }),
		},
	}
}

// failurePhases are the phases a migration can fail in: up to the
// cutover, after which the target holds the daemon.
var failurePhases = []daemon.Phase{daemon.PhaseSnapshot, daemon.PhaseTransfer, daemon.PhaseRestore, daemon.PhaseReplay, daemon.PhaseCutover}

// Describe implements prometheus.Collector.
func (c *daemonCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hosted, c.migrating, c.incoming, c.standbys, c.groups, c.limit, c.failures} {
		ch <- d
	}
	describeCounters(ch, c.counters, nil)
}

// Collect implements prometheus.Collector.
func (c *daemonCollector) Collect(ch chan<- prometheus.Metric) {
	if c.rt == nil {
		return
	}
	st := c.rt.RuntimeStats()
	gauge(ch, c.hosted, float64(st.Hosted))
	gauge(ch, c.migrating, float64(st.Migrating))
	gauge(ch, c.incoming, float64(st.Incoming))
	gauge(ch, c.standbys, float64(st.Standbys))
	gauge(ch, c.groups, float64(st.Groups))
	gauge(ch, c.limit, float64(st.Limit))
	for _, p := range failurePhases {
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.MigrationFailures[p]), p.String())
	}
	collectCounters(ch, &st, c.counters, nil, nil)
}
