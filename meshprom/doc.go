// Package meshprom exports a netmesh node's counters as Prometheus
// metrics: New returns a prometheus.Collector for a *mesh.Mesh (sessions,
// peers, drops, handshakes, relaying, capability discovery, channels,
// membership, and NAT traversal in builds with the nat tag), NewRPC one
// for package rpc's server and client, NewTasks one for package
// daemon/task's worker and submitter, and NewDaemons one for a package
// daemon runtime. netnode serves the same metrics; docs/OPERATIONS.md
// lists every one, with its type and labels.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(meshprom.New(m, meshprom.Options{}), meshprom.NewRPC(srv, client),
//		meshprom.NewTasks(worker, submitter), meshprom.NewDaemons(rt))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The collectors read fresh snapshots (Mesh.Stats and the engines' Stats)
// at every scrape and keep no state of their own. Counters count from the
// node's start; a counter by reason reports every reason, zeros included,
// so that rate() works from the first scrape.
//
// Package mesh does not import this package: a program that does not
// import meshprom does not link Prometheus. A program that does links the
// task and daemon layers too (for NewTasks and NewDaemons), with the
// task layer's record store and JSON Schema validator.
package meshprom
