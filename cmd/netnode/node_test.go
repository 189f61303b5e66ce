package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/rpc"
)

// startMesh starts a mesh on loopback, closed in t.Cleanup.
func startMesh(t *testing.T, cfg mesh.Config) *mesh.Mesh {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	m, err := mesh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMetrics checks the collectors against a pedantic registry and the
// names they serve. A serves the built-in rpc services and publishes a
// channel; A and B call each other.
func TestMetrics(t *testing.T) {
	a := startMesh(t, mesh.Config{})
	b := startMesh(t, mesh.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := a.Connect(ctx, b.Addr(), mesh.Pin{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Ping(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := a.RegisterChannel("jobs", channel.Config{}); err != nil {
		t.Fatal(err)
	}
	na := &node{m: a, rc: &runConfig{channels: []namedChannel{{name: "jobs"}}}, started: time.Now(), rpc: rpc.NewClient(a, rpc.ClientOptions{})}
	if na.srv, err = na.serveBuiltin(slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	defer na.srv.Close()
	if _, err := rpc.NewClient(b, rpc.ClientOptions{}).Call(ctx, a.ID(), serviceInfo, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := na.rpc.Call(ctx, b.ID(), serviceEcho, nil); err == nil {
		t.Fatal("B serves no rpc, yet A's call succeeded")
	}

	body := scrapeNode(t, na)
	peer := b.ID().String()
	want := []string{
		`netmesh_node_info{io_mode="`,
		`netmesh_peer_up{peer="` + peer + `"} 1`,
		`netmesh_peer_relayed{peer="` + peer + `"} 0`,
		`netmesh_peer_rtt_seconds{peer="` + peer + `"}`,
		`netmesh_peer_last_seen_timestamp_seconds{peer="` + peer + `"}`,
		`netmesh_peer_tx_bytes_total{peer="` + peer + `"}`,
		`netmesh_peer_rx_packets_total{peer="` + peer + `"}`,
		`netmesh_peer_handshakes_total{peer="` + peer + `"} 1`,
		`netmesh_drops_total{reason="bad_tag"} 0`,
		"netmesh_handshakes_initiated_total 1",
		"netmesh_peers_up 1",
		"netmesh_capability_nodes_known 1", // B announces nothing
		`netmesh_capability_nodes{status="online"} 1`,
		`netmesh_capability_nodes{status="offline"} 0`,
		`netmesh_capability_rejected_total{reason="bad_signature"} 0`,
		"netmesh_capability_broadcasts_total ",
		`netmesh_channel_subscribers{channel="jobs"} 0`,
		`netmesh_channel_subscribes_rejected_total{reason="token"} 0`,
		"netmesh_channel_published_total 0",
		"netmesh_channel_dropped_total 0",
		"netmesh_rpc_server_calls_total 1",
		"netmesh_rpc_server_active 0",
		"netmesh_rpc_client_calls_total 1",
		"netmesh_rpc_client_failures_total 1",
		"netmesh_rpc_client_outstanding 0",
		"go_goroutines",
		"process_cpu_seconds_total",
	}
	if natCompiled {
		want = append(want, `netmesh_nat_info{type="`, "netmesh_nat_punches_attempted_total 0", "netmesh_nat_relay_fallbacks_total 0")
	} else if strings.Contains(body, "netmesh_nat_") {
		t.Errorf("NAT metrics in a netnode built without -tags nat")
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("metrics lack %q", w)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
