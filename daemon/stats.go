package daemon

import "sync/atomic"

// RuntimeStats is a snapshot of a runtime: what it hosts and holds now,
// and what it did since NewRuntime. A migration counts on both of its
// nodes: MigratedOut (or a failure) on its source, MigratedIn (or
// ArrivalsDropped) on its target. A failover counts on the node that
// coordinates the group (Failovers) and on the standby's node
// (Promoted).
type RuntimeStats struct {
	// Hosted is the daemons hosted here, whatever they are doing;
	// Migrating is those of them being migrated away from here.
	Hosted, Migrating int
	// Incoming is the inbound transfers under way: daemons arriving by
	// a spawn, a migration or as a standby.
	Incoming int
	// Standbys is the standby copies held here.
	Standbys int
	// Groups is the replica and standby groups this runtime
	// coordinates (watches).
	Groups int
	// Limit is MaxDaemons.
	Limit int

	// Spawned counts daemons started here by a spawn: placed, from a
	// snapshot, or a fork's child.
	Spawned uint64
	// MigratedOut counts migrations from here whose target committed.
	MigratedOut uint64
	// MigrationFailures counts migrations from here that did not
	// commit (the daemon kept running here), by the Phase they failed
	// in; index 0 and PhaseComplete are never counted.
	MigrationFailures [PhaseComplete + 1]uint64
	// MigratedIn counts daemons that arrived here by a migration and
	// serve here.
	MigratedIn uint64
	// ArrivalsDropped counts inbound migrations dropped before they
	// served here: aborted by their source, silent, or a source that
	// did not complete.
	ArrivalsDropped uint64
	// Promoted counts standby copies held here that took over as the
	// active.
	Promoted uint64
	// Failovers counts the promotions of a standby by the standby
	// groups this runtime coordinates.
	Failovers uint64
	// Respawns counts the replicas the replica groups this runtime
	// coordinates started again after their node went down.
	Respawns uint64
}

// runtimeCounters are the counters of RuntimeStats, updated where their
// events happen.
type runtimeCounters struct {
	spawned, migratedOut, migratedIn, arrivalsDropped atomic.Uint64
	promoted, failovers, respawns                     atomic.Uint64
	migrationFailures                                 [PhaseComplete + 1]atomic.Uint64
}

// migrationFailed counts a migration from here that failed in phase p.
func (c *runtimeCounters) migrationFailed(p Phase) {
	if p >= PhaseSnapshot && p < PhaseComplete {
		c.migrationFailures[p].Add(1)
	}
}

// RuntimeStats returns a snapshot of the runtime's daemons and counters.
// (Stats is one daemon's Info.)
func (rt *Runtime) RuntimeStats() RuntimeStats {
	st := RuntimeStats{Limit: rt.cfg.MaxDaemons}
	rt.mu.RLock()
	st.Hosted, st.Incoming = len(rt.daemons), len(rt.incoming)
	st.Standbys, st.Groups = len(rt.standbys), len(rt.groups)
	ins := make([]*instance, 0, len(rt.daemons))
	for _, in := range rt.daemons {
		ins = append(ins, in)
	}
	rt.mu.RUnlock()
	for _, in := range ins {
		in.mu.Lock()
		if in.phase != 0 {
			st.Migrating++
		}
		in.mu.Unlock()
	}
	c := &rt.counters
	st.Spawned, st.MigratedOut = c.spawned.Load(), c.migratedOut.Load()
	st.MigratedIn, st.ArrivalsDropped = c.migratedIn.Load(), c.arrivalsDropped.Load()
	st.Promoted, st.Failovers, st.Respawns = c.promoted.Load(), c.failovers.Load(), c.respawns.Load()
	for p := range st.MigrationFailures {
		st.MigrationFailures[p] = c.migrationFailures[p].Load()
	}
	return st
}
