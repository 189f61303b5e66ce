package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netmesh/netmesh/noise"
	"go.uber.org/goleak"
)

// netnodeBin is the binary the end-to-end tests run, built by TestMain
// into a directory that other users can read (for the uid test).
var netnodeBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if path := os.Getenv(fakeControlEnv); path != "" {
		return fakeControl(path)
	}
	if os.Getenv(fakeSkillEnv) != "" {
		return fakeSkill()
	}
	dir, err := os.MkdirTemp("", "netnode-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	netnodeBin = filepath.Join(dir, "netnode")
	build := exec.Command("go", "build", "-o", netnodeBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building netnode:", err)
		return 1
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			return 1
		}
	}
	return code
}

// result is what one run of the binary produced.
type result struct {
	stdout, stderr string
	code           int
}

// netnode runs the binary to completion with args.
func netnode(t *testing.T, args ...string) result {
	t.Helper()
	return netnodeCmd(t, nil, args...)
}

// netnodeCmd runs the binary with args; setup may adjust the command.
func netnodeCmd(t *testing.T, setup func(*exec.Cmd), args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, netnodeBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if setup != nil {
		setup(cmd)
	}
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("netnode %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustRun runs the binary and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := netnode(t, args...)
	if r.code != 0 {
		t.Fatalf("netnode %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// mustJSON runs the binary and decodes its stdout into v.
func mustJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := mustRun(t, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("netnode %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// keyInfo is what `netnode id --json` prints.
type keyInfo struct {
	NodeID    string `json:"node_id"`
	PublicKey string `json:"public_key"`
	KeyFile   string `json:"key_file"`
}

// newKey writes a key file with `netnode keygen` and returns its ids.
func newKey(t *testing.T, path string) keyInfo {
	t.Helper()
	var k keyInfo
	mustJSON(t, &k, "keygen", "--json", "-k", path)
	return k
}

// proc is a running `netnode run`.
type proc struct {
	cmd     *exec.Cmd
	control string
	log     string
	done    chan struct{}
	err     error
}

// startNode writes config to dir/name.toml and runs a node from it. The
// node is stopped in t.Cleanup; its log is shown if the test failed.
func startNode(t *testing.T, dir, name, config string) *proc {
	t.Helper()
	return startNodeWith(t, netnodeBin, dir, name, config)
}

// startNodeWith is startNode running the binary bin, with the command
// prefixed by wrap, for example "ip netns exec NAME" to run the node in a
// network namespace.
func startNodeWith(t *testing.T, bin, dir, name, config string, wrap ...string) *proc {
	t.Helper()
	p := &proc{control: filepath.Join(dir, name+".sock"), log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	cfgPath := filepath.Join(dir, name+".toml")
	config = fmt.Sprintf("control = %q\n%s", p.control, config)
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	args := append(wrap, bin, "run", "--config", cfgPath)
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			data, _ := os.ReadFile(p.log)
			t.Logf("log of %s:\n%s", name, data)
		}
	})
	waitFor(t, 10*time.Second, name+" serving its control socket", func() bool {
		select {
		case <-p.done:
			data, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited: %v\n%s", name, p.err, data)
		default:
		}
		return netnode(t, "status", "--control", p.control).code == 0
	})
	return p
}

// stop sends SIGTERM and waits for the node to exit, killing it if it
// takes too long. It returns the exit error.
func (p *proc) stop(t *testing.T) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("node did not stop within 10s of SIGTERM; killing it")
		p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// status returns the node's `status --json`.
func (p *proc) status(t *testing.T) statusInfo {
	t.Helper()
	var st statusInfo
	mustJSON(t, &st, "status", "--json", "--control", p.control)
	return st
}

// peers returns the node's `peers --json`, by NodeID.
func (p *proc) peers(t *testing.T) map[string]peerInfo {
	t.Helper()
	var res peersResult
	mustJSON(t, &res, "peers", "--json", "--control", p.control)
	m := make(map[string]peerInfo)
	for _, pi := range res.Peers {
		m[pi.NodeID] = pi
	}
	return m
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeTCPAddr returns a loopback TCP address that was free a moment ago.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape returns the metrics served at addr.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// oneLineError checks that r failed with code and one stderr line
// containing want.
func oneLineError(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "netnode: ") {
		t.Errorf("stderr is not one netnode: line: %q", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q does not contain %q", r.stderr, want)
	}
}

// e2ePolicy is the subnet policy of the end-to-end mesh: B is in 3.1.0.0
// by its rack tag; A pins 3.0.0.0, the parent of B's subnet.
const e2ePolicy = `
[[subnet_policy]]
tag = "rack:1"
subnet = "3.1.0.0"
`

// TestEndToEnd runs three nodes: A is a relay, B dials A, C reaches B only
// through A. It drives every inspection command, the metrics endpoint,
// capability discovery (find, nodes), channels (pub, sub, token), nat and
// rpc calls (call).
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ka, kb, kc := newKey(t, filepath.Join(dir, "a.key")), newKey(t, filepath.Join(dir, "b.key")), newKey(t, filepath.Join(dir, "c.key"))
	stranger := newKey(t, filepath.Join(dir, "d.key"))
	metricsAddr := freeTCPAddr(t)

	a := startNode(t, dir, "a", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
metrics = %q
log_format = "json"
log_level = "debug"
subnet = "3.0.0.0"
capabilities = ["relay", "region:eu"]
telemetry = true

[metadata]
role = "relay"
`, ka.KeyFile, metricsAddr))
	stA := a.status(t)
	if stA.NodeID != ka.NodeID || len(stA.ListenAddrs) != 1 || stA.IOMode == "" || !stA.Relay {
		t.Fatalf("status of A: %+v", stA)
	}
	addrA := stA.ListenAddrs[0]

	b := startNode(t, dir, "b", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
relay = false
capabilities = ["gpu", "rack:1"]
metadata = { gpu_mem_gb = "48" }

[[peers]]
addr = %q
key = %q
%s
[[channels]]
name = "jobs"

[[channels]]
name = "secret"
require_token = true

[[channels]]
name = "gpu-only"
subscribe_caps = "gpu && gpu_mem_gb>=24"

[[channels]]
name = "eu/local"
visibility = "parent-visible"
max_subscribers = 10
pending_limit = 100
`, kb.KeyFile, addrA, ka.PublicKey, e2ePolicy))
	c := startNode(t, dir, "c", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
relay = false
rpc_builtin = false
capabilities = ["cpu"]
relays = ["%s,id=%s"] # a dial string; B below is a table

[[peers]]
id = %q
key = %q
%s`, kc.KeyFile, addrA, ka.NodeID, kb.NodeID, kb.PublicKey, e2ePolicy))

	waitFor(t, 20*time.Second, "A to have B and C up, and C to reach B", func() bool {
		return a.status(t).PeersUp == 2 && c.peers(t)[kb.NodeID].Up
	})

	// peers --json: C reaches A directly and B through A, on the
	// preferred cipher suite unless a dial fell back (an initiation left
	// unanswered for a retransmit interval on a busy machine).
	pc := c.peers(t)
	suite := noise.PreferredSuite().String()
	if a.status(t).SuiteFallbacks+c.status(t).SuiteFallbacks > 0 {
		suite = noise.SuiteChaChaPoly.String()
	}
	if pa := pc[ka.NodeID]; pa.Path != "direct" || pa.Endpoint != addrA || pa.Via != "" || pa.LastSeen == nil || pa.CipherSuite != suite {
		t.Errorf("C's view of A: %+v", pa)
	}
	if pb := pc[kb.NodeID]; pb.Path != "relayed" || pb.Via != ka.NodeID || pb.Endpoint != "" || pb.PathReason == "" {
		t.Errorf("C's view of B: %+v", pb)
	}
	table := mustRun(t, "peers", "--control", c.control)
	for _, want := range []string{"NODE ID", "PATH", "WHY", kb.NodeID, "via " + ka.NodeID[:8], "relayed", "direct"} {
		if !strings.Contains(table, want) {
			t.Errorf("peers table lacks %q:\n%s", want, table)
		}
	}

	// health: by prefix, human and JSON; unknown, malformed.
	if out := mustRun(t, "health", kb.NodeID[:6], "--control", a.control); !strings.Contains(out, "up") || !strings.Contains(out, "direct") {
		t.Errorf("health of B on A:\n%s", out)
	}
	var h peerInfo
	mustJSON(t, &h, "health", "--json", kb.NodeID, "--control", c.control)
	if !h.Up || h.Path != "relayed" || h.NodeID != kb.NodeID {
		t.Errorf("health --json of B on C: %+v", h)
	}
	oneLineError(t, netnode(t, "health", stranger.NodeID, "--control", a.control), 1, "unknown node")
	oneLineError(t, netnode(t, "health", "no-such-node!", "--control", a.control), 2, "not a NodeID")
	oneLineError(t, netnode(t, "health", "--control", a.control), 2, "takes one node")

	// ping over the relayed path, human then JSON.
	out := mustRun(t, "ping", kb.NodeID[:5], "-c", "3", "-i", "20ms", "--control", c.control)
	if n := strings.Count(out, "rtt="); n != 3 || !strings.Contains(out, "3 sent, 3 received") {
		t.Errorf("ping output:\n%s", out)
	}
	out = mustRun(t, "ping", kb.NodeID, "-c", "2", "-i", "20ms", "--json", "--control", a.control)
	sc := bufio.NewScanner(strings.NewReader(out))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 3 {
		t.Fatalf("ping --json: want 2 replies and a summary, got:\n%s", out)
	}
	var reply pingReply
	var sum pingSummary
	if err := json.Unmarshal([]byte(lines[0]), &reply); err != nil || reply.Seq != 1 || reply.RTTMs <= 0 {
		t.Errorf("first ping reply %q: %+v %v", lines[0], reply, err)
	}
	if err := json.Unmarshal([]byte(lines[2]), &sum); err != nil || sum.Sent != 2 || sum.Received != 2 || sum.NodeID != kb.NodeID {
		t.Errorf("ping summary %q: %+v %v", lines[2], sum, err)
	}

	// status, human.
	out = mustRun(t, "status", "--control", c.control)
	for _, want := range []string{kc.NodeID, "io mode", "relay", "off", "drops"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	// metrics: A's view of B, and the node counters.
	body := scrape(t, metricsAddr)
	for _, want := range []string{
		fmt.Sprintf("netmesh_peer_up{peer=%q} 1", kb.NodeID),
		`netmesh_drops_total{reason="replay"}`,
		"netmesh_handshakes_completed_total",
		"netmesh_relayed_packets_total",
		"netmesh_socket_writes_total",
		"netmesh_packets_written_total",
		"netmesh_reverse_routes_refused_total 0",
		"netmesh_peers_up 2",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	checkDiscovery(t, a, b, c, ka, kb, kc)
	checkChannels(t, a, b, c, kb, kc, filepath.Join(dir, "b.key"))
	checkCalls(t, a, b, c, ka, kb, kc, stranger, metricsAddr)

	// SIGTERM: B exits 0 and removes its socket.
	if err := b.stop(t); err != nil {
		t.Errorf("B after SIGTERM: %v", err)
	}
	if _, err := os.Stat(b.control); !os.IsNotExist(err) {
		t.Errorf("B's control socket still exists after shutdown: %v", err)
	}
	oneLineError(t, netnode(t, "peers", "--control", b.control), 1, "no netnode running at "+b.control)
}

// TestBadConfig checks that every kind of bad configuration fails at once
// with exit code 2 and one line on stderr.
func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t, filepath.Join(dir, "good.key")).KeyFile
	loose := filepath.Join(dir, "loose.key")
	data, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "never.sock")
	tests := []struct {
		name, config string
		flags        []string
		want         string
	}{
		{"unknown key", "colour = \"blue\"", nil, `unknown key "colour"`},
		{"unknown channel key", "[[channels]]\nname = \"x1\"\ncolour = 1", nil, `unknown key "channels.colour"`},
		{"nat without the nat tag", "[nat]\nstun_servers = [\"192.0.2.1:3478\"]", nil, "build it with -tags nat"},
		{"stun flag without the nat tag", "", []string{"--stun-server", "192.0.2.1:3478"}, "-tags nat"},
		{"port mapping without the portmap tag", "[nat]\nport_map = true", nil, "-tags nat,portmap"},
		{"punch without the nat tag", "[nat]\npunch = false", nil, "build it with -tags nat"},
		{"bad capability", `capabilities = ["GPU"]`, nil, `capabilities: capability: invalid tag "GPU"`},
		{"bad metadata", `metadata = { "Bad Key" = "1" }`, nil, "metadata: "},
		{"bad meta flag", "", []string{"--meta", "novalue"}, "--meta"},
		{"bad subnet", `subnet = "3.0.1.0"`, nil, `subnet "3.0.1.0"`},
		{"bad subnet flag", "", []string{"--subnet", "300.0.0.0"}, "subnet"},
		{"bad subnet rule", "[[subnet_policy]]\ntag = \"rack:1\"\nsubnet = \"x\"", nil, "subnet_policy[0]: subnet"},
		{"subnet rule without tag", "[[subnet_policy]]\nsubnet = \"3.0.0.0\"", nil, "subnet_policy[0]: tag is required"},
		{"bad subnet rule flag", "", []string{"--subnet-rule", "rack:1"}, "--subnet-rule"},
		{"bad channel name", "[[channels]]\nname = \"Jobs\"", nil, `channels[0]: name "Jobs"`},
		{"bad visibility", "[[channels]]\nname = \"x1\"\nvisibility = \"public\"", nil, `channels[0]: visibility "public"`},
		{"bad subscribe_caps", "[[channels]]\nname = \"x1\"\nsubscribe_caps = \"gpu &&\"", nil, "channels[0]: subscribe_caps"},
		{"bad publish_caps", "[[channels]]\nname = \"x1\"\npublish_caps = \"(\"", nil, "channels[0]: publish_caps"},
		{"duplicate channel", "[[channels]]\nname = \"x1\"\n[[channels]]\nname = \"x1\"", nil, `channels[1]: channel "x1" is listed twice`},
		{"bad max_subscribers", "[[channels]]\nname = \"x1\"\nmax_subscribers = -1", nil, "max_subscribers"},
		{"bad pending_limit", "[[channels]]\nname = \"x1\"\npending_limit = 1000000", nil, "pending_limit"},
		{"bad publish_wait", "[[channels]]\nname = \"x1\"\npublish_wait = \"soon\"", nil, `channels[0]: publish_wait "soon"`},
		{"zero publish_wait", "[[channels]]\nname = \"x1\"\npublish_wait = \"0s\"", nil, `channels[0]: publish_wait "0s"`},
		{"bad token issuer", "[[channels]]\nname = \"x1\"\ntoken_issuers = [\"abc\"]", nil, "channels[0]: token_issuers[0]"},
		{"unknown peer key", "[[peers]]\naddr = \"127.0.0.1:1\"\nport = 3", nil, `unknown key "peers.port"`},
		{"bad listen", `listen = "127.0.0.1"`, nil, "listen"},
		{"bad listen port", `listen = ":70000"`, nil, "bad port"},
		{"bad listen flag", "", []string{"--listen", "localhost:1"}, "not an IP address"},
		{"bad peer address", "[[peers]]\naddr = \"127.0.0.1:0\"", nil, "peers[0]: dialaddr: bad dial string \"127.0.0.1:0\""},
		{"bad peer key", "[[peers]]\naddr = \"127.0.0.1:7946\"\nkey = \"abcd\"", nil, "peers[0]: dialaddr: bad dial string \"127.0.0.1:7946,key=abcd\""},
		{"bad peer id", "[[peers]]\nid = \"nope\"", nil, "peers[0]: dialaddr: bad dial string \"id=nope\""},
		{"bad peer dial string", "peers = [\"127.0.0.1:7946,colour=blue\"]", nil, "peers[0]: dialaddr: bad dial string"},
		{"relay without address", "[[relays]]\nkey = \"" + strings.Repeat("ab", 32) + "\"", nil, "relays[0]: key=" + strings.Repeat("ab", 32) + ": a relay needs an address"},
		{"bad peer flag", "", []string{"--peer", "127.0.0.1:1,colour=blue"}, "--peer"},
		{"bad metrics", `metrics = "9100"`, nil, "metrics"},
		{"bad log format", `log_format = "xml"`, nil, "log_format"},
		{"bad log level", `log_level = "loud"`, nil, "log_level"},
		{"bad rpc_builtin", `rpc_builtin = "no"`, nil, "config"},
		{"toml syntax", `listen = ":7946`, nil, "config"},
		{"wrong type", `relay = "yes"`, nil, "config"},
		{"missing key file", "", []string{"--key", filepath.Join(dir, "absent.key")}, "does not exist"},
		{"world-readable key file", "", []string{"--key", loose}, "chmod 600"},
		{"key file is a directory", "", []string{"--key", dir}, "not a regular file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, fmt.Sprintf("bad%d.toml", i))
			body := fmt.Sprintf("key_file = %q\ncontrol = %q\nlisten = \"127.0.0.1:0\"\n", key, sock)
			if strings.HasPrefix(tt.config, "listen") {
				body = fmt.Sprintf("key_file = %q\ncontrol = %q\n", key, sock)
			}
			if err := os.WriteFile(cfg, []byte(body+tt.config+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := netnode(t, append([]string{"run", "--config", cfg}, tt.flags...)...)
			oneLineError(t, r, 2, tt.want)
		})
	}
	t.Run("missing config file", func(t *testing.T) {
		oneLineError(t, netnode(t, "run", "--config", filepath.Join(dir, "absent.toml")), 2, "absent.toml")
	})
	t.Run("unreadable key file", func(t *testing.T) {
		locked := filepath.Join(dir, "locked.key")
		if err := os.WriteFile(locked, data, 0o000); err != nil {
			t.Fatal(err)
		}
		var setup func(*exec.Cmd)
		if os.Getuid() == 0 {
			// Root reads any file: read a file of root's as nobody.
			setup, _ = asNobody(t)
			for _, d := range []string{filepath.Dir(dir), dir} {
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
		r := netnodeCmd(t, setup, "run", "--key", locked, "--control", sock)
		oneLineError(t, r, 2, "permission denied")
	})
}

// TestControlSocket checks the socket's mode, that other users are
// refused, and that a second node cannot take over a live socket.
func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t, filepath.Join(dir, "a.key"))
	a := startNode(t, dir, "a", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\n", k.KeyFile))

	fi, err := os.Lstat(a.control)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want a socket with 0600", fi.Mode())
	}

	second := netnode(t, "run", "--key", k.KeyFile, "--listen", "127.0.0.1:0", "--control", a.control)
	oneLineError(t, second, 1, "another netnode is running")
	oneLineError(t, netnode(t, "status", "--control", filepath.Join(dir, "none.sock")), 1, "no netnode running at")

	t.Run("other uid", func(t *testing.T) {
		asNobody, uid := asNobody(t)
		// Let nobody reach the socket's directory.
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// The file mode stops it first...
		r := netnodeCmd(t, asNobody, "status", "--control", a.control)
		oneLineError(t, r, 1, "permission denied")
		// ...and with the mode opened up, SO_PEERCRED still does.
		if err := os.Chmod(a.control, 0o666); err != nil {
			t.Fatal(err)
		}
		r = netnodeCmd(t, asNobody, "status", "--control", a.control)
		oneLineError(t, r, 1, fmt.Sprintf("uid %d may not use the control socket", uid))
		if err := os.Chmod(a.control, 0o600); err != nil {
			t.Fatal(err)
		}
		a.status(t) // the owner still gets in
	})
}

// fakeControlEnv, set to a path, makes the test binary serve a control
// socket there that answers every request with a forged status and lets
// any user connect: what another user could leave at the default path.
const fakeControlEnv = "NETNODE_TEST_FAKE_CONTROL"

func fakeControl(path string) int {
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Chmod(path, 0o666); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				var req request
				json.Unmarshal(sc.Bytes(), &req)
				fmt.Fprintf(c, `{"id":%d,"result":{"node_id":"forged"}}`+"\n", req.ID)
			}
		}()
	}
}

// TestControlSocketOfAnotherUser checks that the commands refuse a
// control socket served by another user, before they send it a request.
func TestControlSocketOfAnotherUser(t *testing.T) {
	asNobody, nobodyUID := asNobody(t)
	// The fake server is this test binary, run as nobody: copy it where
	// nobody can run it.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "fake")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "squatted.sock")
	fake := exec.Command(bin)
	fake.Env = append(os.Environ(), fakeControlEnv+"="+sock)
	asNobody(fake)
	out, err := fake.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	fake.Stderr = os.Stderr
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fake.Process.Kill()
		fake.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("fake control socket: %q, %v", line, err)
	}

	// A user other than nobody and root (uid 1, daemon on most systems).
	asOther := runAs(1, 1)
	r := netnodeCmd(t, asOther, "status", "--json", "--control", sock)
	oneLineError(t, r, 1, fmt.Sprintf("served by uid %d", nobodyUID))
	if strings.Contains(r.stdout, "forged") {
		t.Errorf("the command believed the other user's socket: %s", r.stdout)
	}
	// Root may inspect any user's node.
	if out := mustRun(t, "status", "--json", "--control", sock); !strings.Contains(out, "forged") {
		t.Errorf("root's status: %s", out)
	}
}

// TestDemo runs the demo in this process.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := runDemo(ctx, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"intact (SHA-256)", "delivered end to end encrypted", "2 of 2 subscribers delivered",
		"queued on delta", "event #4 progress 100", `succeeded success {"thumbnail": "cat.png@64px"}`,
		"moves the daemon to beta", "cutover", "lost 0, duplicated 0", "demo finished"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestUsage checks exit codes of bad command lines and --help.
func TestUsage(t *testing.T) {
	oneLineError(t, netnode(t, "frobnicate"), 2, "unknown command")
	oneLineError(t, netnode(t, "peers", "--frobnicate"), 2, "unknown flag")
	oneLineError(t, netnode(t, "ping", "abc", "-c", "0"), 2, "--count")
	oneLineError(t, netnode(t, "demo", "extra"), 2, "unknown command")
	for _, cmd := range []string{"run", "peers", "health", "ping", "status", "keygen", "id", "demo",
		"find", "nodes", "pub", "sub", "call", "token", "token issue", "nat"} {
		if r := netnode(t, append(strings.Fields(cmd), "--help")...); r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%s --help: exit %d\n%s", cmd, r.code, r.stdout)
		}
	}
}
