package meshprom_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/daemon"
	counterdaemon "github.com/netmesh/netmesh/daemon/counter"
	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/meshprom"
	"github.com/netmesh/netmesh/rpc"
)

// setupTimeout bounds the start-up, handshakes and calls of a test.
const setupTimeout = 20 * time.Second

// rig is two connected nodes; a publishes the channel "jobs", serves the
// rpc service "echo" and calls b, which does not serve it, once; b calls
// a once. Both run a task worker with no skills; a's submitter submits a
// task to b, which refuses it. a runs a daemon runtime that hosts
// nothing yet.
type rig struct {
	a, b      *mesh.Mesh
	server    *rpc.Server
	client    *rpc.Client
	worker    *task.Worker
	submitter *task.Submitter
	daemons   *daemon.Runtime
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{a: startNode(t), b: startNode(t)}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	p, err := r.a.Connect(ctx, r.b.Addr(), mesh.Pin{Key: r.b.Identity().PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.a.Ping(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := r.a.RegisterChannel("jobs", channel.Config{}); err != nil {
		t.Fatal(err)
	}
	if r.server, err = rpc.NewServer(r.a, rpc.ServerOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.server.Close() })
	if err := r.server.Handle("echo", func(_ context.Context, req []byte) ([]byte, error) { return req, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := rpc.NewClient(r.b, rpc.ClientOptions{}).Call(ctx, r.a.ID(), "echo", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	r.client = rpc.NewClient(r.a, rpc.ClientOptions{})
	if _, err := r.client.Call(ctx, r.b.ID(), "echo", nil); err == nil {
		t.Fatal("b serves no echo, yet a's call succeeded")
	}
	r.worker = startWorker(t, r.a, r.server)
	bServer, err := rpc.NewServer(r.b, rpc.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bServer.Close() })
	startWorker(t, r.b, bServer)
	if r.submitter, err = task.NewSubmitter(r.a, task.SubmitterConfig{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.submitter.Close() })
	_, err = r.submitter.Submit(ctx, task.Request{Skill: "nosuch", Node: r.b.ID()})
	if te := (*task.Error)(nil); !errors.As(err, &te) || te.Code != task.CodeUnknownSkill {
		t.Fatalf("a task for a skill b lacks: %v, want UNKNOWN_SKILL", err)
	}
	if r.daemons, err = daemon.NewRuntime(r.a, r.server, daemon.Config{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.daemons.Close() })
	if err := r.daemons.Register(counterdaemon.Kind()); err != nil {
		t.Fatal(err)
	}
	return r
}

// startWorker starts a task worker with no skills on m, shut down when
// the test ends.
func startWorker(t *testing.T, m *mesh.Mesh, srv *rpc.Server) *task.Worker {
	t.Helper()
	w, err := task.NewWorker(m, srv, task.WorkerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		w.Shutdown(ctx)
	})
	return w
}

// registry returns a pedantic registry with a's collectors.
func (r *rig) registry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(
		meshprom.New(r.a, meshprom.Options{Channels: []string{"jobs"}}),
		meshprom.NewRPC(r.server, r.client),
		meshprom.NewTasks(r.worker, r.submitter),
		meshprom.NewDaemons(r.daemons),
	)
	return reg
}

// TestValues checks metrics whose values the rig fixes.
func TestValues(t *testing.T) {
	r := newRig(t)
	peer := r.b.ID().String()
	want := fmt.Sprintf(`
# HELP netmesh_peers_up Peers with an established session.
# TYPE netmesh_peers_up gauge
netmesh_peers_up 1
# HELP netmesh_peer_up 1 if the peer has an established session, else 0.
# TYPE netmesh_peer_up gauge
netmesh_peer_up{peer=%[1]q} 1
# HELP netmesh_peer_relayed 1 if packets to the peer go through a relay, else 0.
# TYPE netmesh_peer_relayed gauge
netmesh_peer_relayed{peer=%[1]q} 0
# HELP netmesh_peer_handshakes_total Sessions established with the peer.
# TYPE netmesh_peer_handshakes_total counter
netmesh_peer_handshakes_total{peer=%[1]q} 1
# HELP netmesh_handshakes_initiated_total Handshake initiations this node sent.
# TYPE netmesh_handshakes_initiated_total counter
netmesh_handshakes_initiated_total 1
# HELP netmesh_channel_subscribers Subscribers of a channel this node publishes.
# TYPE netmesh_channel_subscribers gauge
netmesh_channel_subscribers{channel="jobs"} 0
# HELP netmesh_rpc_server_calls_total RPC requests that reached a handler.
# TYPE netmesh_rpc_server_calls_total counter
netmesh_rpc_server_calls_total 1
# HELP netmesh_rpc_client_calls_total RPC calls this node started.
# TYPE netmesh_rpc_client_calls_total counter
netmesh_rpc_client_calls_total 1
# HELP netmesh_rpc_client_failures_total RPC calls this node started that ended with an error.
# TYPE netmesh_rpc_client_failures_total counter
netmesh_rpc_client_failures_total 1
# HELP netmesh_rpc_client_outstanding RPC calls this node has in flight.
# TYPE netmesh_rpc_client_outstanding gauge
netmesh_rpc_client_outstanding 0
# HELP netmesh_task_worker_max_running Tasks this worker runs at most at once (MaxRunning).
# TYPE netmesh_task_worker_max_running gauge
netmesh_task_worker_max_running %[2]d
# HELP netmesh_task_submitter_refusals_total Refusals workers answered this submitter's submits with, by code.
# TYPE netmesh_task_submitter_refusals_total counter
%[3]s
`, peer, task.DefaultMaxRunning, refusals("UNKNOWN_SKILL"))
	names := regexp.MustCompile(`(?m)^# TYPE (\S+)`).FindAllStringSubmatch(want, -1)
	var metrics []string
	for _, m := range names {
		metrics = append(metrics, m[1])
	}
	reg := r.registry(t)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), metrics...); err != nil {
		t.Fatal(err)
	}
	// A daemon spawned here: hosted and counted; every phase a migration
	// can fail in is there, zeros included.
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := r.daemons.Spawn(ctx, counterdaemon.Name, daemon.SpawnOptions{Node: r.a.ID()}); err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf(`
# HELP netmesh_daemon_hosted Daemons this node hosts, whatever they are doing.
# TYPE netmesh_daemon_hosted gauge
netmesh_daemon_hosted 1
# HELP netmesh_daemon_max Daemons this node hosts at most (MaxDaemons).
# TYPE netmesh_daemon_max gauge
netmesh_daemon_max %d
# HELP netmesh_daemon_spawned_total Daemons started here by a spawn: placed, from a snapshot, or a fork's child.
# TYPE netmesh_daemon_spawned_total counter
netmesh_daemon_spawned_total 1
# HELP netmesh_daemon_migration_failures_total Migrations from this node that did not commit (the daemon stayed), by the phase they failed in.
# TYPE netmesh_daemon_migration_failures_total counter
netmesh_daemon_migration_failures_total{phase="cutover"} 0
netmesh_daemon_migration_failures_total{phase="replay"} 0
netmesh_daemon_migration_failures_total{phase="restore"} 0
netmesh_daemon_migration_failures_total{phase="snapshot"} 0
netmesh_daemon_migration_failures_total{phase="transfer"} 0
`, daemon.DefaultMaxDaemons)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "netmesh_daemon_hosted", "netmesh_daemon_max",
		"netmesh_daemon_spawned_total", "netmesh_daemon_migration_failures_total"); err != nil {
		t.Fatal(err)
	}
	// Every drop reason is there from the start, zeros included.
	if n := testutil.CollectAndCount(meshprom.New(r.a, meshprom.Options{}), "netmesh_drops_total"); n < int(mesh.DropStreamBacklog)+1 {
		t.Fatalf("%d drop reasons exported, want every one (%d)", n, mesh.DropStreamBacklog+1)
	}
}

