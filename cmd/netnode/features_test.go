package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/internal/netlab"
)

// withoutLayerTags drops the tags the node's layers add to its set: the
// rpc server's rpc: tags and the daemon runtime's daemon: tags.
func withoutLayerTags(tags []string) []string {
	return slices.DeleteFunc(slices.Clone(tags), func(t string) bool {
		return strings.HasPrefix(t, "rpc:") || strings.HasPrefix(t, "daemon:")
	})
}

// checkDiscovery drives find, nodes, status and nat on the end-to-end
// mesh of TestEndToEnd.
func checkDiscovery(t *testing.T, a, b, c *proc, ka, kb, kc keyInfo) {
	t.Helper()
	// C learns B's GPU through gossip.
	var found findResult
	waitFor(t, 10*time.Second, "C to find B's GPU", func() bool {
		r := netnode(t, "find", "gpu && gpu_mem_gb>=24", "--json", "--control", c.control)
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &found) == nil && len(found.Nodes) == 1
	})
	nb := found.Nodes[0]
	if nb.NodeID != kb.NodeID || nb.PublicKey != kb.PublicKey || nb.Self || nb.Status != "online" ||
		!slices.Equal(withoutLayerTags(nb.Tags), []string{"gpu", "rack:1"}) || nb.Metadata["gpu_mem_gb"] != "48" ||
		nb.Subnet != "3.1.0.0" || nb.Hops < 1 || nb.Via == "" {
		t.Errorf("C's find of B: %+v", nb)
	}
	if found.NodeID != kc.NodeID || !strings.Contains(found.Filter, "gpu_mem_gb>=24") {
		t.Errorf("find result: %+v", found)
	}
	out := mustRun(t, "find", "gpu", "--control", c.control)
	for _, want := range []string{"NODE ID", "HOPS", "TAGS", kb.NodeID, "gpu_mem_gb=48", "gpu,rack:1"} {
		if !strings.Contains(out, want) {
			t.Errorf("find table lacks %q:\n%s", want, out)
		}
	}
	oneLineError(t, netnode(t, "find", "gpu", "&&", "tpu", "--control", c.control), 1, "no node matches")
	oneLineError(t, netnode(t, "find", "gpu &&", "--control", c.control), 2, "filter")
	oneLineError(t, netnode(t, "find", "--control", c.control), 2, "requires at least 1 arg")

	// A announces its own telemetry; its index has it at the first tick.
	waitFor(t, 10*time.Second, "A's telemetry", func() bool {
		r := netnode(t, "find", "cpu_load>=0 && mem_used_pct>=0", "--json", "--control", a.control)
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &found) == nil && len(found.Nodes) == 1
	})
	if na := found.Nodes[0]; na.NodeID != ka.NodeID || !na.Self || na.Hops != 0 || na.Metadata["role"] != "relay" ||
		na.Metadata["gpu_count"] == "" || !slices.Contains(na.Tags, "subnet:3.0.0.0") {
		t.Errorf("A's own telemetry: %+v", na)
	}

	// nodes: the whole index with its health.
	var all nodesResult
	mustJSON(t, &all, "nodes", "--json", "--control", c.control)
	ids := make([]string, 0, len(all.Nodes))
	for _, n := range all.Nodes {
		ids = append(ids, n.NodeID)
	}
	want := []string{ka.NodeID, kb.NodeID, kc.NodeID}
	slices.Sort(want)
	if all.Health.Known != 3 || all.Health.Online+all.Health.Degraded != 3 || !slices.Equal(ids, want) {
		t.Errorf("nodes on C: health %+v, nodes %v, want %v", all.Health, ids, want)
	}
	if out := mustRun(t, "nodes", "--control", c.control); !strings.Contains(out, "3 nodes known") || !strings.Contains(out, "SUBNET") {
		t.Errorf("nodes table:\n%s", out)
	}

	// status shows the subnet and the channels.
	if st := a.status(t); st.Subnet != "3.0.0.0" || len(st.Channels) != 0 || st.MDNS || st.NATCompiled {
		t.Errorf("status of A: %+v", st)
	}
	if st := b.status(t); st.Subnet != "3.1.0.0" || !slices.Equal(st.Channels, []string{"jobs", "secret", "gpu-only", "eu/local"}) {
		t.Errorf("status of B: %+v", st)
	}

	// nat without the nat build tag.
	if r := netnode(t, "nat", "--control", c.control); r.code != 0 || r.stdout != natNotCompiled+"\n" {
		t.Errorf("nat: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if out := mustRun(t, "nat", "--json", "--control", c.control); out != `{"enabled":false}`+"\n" {
		t.Errorf("nat --json: %q", out)
	}
}

