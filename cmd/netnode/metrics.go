package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/netmesh/netmesh/meshprom"
)

// metricsHandler serves the Prometheus metrics of the node: its mesh,
// capability, channel, rpc, task, daemon and NAT traversal counters (package
// meshprom), plus the Go runtime and process collectors.
// docs/OPERATIONS.md lists every metric.
func metricsHandler(n *node) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		meshprom.New(n.m, meshprom.Options{Channels: n.rc.channelNames()}),
		meshprom.NewRPC(n.srv, n.rpc),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if n.tasks != nil {
		reg.MustRegister(meshprom.NewTasks(n.tasks.w, n.tasks.s))
	}
	if n.daemons != nil {
		reg.MustRegister(meshprom.NewDaemons(n.daemons))
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
