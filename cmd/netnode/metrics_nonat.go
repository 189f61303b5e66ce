//go:build !nat

package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netmesh/netmesh/mesh"
)

// natCollectors returns no collector: this netnode is built without NAT
// traversal, so there are no NAT metrics.
func natCollectors(*mesh.Mesh) []prometheus.Collector { return nil }
