package meshmdns_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/netlab"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/meshmdns"
)

// Environment of a node child: its identity seed and the NodeID it must
// find.
const (
	envSeed = "MESHMDNS_TEST_SEED"
	envPeer = "MESHMDNS_TEST_PEER"
)

// upLine is what a node child prints once its session with the other
// node is up.
const upLine = "meshmdns-test: peer up"

// linkTimeout bounds how long the two nodes may take to find each other.
const linkTimeout = 30 * time.Second

// TestFindsNodeOnTheLink runs two nodes in two network namespaces joined
// by a veth pair, so that multicast never reaches the host's interfaces,
// each in a child process of this test binary (a process's sockets live
// in one namespace), and checks that each finds and connects to the other
// with nothing but Run.
func TestFindsNodeOnTheLink(t *testing.T) {
	if os.Getenv(envSeed) != "" {
		runNodeChild(t)
		return
	}
	lab := netlab.New(t) // skips without root, ip or nft
	nsA, nsB := lab.NS("mdnsa"), lab.NS("mdnsb")
	lab.Link(nsA, "eth0", "10.77.0.1/24", nsB, "eth0", "10.77.0.2/24")
	// A LAN host has a default route; the mDNS library's query socket
	// joins the group on the interface that routes it.
	for _, ns := range []*netlab.NS{nsA, nsB} {
		ns.Run("ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
	}
	ida, _ := identity.Generate()
	idb, _ := identity.Generate()
	ctx, cancel := context.WithTimeout(context.Background(), linkTimeout)
	defer cancel()
	a := startChild(ctx, t, nsA.Name, ida, idb.NodeID())
	b := startChild(ctx, t, nsB.Name, idb, ida.NodeID())
	for _, c := range []*child{a, b} {
		select {
		case <-c.up:
		case <-ctx.Done():
			t.Fatalf("the nodes did not find each other within %v", linkTimeout)
		}
	}
	for _, c := range []*child{a, b} {
		c.stdin.Close() // the child ends its node and exits
		<-c.logged
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("node child: %v", err)
		}
	}
}

// child is a node running in a child process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	up     chan struct{} // closed when the child printed upLine
	logged chan struct{} // closed when its output ended
}

// startChild runs this test in namespace ns as a node with identity id
// that must find peer. Its output goes to the test's log.
func startChild(ctx context.Context, t *testing.T, ns string, id *identity.Identity, peer identity.NodeID) *child {
	t.Helper()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestFindsNodeOnTheLink$", "-test.v")
	cmd.Env = append(os.Environ(), envSeed+"="+hex.EncodeToString(id.Seed()), envPeer+"="+peer.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, up: make(chan struct{}), logged: make(chan struct{})}
	go func() {
		defer close(c.logged)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			t.Logf("%s: %s", ns, sc.Text())
			if sc.Text() == upLine {
				close(c.up)
			}
		}
	}()
	return c
}

// runNodeChild is the child's side: start the node on :7946, run mDNS
// discovery, print upLine once the session with the expected peer is up,
// and stop when stdin closes.
func runNodeChild(t *testing.T) {
	seed, err := hex.DecodeString(os.Getenv(envSeed))
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	want, err := identity.ParseNodeID(os.Getenv(envPeer))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), linkTimeout)
	defer cancel()
	m, err := mesh.New(mesh.Config{Identity: id, ListenAddr: ":7946"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	events := m.WatchPeers(ctx) // before discovery starts: no event is missed
	done := make(chan struct{})
	go func() {
		meshmdns.Run(ctx, m, meshmdns.Options{Logger: logger})
		close(done)
	}()
	for ev := range events {
		if ev.Up && ev.Peer == want {
			break
		}
	}
	if p := m.Peer(want); p == nil || !p.IsUp() {
		t.Fatalf("no session with %s", want.Short())
	}
	if !strings.HasPrefix(m.Peer(want).Endpoint().String(), "10.77.0.") {
		t.Errorf("session with %s at %s, not on the link", want.Short(), m.Peer(want).Endpoint())
	}
	os.Stdout.WriteString(upLine + "\n")
	io.Copy(io.Discard, os.Stdin)
	cancel()
	<-done
}
