//go:build nat && portmap

package mesh_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/internal/netlab"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/nat"
)

// The port mapper opens its own sockets (NAT-PMP, SSDP, HTTP to the IGD)
// in the network namespace of the thread that runs it, so a mesh node
// with NATConfig.PortMap cannot share the test process with other
// namespaces. These tests run the private host as a child process (this
// test binary, TestPortMapMeshChild) under `ip netns exec`, exactly as a
// node runs on a real host behind a home router: its SSDP multicast stays
// inside the host's namespace and never reaches the machine's own
// interfaces.

// portMapChildEnv selects the child's mode: "map" or "nomap".
const portMapChildEnv = "NETMESH_PORTMAP_CHILD"

// portMapChild is the host node running in its namespace.
type portMapChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	out   bytes.Buffer // everything the child printed
	mu    sync.Mutex
	done  chan error
}

// startPortMapChild runs TestPortMapMeshChild in ns with the given mode.
func startPortMapChild(t *testing.T, ns *netlab.NS, mode string, env ...string) *portMapChild {
	t.Helper()
	c := &portMapChild{lines: make(chan string, 16), done: make(chan error, 1)}
	c.cmd = exec.Command("ip", "netns", "exec", ns.Name, os.Args[0],
		"-test.run=^TestPortMapMeshChild$", "-test.v", "-test.count=1")
	c.cmd.Env = append(append(os.Environ(), portMapChildEnv+"="+mode), env...)
	c.cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.out.Write(p)
	})
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.mu.Lock()
			c.out.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			if s, ok := strings.CutPrefix(sc.Text(), "PORTMAP "); ok {
				c.lines <- s
			}
		}
		close(c.lines)
		c.done <- c.cmd.Wait()
	}()
	t.Cleanup(func() {
		if t.Failed() {
			c.mu.Lock()
			t.Logf("the child printed:\n%s", c.out.String())
			c.mu.Unlock()
		}
		c.stdin.Close()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
		}
	})
	return c
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// next returns the child's next PORTMAP line.
func (c *portMapChild) next(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case s, ok := <-c.lines:
		if ok {
			return s
		}
	case <-time.After(within):
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Fatalf("no answer from the child within %v; it printed:\n%s", within, c.out.String())
	return ""
}

