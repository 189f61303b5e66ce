package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// twoNodes starts A and B, B dialling A, and waits until each sees the
// other up.
func twoNodes(t *testing.T, extraA, extraB string) (a, b *proc, ka, kb keyInfo) {
	t.Helper()
	dir := t.TempDir()
	ka, kb = newKey(t, filepath.Join(dir, "a.key")), newKey(t, filepath.Join(dir, "b.key"))
	a = startNode(t, dir, "a", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\n%s", ka.KeyFile, extraA))
	addrA := a.status(t).ListenAddrs[0]
	b = startNode(t, dir, "b", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\npeers = [%q]\n%s", kb.KeyFile, addrA+",key="+ka.PublicKey, extraB))
	waitFor(t, 10*time.Second, "A and B to see each other", func() bool {
		return a.peers(t)[kb.NodeID].Up && b.peers(t)[ka.NodeID].Up
	})
	return a, b, ka, kb
}

// TestSIGTERMLeaves: a node stopped with SIGTERM says goodbye: its peer
// shows it down because it left, and its index drops it, at once.
func TestSIGTERMLeaves(t *testing.T) {
	a, b, _, kb := twoNodes(t, "", "")
	waitFor(t, 15*time.Second, "A to index B", func() bool {
		var res nodesResult
		mustJSON(t, &res, "nodes", "--json", "--control", a.control)
		return len(res.Nodes) == 2
	})
	if err := b.stop(t); err != nil {
		t.Fatalf("B exited with %v", err)
	}
	pb := a.peers(t)[kb.NodeID]
	if pb.Up || pb.PathReason != "no session: the peer left" {
		t.Fatalf("A sees B as up=%v, %q; want down because it left", pb.Up, pb.PathReason)
	}
	var res nodesResult
	mustJSON(t, &res, "nodes", "--json", "--control", a.control)
	if len(res.Nodes) != 1 || res.Health.Left != 1 {
		t.Fatalf("A's index after B left: %+v", res)
	}
}

// TestSubSurvivesPublisherRestart: netnode sub goes on after its
// publisher restarts, and says when it lost and regained it.
func TestSubSurvivesPublisherRestart(t *testing.T) {
	channels := "[[channels]]\nname = \"news\"\n"
	a, b, ka, _ := twoNodes(t, channels, "")
	sub := startSub(t, "sub", ka.NodeID, "news", "-n", "2", "--json", "--control", b.control)
	publishUntilHeard(t, a, "news", "one")
	addrA := a.status(t).ListenAddrs[0]
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	a2 := startNode(t, filepath.Dir(a.control), "a", fmt.Sprintf("key_file = %q\nlisten = %q\n%s", ka.KeyFile, addrA, channels))
	publishUntilHeard(t, a2, "news", "two")
	r := sub.wait(t)
	if r.code != 0 {
		t.Fatalf("sub: exit %d: %s", r.code, r.stderr)
	}
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev subEvent
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Kind != "" {
			kinds = append(kinds, ev.Kind+":"+ev.Text)
		}
	}
	if got, want := strings.Join(kinds, " "), "message:one lost: resubscribed: message:two"; got != want {
		t.Fatalf("sub printed %q, want %q\n%s", got, want, r.stdout)
	}
}

// TestNamesAndNodesOnDemand: nodes carry names, shown by peers, nodes
// and health; ping and health take a name, and reach a node known only
// from the capability index by connecting on demand; a name two nodes
// claim is reported and refused.
func TestNamesAndNodesOnDemand(t *testing.T) {
	dir := t.TempDir()
	ka, kb, kc := newKey(t, filepath.Join(dir, "a.key")), newKey(t, filepath.Join(dir, "b.key")), newKey(t, filepath.Join(dir, "c.key"))
	a := startNode(t, dir, "a", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\nname = \"alpha\"\n", ka.KeyFile))
	addrA := a.status(t).ListenAddrs[0] + ",key=" + ka.PublicKey
	startNode(t, dir, "b", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\nname = \"beta\"\npeers = [%q]\n", kb.KeyFile, addrA))
	c := startNode(t, dir, "c", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\nname = \"gamma\"\npeers = [%q]\n", kc.KeyFile, addrA))
	waitFor(t, 15*time.Second, "C to index B", func() bool {
		var res nodesResult
		mustJSON(t, &res, "nodes", "--json", "--control", c.control)
		for _, n := range res.Nodes {
			if n.NodeID == kb.NodeID && n.Name == "beta" {
				return true
			}
		}
		return false
	})
	if _, ok := c.peers(t)[kb.NodeID]; ok {
		t.Fatal("C already has a session with B")
	}
	// C has no session with B: ping connects, through A.
	var sum pingSummary
	out := mustRun(t, "ping", "beta", "-c", "1", "--json", "--control", c.control)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.NodeID != kb.NodeID || sum.Received != 1 {
		t.Fatalf("ping beta: %v %+v\n%s", err, sum, out)
	}
	var h peerInfo
	mustJSON(t, &h, "health", "BETA", "--json", "--control", c.control)
	if h.NodeID != kb.NodeID || h.Name != "beta" || !h.Up {
		t.Fatalf("health BETA: %+v", h)
	}
	table := mustRun(t, "peers", "--control", c.control)
	if !strings.Contains(table, "NAME") || !strings.Contains(table, "alpha") || !strings.Contains(table, "beta") {
		t.Fatalf("peers does not show the names:\n%s", table)
	}
	if st := c.status(t); st.Name != "gamma" {
		t.Fatalf("status name %q", st.Name)
	}

	// A second node claims "beta": reported, and the name is refused.
	kd := newKey(t, filepath.Join(dir, "d.key"))
	startNode(t, dir, "d", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\nname = \"beta\"\npeers = [%q]\n", kd.KeyFile, addrA))
	waitFor(t, 15*time.Second, "C to report the duplicate name", func() bool {
		var res nodesResult
		mustJSON(t, &res, "nodes", "--json", "--control", c.control)
		return strings.Join(res.Health.DuplicateNames, ",") == "beta"
	})
	oneLineError(t, netnode(t, "ping", "beta", "-c", "1", "--control", c.control), 2, "2 nodes claim the name")
	if !strings.Contains(mustRun(t, "nodes", "--control", c.control), "claimed by more than one node") {
		t.Fatal("nodes does not report the duplicate name")
	}
}

