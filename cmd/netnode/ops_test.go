package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
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