// finish tells the child to close its node and waits for it to exit.
func (c *portMapChild) finish(t *testing.T) {
	t.Helper()
	fmt.Fprintln(c.stdin, "close")
	if got := c.next(t, 10*time.Second); got != "closed" {
		t.Fatalf("child said %q, want closed", got)
	}
	c.stdin.Close()
	select {
	case err := <-c.done:
		if err != nil {
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("child: %v\n%s", err, c.out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child did not exit")
	}
}

// TestPortMapMeshMiniUPnPd: a node with NATConfig.PortMap behind a router
// running Debian's miniupnpd gets a mapping of its port (external port =
// internal port), advertises it as its reflex (override), a public node
// that never heard from it connects to it through the mapping, and Close
// removes the mapping from the router.
func TestPortMapMeshMiniUPnPd(t *testing.T) {
	lab := netlab.New(t)
	pub := lab.Public()
	pub.AddAddr("br0", "198.51.100.2/24")
	pub.AddAddr("br0", "198.51.100.3/24")
	stun := pub.StartCoturnRFC5780("198.51.100.2", "198.51.100.3", 3478)
	router, host := lab.NATRouter(pub, 1, "")
	// Like a home router: nothing unsolicited from the WAN gets in except
	// through a port mapping.
	router.Nft(`table inet wanfilter {
	chain forward {
		type filter hook forward priority filter + 10;
		iifname "wan" ct state new ct status & dnat == 0 drop
	}
}`)
	mini := router.StartMiniUPnPd(netlab.MiniUPnPdConfig{NATPMP: true, UPnP: true, STUN: stun.Addr})
	public := newNode(t, func(c *mesh.Config) { c.Conn = pub.ListenUDP("198.51.100.1:7000") })

	child := startPortMapChild(t, host, "map")
	var mapped, key string
	if _, err := fmt.Sscanf(child.next(t, 20*time.Second), "mapped %s %s", &mapped, &key); err != nil {
		t.Fatal(err)
	}
	if mapped != "198.51.100.11:7001" {
		t.Fatalf("reflex override %s, want the router's address with the node's port", mapped)
	}
	if r := mini.Redirects(); !slices.Equal(r, []string{"7001->10.0.1.2:7001"}) {
		t.Fatalf("miniupnpd redirects %v\n%s", r, mini.Rules())
	}
	pk, err := hex.DecodeString(key)
	if err != nil {
		t.Fatal(err)
	}
	// The public node reaches the private one at its advertised address:
	// the first packet is unsolicited, and only the mapping lets it in.
	p, err := public.Connect(ctxT(t), netip.MustParseAddrPort(mapped), mesh.Pin{Key: ed25519.PublicKey(pk)})
	if err != nil {
		t.Fatalf("connecting through the mapping: %v\nminiupnpd rules:\n%s", err, mini.Rules())
	}
	if rtt, err := public.Ping(ctxT(t), p); err != nil {
		t.Fatalf("ping through the mapping: %v", err)
	} else {
		t.Logf("public node -> %s through the port mapping: session up, rtt %v", mapped, rtt)
	}

	child.finish(t)
	if r := mini.Redirects(); len(r) != 0 {
		t.Fatalf("mapping leaked after Close: %v\n%s", r, mini.Rules())
	}
}

// TestPortMapMeshNeither: behind a router that speaks neither NAT-PMP nor
// UPnP, a node with NATConfig.PortMap starts without error, says why it
// has no mapping, and classifies its NAT with STUN as usual.
func TestPortMapMeshNeither(t *testing.T) {
	lab := netlab.New(t)
	pub := lab.Public()
	pub.AddAddr("br0", "198.51.100.2/24")
	pub.AddAddr("br0", "198.51.100.3/24")
	stun1 := pub.StartCoturn("198.51.100.2", 3478)
	stun2 := pub.StartCoturn("198.51.100.3", 3478)
	_, host := lab.NATRouter(pub, 1, "")
	child := startPortMapChild(t, host, "nomap", "NETMESH_PORTMAP_STUN="+stun1.Addr+","+stun2.Addr)
	got := child.next(t, 20*time.Second)
	if got != "nomap cone invalid AddrPort 198.51.100.11:7001" {
		t.Fatalf("child: %q, want no override, a cone NAT and the STUN reflex", got)
	}
	child.finish(t)
}

// TestPortMapMeshChild is the private host of the tests above, run in its
// namespace by startPortMapChild; it skips in a normal run. It starts a
// node on 10.0.1.2:7001 with NATConfig.PortMap, reports on stdout, and
// closes the node when its stdin says so.
func TestPortMapMeshChild(t *testing.T) {
	mode := os.Getenv(portMapChildEnv)
	if mode == "" {
		t.Skip("helper process for the port mapping tests")
	}
	logs := &syncBuffer{}
	m := newNode(t, func(c *mesh.Config) {
		c.ListenAddr = "10.0.1.2:7001"
		c.NAT.PortMap = true
		if s := os.Getenv("NETMESH_PORTMAP_STUN"); s != "" {
			c.NAT.STUNServers = strings.Split(s, ",")
		}
		// The logs go to the parent with the rest of the child's output,
		// which it shows only when a test fails.
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, os.Stdout), &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	switch mode {
	case "map":
		eventually(t, 15*time.Second, "a port mapping", func() bool { return m.TraversalStats().Override.IsValid() })
		fmt.Printf("PORTMAP mapped %s %x\n", m.ReflexAddr(), []byte(m.Identity().PublicKey()))
	case "nomap":
		eventually(t, 15*time.Second, "the port mapper's verdict", func() bool {
			return strings.Contains(logs.String(), nat.ReasonNoPortMapProtocol)
		})
		typ, err := m.ReclassifyNAT(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("PORTMAP nomap %s %s %s\n", typ, m.TraversalStats().Override, m.ReflexAddr())
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() && sc.Text() != "close" {
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Println("PORTMAP closed")
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
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
