package daemon_test

import (
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon"
)

// TestForgedMessagesAreRefused plays a peer of the mesh that sends the
// runtime's messages out of turn: it cannot feed a transfer or a standby
// it did not open, spawn in another's name, announce a huge image, or
// hold more than its share of transfers, which expire when it goes
// silent.
func TestForgedMessagesAreRefused(t *testing.T) {
	ns := newMesh(t, 4, daemon.Config{MigrationTimeout: 2 * time.Second, LoadInterval: 50 * time.Millisecond}, func(i int) []string {
		if i == 1 || i == 2 {
			return []string{"worker"}
		}
		return nil
	})
	owner, host, attacker := ns[0], ns[1], ns[3]
	g, err := owner.rt.NewStandbyGroup(ctxT(t), "seqlog", daemon.StandbyOptions{Standbys: 1, Active: host.id(), Where: onWorkers})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	standby := g.State(ctxT(t)).Members[1].Node
	if standby != ns[2].id() {
		t.Fatalf("standby on %s", standby.Short())
	}

	// Events shipped to the standby by a node that is not its active.
	err = daemon.CallHost(ctxT(t), attacker.rt, standby, daemon.ForgedStandby(g.ID(), 1))
	code(t, err, daemon.CodeNotFound)
	// A forward for a transfer the attacker did not open.
	var xfer daemon.ID
	err = daemon.CallHost(ctxT(t), attacker.rt, host.id(), daemon.ForgedForward(xfer))
	code(t, err, daemon.CodeNotFound)
	// A spawn in another node's name.
	err = daemon.CallHost(ctxT(t), attacker.rt, host.id(), daemon.ForgedSpawn("seqlog", owner.id(), 0))
	code(t, err, daemon.CodeNotOwner)
	// An image larger than any state.
	err = daemon.CallHost(ctxT(t), attacker.rt, host.id(), daemon.ForgedSpawn("seqlog", attacker.id(), 1<<40))
	code(t, err, daemon.CodeLimitExceeded)
	// Transfers opened and left: four are held, the fifth refused.
	base := host.rt.Load().Running
	for i := range 5 {
		err := daemon.CallHost(ctxT(t), attacker.rt, host.id(), daemon.ForgedSpawn("seqlog", attacker.id(), 100))
		if i < 4 && err != nil {
			t.Fatalf("transfer %d: %v", i, err)
		}
		if i == 4 {
			code(t, err, daemon.CodeResourceExhausted)
		}
	}
	if got := host.rt.Load().Running; got != base+4 {
		t.Fatalf("load %d, want %d", got, base+4)
	}
	eventually(t, 10*time.Second, "the silent transfers expired", func() bool { return host.rt.Load().Running == base })
	// The group still works.
	if _, err := attacker.rt.Deliver(ctxT(t), g.ID(), []byte("fine")); err != nil {
		t.Fatal(err)
	}
}
