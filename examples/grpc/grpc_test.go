package grpc_test

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/meshnet"
)

// grpcProto is the mesh protocol the gRPC server listens on.
var grpcProto = mesh.MustProtocol("example/grpc")

// setupTimeout bounds a test's start-up, handshakes and calls.
const setupTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	// gRPC logs to stderr by default; the tests judge by results.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
	os.Exit(m.Run())
}

// TestGRPC serves the standard gRPC health service on one node and calls
// it from another, on a direct and on a relayed path: a unary call, which
// the server sees coming from the caller's NodeID, and a server stream
// that follows a status change.
func TestGRPC(t *testing.T) {
	for _, path := range []struct {
		name string
		pair func(*testing.T) (*mesh.Mesh, *mesh.Mesh)
	}{{"direct", directPair}, {"relayed", relayedPair}} {
		t.Run(path.name, func(t *testing.T) {
			client, server := path.pair(t)
			ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
			defer cancel()

			callers := make(chan string, 1)
			srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if p, ok := peer.FromContext(ctx); ok {
					callers <- p.Addr.String()
				}
				return h(ctx, req)
			}))
			hs := health.NewServer()
			healthpb.RegisterHealthServer(srv, hs)
			l, err := meshnet.Listen(server, grpcProto)
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(l)
			defer srv.Stop()

			d := &meshnet.Dialer{Mesh: client, Protocol: grpcProto}
			cc, err := grpc.NewClient("passthrough:///"+server.ID().String(),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					return d.DialContext(ctx, meshnet.Network, addr)
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			hc := healthpb.NewHealthClient(cc)

			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("status %v, want SERVING", resp.Status)
			}
			if got := <-callers; got != client.ID().String() {
				t.Fatalf("the server saw the call come from %q, want %q", got, client.ID())
			}

			watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []healthpb.HealthCheckResponse_ServingStatus{
				healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING,
			} {
				resp, err := watch.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if resp.Status != want {
					t.Fatalf("watched status %v, want %v", resp.Status, want)
				}
				hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			}
		})
	}
}

// startNode starts a mesh on a random port of 127.0.0.1, closed when the
// test ends.
func startNode(t *testing.T, cfg mesh.Config) *mesh.Mesh {
	t.Helper()
	if cfg.Conn == nil {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	m, err := mesh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// directPair starts two nodes with a direct session, up on both sides.
func directPair(t *testing.T) (a, b *mesh.Mesh) {
	a, b = startNode(t, mesh.Config{}), startNode(t, mesh.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := a.Connect(ctx, b.Addr(), mesh.Pin{Key: b.Identity().PublicKey()}); err != nil {
		t.Fatal(err)
	}
	waitUp(t, b, a.ID())
	return a, b
}

// relayedPair starts a — r — b where a and b cannot reach each other,
// with a session between them relayed by r and up on both sides.
func relayedPair(t *testing.T) (a, b *mesh.Mesh) {
	ca := meshtest.Listen(t, meshtest.Options{Seed: 1})
	cb := meshtest.Listen(t, meshtest.Options{Seed: 2})
	r := startNode(t, mesh.Config{})
	relay := []mesh.Relay{{Addr: r.Addr(), Pin: mesh.Pin{Key: r.Identity().PublicKey()}}}
	a = startNode(t, mesh.Config{Conn: ca, Relays: relay})
	b = startNode(t, mesh.Config{Conn: cb, Relays: relay})
	ca.Block(b.Addr())
	cb.Block(a.Addr())
	waitUp(t, a, r.ID())
	waitUp(t, b, r.ID())
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	p, err := a.ConnectNode(ctx, b.ID(), b.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if path := p.Stats().Path; path != "relayed" {
		t.Fatalf("a reaches b on a %s path, want relayed", path)
	}
	waitUp(t, b, a.ID())
	return a, b
}

// waitUp waits until m has a session with id.
func waitUp(t *testing.T, m *mesh.Mesh, id identity.NodeID) {
	t.Helper()
	deadline := time.Now().Add(setupTimeout)
	for p := m.Peer(id); p == nil || !p.IsUp(); p = m.Peer(id) {
		if time.Now().After(deadline) {
			t.Fatalf("no session with %s", id.Short())
		}
		time.Sleep(time.Millisecond)
	}
}