// checkChannels drives pub, sub and token on the end-to-end mesh: B
// publishes, C (through the relay A) and A subscribe.
func checkChannels(t *testing.T, a, b, c *proc, kb, kc keyInfo, bKey string) {
	t.Helper()
	// C subscribes to B's open channel by prefix; B publishes two messages.
	sub := startSub(t, "sub", kb.NodeID[:6], "jobs", "-n", "2", "--control", c.control)
	publishUntilHeard(t, b, "jobs", "first")
	var rep publishResult
	mustJSON(t, &rep, "pub", "jobs", "second", "--json", "--control", b.control)
	if rep.Channel != "jobs" || rep.Attempted != 1 || rep.Delivered != 1 || len(rep.Failures) != 0 || rep.Seq < 2 {
		t.Errorf("second publish: %+v", rep)
	}
	if r := sub.wait(t); r.code != 0 || r.stdout != "first\nsecond\n" {
		t.Errorf("sub: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// A token channel: refused without a token, admitted with one B issued
	// for C's key; --json prints the message and a summary.
	oneLineError(t, netnode(t, "sub", kb.NodeID, "secret", "-n", "1", "--control", c.control), 1, "token required")
	token := strings.TrimSpace(mustRun(t, "token", "issue", "-k", bKey, "--to", kc.PublicKey, "--channel", "secret", "--ttl", "10m"))
	var ti tokenInfo
	mustJSON(t, &ti, "token", "issue", "-k", bKey, "--to", kc.PublicKey, "--channel", "secret", "--perm", "subscribe", "--json")
	if ti.Subject != kc.PublicKey || ti.Issuer != kb.PublicKey || ti.Perms != "subscribe" || ti.Channel != "secret" ||
		ti.Expiry.Sub(ti.NotBefore) != time.Hour || ti.Token == "" {
		t.Errorf("token issue --json: %+v", ti)
	}
	sub = startSub(t, "sub", kb.NodeID, "secret", "--token", token, "-n", "1", "--json", "--control", c.control)
	publishUntilHeard(t, b, "secret", "top\x00secret")
	r := sub.wait(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var ev subEvent
	var sum subSummary
	if r.code != 0 || len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &ev) != nil || json.Unmarshal([]byte(lines[1]), &sum) != nil {
		t.Fatalf("sub --json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if ev.Kind != "message" || ev.Publisher != kb.NodeID || ev.Channel != "secret" || string(ev.Payload) != "top\x00secret" || ev.Text != "top\x00secret" || ev.Seq < 1 {
		t.Errorf("sub --json message: %+v", ev)
	}
	if sum.Received != 1 || sum.Dropped != 0 || sum.Publisher != kb.NodeID {
		t.Errorf("sub --json summary: %+v", sum)
	}

	// Capabilities and subnets: C has no GPU and no subnet; A, in the
	// parent of B's subnet, sees B's parent-visible channel.
	oneLineError(t, netnode(t, "sub", kb.NodeID, "gpu-only", "--control", c.control), 1, "capabilities")
	oneLineError(t, netnode(t, "sub", kb.NodeID, "eu/local", "--control", c.control), 1, "subnet")
	sub = startSub(t, "sub", kb.NodeID, "eu/local", "-n", "1", "--control", a.control)
	publishUntilHeard(t, b, "eu/local", string([]byte{0xff, 0xfe}))
	if r := sub.wait(t); r.code != 0 || r.stdout != "base64://4=\n" {
		t.Errorf("sub of a binary message: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// The largest message fits a control request line (base64 in JSON).
	big := strings.Repeat("x", maxPubInput)
	if r := netnodeCmd(t, func(cmd *exec.Cmd) { cmd.Stdin = strings.NewReader(big) }, "pub", "jobs", "-", "--control", b.control); r.code != 0 {
		t.Errorf("pub of a %d-byte message: exit %d, stderr %q", len(big), r.code, r.stderr)
	}

	// Errors.
	oneLineError(t, netnode(t, "pub", "jobs", "x", "--control", c.control), 1, `does not publish channel "jobs"`)
	oneLineError(t, netnode(t, "pub", "Bad Name", "x", "--control", b.control), 2, "channel name")
	oneLineError(t, netnode(t, "sub", kb.NodeID, "jobs", "--token", "nonsense", "--control", c.control), 2, "--token")
	oneLineError(t, netnode(t, "sub", "zzzzzz", "jobs", "--control", c.control), 1, "unknown node")
	oneLineError(t, netnode(t, "sub", kb.NodeID, "--control", c.control), 2, "accepts 2 arg(s)")
	oneLineError(t, netnode(t, "token", "issue", "-k", bKey, "--channel", "x"), 2, "--to and --channel are required")
	oneLineError(t, netnode(t, "token", "issue", "-k", bKey, "--to", kc.PublicKey, "--channel", "x", "--perm", "all"), 2, "--perm")
}

// subProc is a `netnode sub` running in the background.
type subProc struct {
	cmd            *exec.Cmd
	stdout, stderr *bytes.Buffer
	cancel         context.CancelFunc
	done           chan error
}

// startSub starts netnode with args in the background.
func startSub(t *testing.T, args ...string) *subProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	s := &subProc{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer), cancel: cancel, done: make(chan error, 1)}
	s.cmd = exec.CommandContext(ctx, netnodeBin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// wait waits for the command to exit and returns what it produced. The
// buffers are read only after Wait returned.
func (s *subProc) wait(t *testing.T) result {
	t.Helper()
	err := <-s.done
	s.done <- err // for the cleanup
	r := result{stdout: s.stdout.String(), stderr: s.stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("netnode %s: %v", strings.Join(s.cmd.Args[1:], " "), err)
	}
	return r
}

// publishUntilHeard publishes msg on the node's channel until one
// subscriber got it: a subscription started in the background may not be
// admitted yet.
func publishUntilHeard(t *testing.T, p *proc, channel, msg string) {
	t.Helper()
	waitFor(t, 10*time.Second, "a subscriber on "+channel, func() bool {
		cmd := exec.Command(netnodeBin, "pub", channel, "-", "--json", "--control", p.control)
		cmd.Stdin = strings.NewReader(msg)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pub %s: %v", channel, err)
		}
		var rep publishResult
		sc := bufio.NewScanner(bytes.NewReader(out))
		return sc.Scan() && json.Unmarshal(sc.Bytes(), &rep) == nil && rep.Delivered == 1
	})
}

// TestNATBuild builds netnode with -tags nat and runs the three-node mesh
// of TestEndToEnd with it: the nat section is accepted, nat reports the
// traversal state, and C's relayed session with B is punched direct (on
// loopback there is no NAT in the way).
func TestNATBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a second binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "netnode-nat")
	build := exec.Command("go", "build", "-tags", "nat", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags nat: %v\n%s", err, out)
	}
	ka, kb, kc := newKey(t, filepath.Join(dir, "a.key")), newKey(t, filepath.Join(dir, "b.key")), newKey(t, filepath.Join(dir, "c.key"))
	a := startNodeWith(t, bin, dir, "a", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"

[nat]
stun_servers = ["127.0.0.1:9", "stun.invalid:3478"]
`, ka.KeyFile))
	addrA := a.status(t).ListenAddrs[0]
	startNodeWith(t, bin, dir, "b", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
[[peers]]
addr = %q
`, kb.KeyFile, addrA))
	c := startNodeWith(t, bin, dir, "c", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
[[relays]]
addr = %q
[[peers]]
id = %q
`, kc.KeyFile, addrA, kb.NodeID))

	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("netnode-nat %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	if st := a.status(t); !st.NATCompiled {
		t.Errorf("status: %+v", st)
	}
	var info natInfo
	waitFor(t, 10*time.Second, "STUN queries", func() bool {
		return json.Unmarshal([]byte(run("nat", "--json", "--control", a.control)), &info) == nil && info.ReflexQueries > 0
	})
	if !info.Enabled || info.Type == "" || len(info.STUNServers) != 2 {
		t.Errorf("nat --json: %+v", info)
	}
	if out := run("nat", "--control", a.control); !strings.Contains(out, "nat type") || !strings.Contains(out, "127.0.0.1:9") {
		t.Errorf("nat:\n%s", out)
	}
	waitFor(t, 20*time.Second, "C's session with B to become direct", func() bool {
		pb := c.peers(t)[kb.NodeID]
		return pb.Up && pb.Path == "direct"
	})
	var total uint64
	for _, p := range []*proc{a, c} {
		var ni natInfo
		if err := json.Unmarshal([]byte(run("nat", "--json", "--control", p.control)), &ni); err != nil {
			t.Fatal(err)
		}
		total += ni.PunchesSucceeded + ni.Introductions
	}
	if total == 0 {
		t.Errorf("no punch or introduction counted")
	}
}

// TestMDNS runs two nodes with mdns = true and no peers in two network
// namespaces joined by a veth pair, so that multicast never reaches the
// host's interfaces, and checks that they find and connect to each other.
func TestMDNS(t *testing.T) {
	lab := netlab.New(t) // skips without root, ip or nft
	nsA, nsB := lab.NS("mdnsa"), lab.NS("mdnsb")
	lab.Link(nsA, "eth0", "10.77.0.1/24", nsB, "eth0", "10.77.0.2/24")
	// A LAN host has a default route; the mDNS library's query socket
	// joins the group on the interface that routes it.
	for _, ns := range []*netlab.NS{nsA, nsB} {
		ns.Run("ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
	}
	dir := t.TempDir()
	ka, kb := newKey(t, filepath.Join(dir, "a.key")), newKey(t, filepath.Join(dir, "b.key"))
	config := "key_file = %q\nlisten = \":7946\"\nmdns = true\nlog_level = \"debug\"\n"
	a := startNodeWith(t, netnodeBin, dir, "a", fmt.Sprintf(config, ka.KeyFile), "ip", "netns", "exec", nsA.Name)
	b := startNodeWith(t, netnodeBin, dir, "b", fmt.Sprintf(config, kb.KeyFile), "ip", "netns", "exec", nsB.Name)
	waitFor(t, 20*time.Second, "A and B to find each other with mDNS", func() bool {
		return a.peers(t)[kb.NodeID].Up && b.peers(t)[ka.NodeID].Up
	})
	pb, pa := a.peers(t)[kb.NodeID], b.peers(t)[ka.NodeID]
	if pb.Path != "direct" || !strings.HasPrefix(pb.Endpoint, "10.77.0.2:") || pa.Path != "direct" || !strings.HasPrefix(pa.Endpoint, "10.77.0.1:") {
		t.Errorf("paths: A sees B %+v; B sees A %+v", pb, pa)
	}
	if st := a.status(t); !st.MDNS {
		t.Errorf("status of A: mdns off")

	}
}

// checkCalls drives call on the end-to-end mesh: A and B serve the
// built-in rpc services, C runs with rpc_builtin = false.
func checkCalls(t *testing.T, a, b, c *proc, ka, kb, kc, stranger keyInfo, metricsAddr string) {
	t.Helper()
	if st := b.status(t); !slices.Equal(st.RPCServices, []string{serviceEcho, serviceInfo}) || st.Version == "" {
		t.Errorf("status of B: rpc services %v, version %q", st.RPCServices, st.Version)
	}
	if st := c.status(t); len(st.RPCServices) != 0 {
		t.Errorf("status of C (rpc_builtin = false): rpc services %v", st.RPCServices)
	}
	// The services are advertised as capabilities: A finds itself and B.
	// A node's services reach the others within 10 s of its start (the
	// rate limit of capability announcements).
	waitFor(t, 20*time.Second, "A to find the nodes that serve netnode.info", func() bool {
		var found findResult
		r := netnode(t, "find", "rpc:"+serviceInfo, "--json", "--control", a.control)
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &found) != nil {
			return false
		}
		ids := []string{}
		for _, n := range found.Nodes {
			ids = append(ids, n.NodeID)
		}
		want := []string{ka.NodeID, kb.NodeID}
		slices.Sort(want)
		return slices.Equal(ids, want)
	})

	// C calls B by prefix, through the relay; netnode.info describes B.
	var res callResult
	mustJSON(t, &res, "call", kb.NodeID[:6], serviceInfo, "--json", "--control", c.control)
	var info nodeInfo
	if res.Status != callOK || res.NodeID != kb.NodeID || res.Service != serviceInfo || res.DurationMs <= 0 ||
		json.Unmarshal(res.Reply, &info) != nil {
		t.Fatalf("call netnode.info on B from C: %+v", res)
	}
	if info.NodeID != kb.NodeID || info.Version == "" || info.UptimeSeconds <= 0 ||
		!slices.Contains(info.Capabilities, "gpu") || !slices.Contains(info.Capabilities, "rpc:"+serviceEcho) {
		t.Errorf("netnode.info of B: %+v", info)
	}

	// A calls any node with netnode.echo: only B qualifies (A is itself,
	// C serves nothing). JSON replies print indented, others unchanged.
	out := mustRun(t, "call", anyNode, serviceEcho, `{"list": [1,2], "s": "x"}`, "--control", a.control)
	if want := "{\n  \"list\": [\n    1,\n    2\n  ],\n  \"s\": \"x\"\n}\n"; out != want {
		t.Errorf("call any netnode.echo: %q, want %q", out, want)
	}
	if out := mustRun(t, "call", anyNode, serviceEcho, "--raw", "plain words", "--control", a.control); out != "plain words" {
		t.Errorf("call --raw: %q", out)
	}
	res = callResult{}
	mustJSON(t, &res, "call", anyNode, serviceEcho, "--raw", "plain words", "--json", "--timeout", "5s", "--control", a.control)
	if res.Status != callOK || res.NodeID != kb.NodeID || res.Reply != nil || string(res.ReplyBytes) != "plain words" || res.ReplyText != "plain words" {
		t.Errorf("call --raw --json: %+v", res)
	}

	// A large request from standard input, relayed; one over the limit of
	// the built-in services.
	withStdin := func(s string) func(*exec.Cmd) { return func(cmd *exec.Cmd) { cmd.Stdin = strings.NewReader(s) } }
	big := `"` + strings.Repeat("x", builtinMaxRequest-2) + `"`
	if r := netnodeCmd(t, withStdin(big), "call", kb.NodeID, serviceEcho, "-", "--control", c.control); r.code != 0 || r.stdout != big+"\n" {
		t.Errorf("call with a %d-byte request: exit %d, %d bytes out, stderr %q", len(big), r.code, len(r.stdout), r.stderr)
	}
	oneLineError(t, netnodeCmd(t, withStdin(big+" "), "call", kb.NodeID, serviceEcho, "-", "--control", c.control),
		1, "server error 2 (request too large)")

	// C calls A, for the metrics of A's rpc server.
	mustRun(t, "call", ka.NodeID, serviceEcho, "1", "--control", c.control)

	// Failed calls: one line naming the kind and status, exit 1; --json
	// prints the result too.
	oneLineError(t, netnode(t, "call", kb.NodeID, "no.such", "--control", a.control), 1,
		"call no.such on "+kb.NodeID+": server error 1 (unknown service): no service no.such")
	r := netnode(t, "call", kb.NodeID, "no.such", "--json", "--control", a.control)
	res = callResult{}
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Status != "server_error" ||
		res.RPCStatus != 1 || res.RPCStatusName != "unknown service" || res.NodeID != kb.NodeID {
		t.Errorf("call of an unknown service --json: exit %d, %q, %+v", r.code, r.stdout, res)
	}
	// C serves no built-in service (its rpc server carries only the task
	// layer).
	oneLineError(t, netnode(t, "call", kc.NodeID, serviceInfo, "--control", a.control), 1,
		"call netnode.info on "+kc.NodeID+": server error 1 (unknown service): no service netnode.info")
	oneLineError(t, netnode(t, "call", anyNode, "no.such", "--control", a.control), 1, "no responders: no other node advertises rpc:no.such")
	oneLineError(t, netnode(t, "call", stranger.NodeID, serviceInfo, "--control", a.control), 1, "unknown node")

	// Bad command lines: exit 2.
	oneLineError(t, netnode(t, "call", anyNode, "Bad Service", "--control", a.control), 2, `service "Bad Service"`)
	oneLineError(t, netnode(t, "call", anyNode, serviceEcho, "{bad", "--control", a.control), 2, "request is not JSON")
	oneLineError(t, netnode(t, "call", anyNode, "--control", a.control), 2, "accepts between 2 and 3 arg(s)")
	oneLineError(t, netnode(t, "call", anyNode, serviceEcho, "--timeout", "0s", "--control", a.control), 2, "--timeout")
	oneLineError(t, netnode(t, "call", "no-such!", serviceInfo, "--control", a.control), 2, "not a NodeID")
	oneLineError(t, netnode(t, "call", ka.NodeID, serviceInfo, "--control", a.control), 2, "this node itself")

	// A's metrics count the calls it made and served.
	body := scrape(t, metricsAddr)
	for name, min := range map[string]float64{
		"netmesh_rpc_client_calls_total":    4,
		"netmesh_rpc_client_failures_total": 2,
		"netmesh_rpc_server_calls_total":    1,
		"netmesh_capability_nodes_known":    3,
		"netmesh_channel_delivered_total":   1, // A subscribed to eu/local
	} {
		if v, ok := metricValue(body, name); !ok || v < min {
			t.Errorf("metric %s = %v (present %v), want at least %v", name, v, ok, min)
		}
	}
	for _, want := range []string{"netmesh_rpc_client_outstanding 0", "netmesh_rpc_server_active 0",
		`netmesh_capability_rejected_total{reason="bad_signature"} 0`, `netmesh_channel_subscribes_rejected_total{reason="token"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// metricValue returns the value of the unlabelled metric name in the
// Prometheus text body.
func metricValue(body, name string) (float64, bool) {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