// TestPeersShowsConfiguredPeersDown: a bootstrap peer the node cannot
// reach is listed by peers, down, with the reason.
func TestPeersShowsConfiguredPeersDown(t *testing.T) {
	dir := t.TempDir()
	ka, kb, other := newKey(t, filepath.Join(dir, "a.key")), newKey(t, filepath.Join(dir, "b.key")), newKey(t, filepath.Join(dir, "x.key"))
	a := startNode(t, dir, "a", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\n", ka.KeyFile))
	// B pins a key A does not have.
	wrong := a.status(t).ListenAddrs[0] + ",key=" + other.PublicKey
	b := startNode(t, dir, "b", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\npeers = [%q]\n", kb.KeyFile, wrong))
	var pi peerInfo
	waitFor(t, 10*time.Second, "B to list its configured peer down with a reason", func() bool {
		pi = b.peers(t)[other.NodeID]
		return strings.Contains(pi.PathReason, "pin mismatch")
	})
	if pi.Up || pi.Configured != wrong {
		t.Fatalf("configured peer: %+v", pi)
	}
	want := fmt.Sprintf("is node %s with key %s, not the pinned key", ka.NodeID, ka.PublicKey)
	if !strings.Contains(pi.PathReason, want) {
		t.Fatalf("reason %q does not say %q", pi.PathReason, want)
	}
	if out := mustRun(t, "peers", "--control", b.control); !strings.Contains(out, wrong) {
		t.Fatalf("peers does not show the configured peer:\n%s", out)
	}
}

// TestVersionAndEnvironment: --version, and NETNODE_CONTROL,
// NETNODE_CONFIG and the default config path standing in for flags.
func TestVersionAndEnvironment(t *testing.T) {
	if out := mustRun(t, "--version"); !strings.HasPrefix(out, "netnode version ") {
		t.Fatalf("--version printed %q", out)
	}
	dir := t.TempDir()
	ka := newKey(t, filepath.Join(dir, "a.key"))
	a := startNode(t, dir, "a", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\nname = \"from-file\"\n", ka.KeyFile))
	withEnv := func(env ...string) func(*exec.Cmd) {
		return func(c *exec.Cmd) { c.Env = append(os.Environ(), env...) }
	}
	r := netnodeCmd(t, withEnv(controlEnv+"="+a.control), "status", "--json")
	var st statusInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.NodeID != ka.NodeID {
		t.Fatalf("status with %s: exit %d %s %s", controlEnv, r.code, r.stdout, r.stderr)
	}

	// run finds its config in $NETNODE_CONFIG, or in the default place.
	for _, tc := range []struct{ name, env string }{
		{"NETNODE_CONFIG", configEnv},
		{"XDG_CONFIG_HOME", "XDG_CONFIG_HOME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			k := newKey(t, filepath.Join(d, "n.key"))
			sock := filepath.Join(d, "n.sock")
			cfg := filepath.Join(d, "node.toml")
			val := cfg
			if tc.env == "XDG_CONFIG_HOME" {
				if err := os.Mkdir(filepath.Join(d, "netnode"), 0o700); err != nil {
					t.Fatal(err)
				}
				cfg, val = filepath.Join(d, "netnode", "node.toml"), d
			}
			body := fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\ncontrol = %q\nname = \"env-node\"\n", k.KeyFile, sock)
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(netnodeBin, "run")
			cmd.Env = append(os.Environ(), tc.env+"="+val)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
			})
			waitFor(t, 10*time.Second, "the node to serve its control socket", func() bool {
				var st statusInfo
				r := netnode(t, "status", "--json", "--control", sock)
				return r.code == 0 && json.Unmarshal([]byte(r.stdout), &st) == nil && st.Name == "env-node"
			})
		})
	}
}