// refusals is the exposition of netmesh_task_submitter_refusals_total
// with one refusal of code and none of the others.
func refusals(code string) string {
	codes := []string{"other", "CONTRACT_VIOLATION", "DEPENDENCY_MISSING", "RESOURCE_EXHAUSTED", "LIMIT_EXCEEDED",
		"TIMEOUT", "LATE_RESULT", "CANCELLED", "LOST", "HANDLER_ERROR", "UNKNOWN_SKILL", "NO_WORKER", "PROVENANCE", "NOT_FOUND"}
	slices.Sort(codes) // the exposition's order
	var b strings.Builder
	for _, c := range codes {
		n := 0
		if c == code {
			n = 1
		}
		fmt.Fprintf(&b, "netmesh_task_submitter_refusals_total{code=%q} %d\n", c, n)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// TestMetricsMatchDocs checks that the collectors export exactly the
// metrics docs/OPERATIONS.md lists, with the documented type and labels,
// and that a pedantic registry accepts them.
func TestMetricsMatchDocs(t *testing.T) {
	r := newRig(t)
	families, err := r.registry(t).Gather()
	if err != nil {
		t.Fatalf("pedantic gather: %v", err)
	}
	got := map[string]string{}
	for _, f := range families {
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		slices.Sort(labels)
		got[f.GetName()] = strings.ToLower(f.GetType().String()) + " " + strings.Join(labels, ",")
	}
	nat := r.a.TraversalStats().Enabled
	want := documentedMetrics(t)
	for name, sig := range want {
		if strings.HasPrefix(name, "netmesh_nat_") && !nat {
			if _, ok := got[name]; ok {
				t.Errorf("%s exported without NAT traversal compiled in", name)
			}
			continue
		}
		if got[name] != sig {
			t.Errorf("%s: exported as %q, documented as %q", name, got[name], sig)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is exported but not in docs/OPERATIONS.md", name)
		}
	}
}

// documentedMetrics reads the metric tables of docs/OPERATIONS.md: name
// to "type label,label".
func documentedMetrics(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `(netmesh_[a-z_]+)` \\| (gauge|counter) \\| ([^|]*)\\|")
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var labels []string
		for l := range strings.SplitSeq(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		slices.Sort(labels)
		out[m[1]] = m[2] + " " + strings.Join(labels, ",")
	}
	if len(out) < 50 {
		t.Fatalf("found only %d metrics in docs/OPERATIONS.md; did its tables change shape?", len(out))
	}
	return out
}

// TestPrometheusStaysOut checks that the library's core packages do not
// link Prometheus: only a program that imports meshprom does.
func TestPrometheusStaysOut(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list dependencies with")
	}
	pkgs := []string{"mesh", "rpc", "capability", "channel", "identity", "meshnet", "dialaddr", "bootstrap", "meshmdns", "daemon", "daemon/task"}
	for _, tags := range []string{"", "nat,portmap"} {
		args := []string{"list", "-deps", "-tags", tags}
		for _, p := range pkgs {
			args = append(args, "github.com/netmesh/netmesh/"+p)
		}
		out, err := exec.Command(gobin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		for dep := range strings.Lines(string(out)) {
			if strings.Contains(dep, "prometheus") {
				t.Errorf("with tags %q, %v depend on %s", tags, pkgs, strings.TrimSpace(dep))
			}
		}
	}
}

// startNode starts a mesh on a random port of 127.0.0.1 (its config as
// mod changes it), closed when the test ends.
func startNode(t *testing.T, mod ...func(*mesh.Config)) *mesh.Mesh {
	t.Helper()
	cfg := mesh.Config{ListenAddr: "127.0.0.1:0"}
	for _, f := range mod {
		f(&cfg)
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

// TestNamesAndLeft checks the names of the node and its peers, and a
// node that left, in the metrics.
func TestNamesAndLeft(t *testing.T) {
	a, b := startNode(t, named("alpha")), startNode(t, named("beta"))
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := a.Connect(ctx, b.Addr(), mesh.Pin{Key: b.Identity().PublicKey()}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*mesh.Mesh{a, b} {
		if err := m.AnnounceCapabilities(capability.Set{}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(meshprom.New(a, meshprom.Options{}))
	named := func() error {
		return testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP netmesh_peer_info Always 1; the label is the name the peer announces, or empty. A name is a label, not an identity.
# TYPE netmesh_peer_info gauge
netmesh_peer_info{name="beta",peer=%q} 1
`, b.ID())), "netmesh_peer_info")
	}
	for named() != nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if err := named(); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(meshprom.New(a, meshprom.Options{}), "netmesh_node_info"); n != 1 {
		t.Fatalf("%d node_info series", n)
	}
	info := fmt.Sprintf(`
# HELP netmesh_node_info Always 1; labels name the node (its NodeID, and the name it announces or empty) and its socket batching mode.
# TYPE netmesh_node_info gauge
netmesh_node_info{io_mode=%q,name="alpha",node_id=%q} 1
`, a.Stats().IOMode, a.ID())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(info), "netmesh_node_info"); err != nil {
		t.Fatal(err)
	}
	b.WithdrawCapabilities()
	left := func() float64 { return gaugeValue(t, reg, "netmesh_capability_nodes", "status", "left") }
	for left() != 1 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if left() != 1 {
		t.Fatal("the node that left is not counted")
	}
}

// named sets the name a node announces.
func named(name string) func(*mesh.Config) {
	return func(c *mesh.Config) { c.Capabilities.Name = name }
}

// gaugeValue returns the value of the sample of gauge name whose label
// has value.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// TestMembershipValues checks the membership metrics of a closed node:
// a member that connects to the node holding the authority key, so that
// the member checked one certificate signature, holds no revocation, and
// its certificate ends when the metric says.
func TestMembershipValues(t *testing.T) {
	ca, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	issuer := startNode(t, func(c *mesh.Config) { c.Membership.Authority = ca })
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.IssueCertificate(ca, identity.CertificateTemplate{
		NodeKey: id.PublicKey(), Name: "member", NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	member := startNode(t, func(c *mesh.Config) {
		c.Identity = id
		c.Membership.Authorities = []ed25519.PublicKey{ca.PublicKey()}
		c.Membership.Certificate = cert
	})
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := member.Connect(ctx, issuer.Addr(), mesh.Pin{Key: issuer.Identity().PublicKey()}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`
# HELP netmesh_membership_closed 1 if the node admits members only (a closed mesh), else 0.
# TYPE netmesh_membership_closed gauge
netmesh_membership_closed 1
# HELP netmesh_membership_revocations Membership revocations the node holds.
# TYPE netmesh_membership_revocations gauge
netmesh_membership_revocations 0
# HELP netmesh_membership_certificate_expiry_seconds When this node's membership certificate ends (Unix seconds); 0 without one.
# TYPE netmesh_membership_certificate_expiry_seconds gauge
netmesh_membership_certificate_expiry_seconds %d
# HELP netmesh_membership_signatures_checked_total Peer certificate signatures checked.
# TYPE netmesh_membership_signatures_checked_total counter
netmesh_membership_signatures_checked_total 1
`, cert.NotAfter.Unix())
	err = testutil.CollectAndCompare(meshprom.New(member, meshprom.Options{}), strings.NewReader(want),
		"netmesh_membership_closed", "netmesh_membership_revocations",
		"netmesh_membership_certificate_expiry_seconds", "netmesh_membership_signatures_checked_total")
	if err != nil {
		t.Fatal(err)
	}
}
