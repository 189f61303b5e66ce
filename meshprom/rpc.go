package meshprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netmesh/netmesh/rpc"
)

// NewRPC returns a collector of an rpc server's and an rpc client's
// counters. Either may be nil: its metrics are then absent.
func NewRPC(srv *rpc.Server, cl *rpc.Client) prometheus.Collector {
	return newRPCCollector(srv, cl)
}

// rpcCollector exports the counters of an rpc server and client.
type rpcCollector struct {
	srv                         *rpc.Server
	cl                          *rpc.Client
	serverActive, clientPending *prometheus.Desc
	server                      []counterField[rpc.ServerStats]
	client                      []counterField[rpc.ClientStats]
}

func newRPCCollector(srv *rpc.Server, cl *rpc.Client) *rpcCollector {
	type SS = rpc.ServerStats
	type CS = rpc.ClientStats
	return &rpcCollector{
		srv:           srv,
		cl:            cl,
		serverActive:  newDesc("rpc_server_active", "RPC handlers running now."),
		clientPending: newDesc("rpc_client_outstanding", "RPC calls this node has in flight."),
		server: []counterField[SS]{
			counter("rpc_server_calls_total", "RPC requests that reached a handler.", func(s *SS) uint64 { return s.Calls }),
			counter("rpc_server_refused_total", "RPC requests answered without running a handler: unknown service, malformed, too large, overloaded or closed.", func(s *SS) uint64 { return s.Refused }),
			counter("rpc_server_errors_total", "RPC handler runs answered with an error status.", func(s *SS) uint64 { return s.Errors }),
			counter("rpc_server_cancelled_total", "RPC handler runs the caller cancelled before the reply.", func(s *SS) uint64 { return s.Cancelled }),
			counter("rpc_server_late_replies_total", "RPC handler runs that ended after the caller's deadline; their reply was dropped.", func(s *SS) uint64 { return s.LateReplies }),
			counter("rpc_server_panics_total", "RPC handlers that panicked.", func(s *SS) uint64 { return s.Panics }),
		},
		client: []counterField[CS]{
			counter("rpc_client_calls_total", "RPC calls this node started.", func(s *CS) uint64 { return s.Calls }),
			counter("rpc_client_failures_total", "RPC calls this node started that ended with an error.", func(s *CS) uint64 { return s.Failures }),
			counter("rpc_client_timeouts_total", "RPC calls this node started that passed their deadline.", func(s *CS) uint64 { return s.Timeouts }),
			counter("rpc_client_cancelled_total", "RPC calls this node started that were cancelled.", func(s *CS) uint64 { return s.Cancelled }),
		},
	}
}

// Describe implements prometheus.Collector.
func (c *rpcCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.serverActive
	ch <- c.clientPending
	describeCounters(ch, c.server, nil)
	describeCounters(ch, c.client, nil)
}

// Collect implements prometheus.Collector.
func (c *rpcCollector) Collect(ch chan<- prometheus.Metric) {
	if c.srv != nil {
		st := c.srv.Stats()
		gauge(ch, c.serverActive, float64(st.Active))
		collectCounters(ch, &st, c.server, nil, nil)
	}
	if c.cl != nil {
		st := c.cl.Stats()
		gauge(ch, c.clientPending, float64(st.Outstanding))
		collectCounters(ch, &st, c.client, nil, nil)
	}
}
