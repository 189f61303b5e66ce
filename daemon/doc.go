// Package daemon runs stateful daemons on the nodes of a mesh: event
// processors with their own identity, placed on a node whose
// capabilities meet their requirements, reached by id from any node,
// snapshotted, moved live between nodes while events keep flowing, and
// run in groups (replicas, forks, an active with standbys).
//
// Every node that takes part runs a Runtime on its mesh and rpc server.
// A runtime registers the kinds it can run (Register: a name, the
// capability filter a node must match, a factory), announces them and
// its load in the node's capabilities, and places daemons with package
// daemon/placement, as tasks do:
//
//	rt, _ := daemon.NewRuntime(m, srv, daemon.Config{})
//	rt.Register(daemon.Kind{Name: "counter", New: newCounter})
//	loc, _ := rt.Spawn(ctx, "counter", daemon.SpawnOptions{Where: filter})
//	r, _ := rt.Deliver(ctx, loc.Daemon, event)     // from any node
//	rep, _ := rt.Migrate(ctx, loc.Daemon, target)  // live
//
// A daemon applies one event at a time, in one order, numbered by
// sequence numbers that follow it wherever it goes; a sender's events
// keep its order; a resend is recognised and not applied twice. A daemon
// with state implements Stateful; its Handle must be deterministic,
// because migrations and standbys rebuild its state by replaying events.
// docs/DAEMONS.md describes the model, the guarantees, the migration's
// phases and what each failure leaves behind, groups, and the security of
// the sealed daemon key.
//
// The runtime talks to other runtimes over two rpc services,
// HostService and ImageService, registered in one place (serve.go).
//
// Goroutines: one per hosted daemon, which applies its events; one per
// daemon this node is sending to while a batch of its events is on the
// way; one that re-announces the load and expires silent transfers; one
// per group this node coordinates, watching its members' nodes. Inbound
// calls run on the rpc server's goroutines. Close stops them all.
package daemon
