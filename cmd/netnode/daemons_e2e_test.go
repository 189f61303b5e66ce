package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon"
)

// TestDaemonCommands drives the daemon command against two running
// nodes: spawn a counter on one, feed it from the other, move it, read
// its snapshot, stop it.
func TestDaemonCommands(t *testing.T) {
	dir := t.TempDir()
	ka, kb := newKey(t, filepath.Join(dir, "a.key")), newKey(t, filepath.Join(dir, "b.key"))
	a := startNode(t, dir, "a", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\n[daemons]\nmax_daemons = 8\n", ka.KeyFile))
	b := startNode(t, dir, "b", fmt.Sprintf("key_file = %q\nlisten = \"127.0.0.1:0\"\n[[peers]]\naddr = %q\nkey = %q\n",
		kb.KeyFile, a.status(t).ListenAddrs[0], ka.PublicKey))
	waitFor(t, 10*time.Second, "a to see both runtimes", func() bool {
		var res daemonKindsResult
		mustJSON(t, &res, "daemon", "kinds", "--json", "--control", a.control)
		return len(res.Nodes) == 2 && slices.Equal(res.Here, []string{"counter"})
	})
	if out := mustRun(t, "daemon", "kinds", "--control", a.control); !strings.Contains(out, "this node runs: counter") || !strings.Contains(out, "0/8") {
		t.Fatalf("kinds:\n%s", out)
	}

	var loc daemon.Location
	mustJSON(t, &loc, "daemon", "spawn", "counter", "--node", kb.NodeID[:8], "--json", "--control", a.control)
	if loc.Node.String() != kb.NodeID {
		t.Fatalf("spawned on %s, want b", loc.Node)
	}
	id := loc.Daemon.String()
	out := mustRun(t, "daemon", "deliver", id, "--event", `{"key": "visits", "add": 2}`, "--control", b.control)
	if !strings.Contains(out, "applied at sequence 1 on "+kb.NodeID[:8]) || !strings.Contains(out, `"value":2`) {
		t.Fatalf("deliver:\n%s", out)
	}
	if out := mustRun(t, "daemon", "list", "--control", b.control); !strings.Contains(out, id) || !strings.Contains(out, "counter") {
		t.Fatalf("list on b:\n%s", out)
	}
	if out := mustRun(t, "daemon", "list", "--control", a.control); !strings.Contains(out, "no daemons") {
		t.Fatalf("list on a:\n%s", out)
	}

	out = mustRun(t, "daemon", "migrate", id, "--to", ka.NodeID[:8], "--control", a.control)
	if !strings.Contains(out, "moved "+id+" from "+kb.NodeID[:8]+" to "+ka.NodeID[:8]) {
		t.Fatalf("migrate:\n%s", out)
	}
	var r daemon.Receipt
	mustJSON(t, &r, "daemon", "deliver", id, "--event", `{"key": "visits", "add": 1}`, "--json", "--control", b.control)
	if r.Seq != 2 || r.Node.String() != ka.NodeID {
		t.Fatalf("receipt after the move %+v", r)
	}
	// On the host, the migration's phases are printed as they begin.
	out = mustRun(t, "daemon", "migrate", id, "--to", kb.NodeID[:8], "--control", a.control)
	for _, p := range []string{"snapshot", "transfer", "restore", "replay", "cutover", "complete", "moved"} {
		if !strings.Contains(out, p) {
			t.Fatalf("migrate lacks %q:\n%s", p, out)
		}
	}

	var s daemon.Snapshot
	mustJSON(t, &s, "daemon", "snapshot", id, "--json", "--control", a.control)
	var values map[string]int64
	if err := json.Unmarshal(s.State, &values); err != nil || values["visits"] != 3 || s.Seq != 2 || s.SealedFor.String() != ka.NodeID {
		t.Fatalf("snapshot %+v: %v %v", s, values, err)
	}
	if out := mustRun(t, "daemon", "stop", id, "--control", a.control); !strings.Contains(out, "stopped "+id+" at sequence 2") || !strings.Contains(out, `{"visits":3}`) {
		t.Fatalf("stop:\n%s", out)
	}
	oneLineError(t, netnode(t, "daemon", "deliver", id, "--event", `{"key": "x"}`, "--control", b.control), 1, "NOT_FOUND")
	// Only the owner may stop a daemon.
	mustJSON(t, &loc, "daemon", "spawn", "counter", "--node", "self", "--json", "--control", a.control)
	oneLineError(t, netnode(t, "daemon", "stop", loc.Daemon.String(), "--control", b.control), 1, "NOT_OWNER")
	oneLineError(t, netnode(t, "daemon", "deliver", "nope", "--event", "1", "--control", a.control), 2, "daemon id")
	oneLineError(t, netnode(t, "daemon", "deliver", id, "--event", "{", "--control", a.control), 2, "not one JSON value")
	oneLineError(t, netnode(t, "daemon", "migrate", id, "--control", a.control), 2, "--to is required")
}
