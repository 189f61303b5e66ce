// Package netlab builds small networks of Linux network namespaces for
// tests: hosts joined by veth pairs, nftables rules for NAT and packet
// loss, and UDP sockets opened inside a namespace so one test process can
// run nodes on several hosts.
//
// Every lab is private to the test that made it: namespace names carry the
// test process id and a counter, and Cleanup deletes them. A test that
// cannot build a lab (not Linux, not root, no ip or nft) is skipped with a
// message that says what is missing, or fails under CI=true, where every
// tool is installed.
package netlab

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/netmesh/netmesh/internal/testenv"
	"github.com/netmesh/netmesh/mesh/udp"
)

var labCount atomic.Int64

// Lab is a set of namespaces owned by one test.
type Lab struct {
	t      testing.TB
	prefix string
}

// NS is one network namespace: a host or a router.
type NS struct {
	lab  *Lab
	Name string
}

// New returns an empty lab, or skips the test if namespaces cannot be made
// here. It needs root and the ip and nft commands.
func New(t testing.TB) *Lab {
	t.Helper()
	if runtime.GOOS != "linux" {
		testenv.Missing(t, groupNamespaces, "netlab: network namespaces need Linux")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, groupNamespaces, "netlab: network namespaces need root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, groupNamespaces, "netlab: %s not installed (apt-get install iproute2 nftables)", tool)
		}
	}
	l := &Lab{t: t, prefix: fmt.Sprintf("nm%d-%d", os.Getpid(), labCount.Add(1))}
	probe := l.prefix + "-probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		testenv.Missing(t, groupNamespaces, "netlab: cannot create a network namespace: %v: %s", err, out)
	}
	exec.Command("ip", "netns", "del", probe).Run()
	return l
}

// NS creates a namespace with its loopback up.
func (l *Lab) NS(name string) *NS {
	l.t.Helper()
	ns := &NS{lab: l, Name: l.prefix + "-" + name}
	l.run("ip", "netns", "add", ns.Name)
	l.t.Cleanup(func() { exec.Command("ip", "netns", "del", ns.Name).Run() })
	ns.Run("ip", "link", "set", "lo", "up")
	return ns
}

// Link joins a and b with a veth pair: interface aIf in a with address
// aAddr and bIf in b with bAddr (CIDR notation, e.g. "10.0.0.1/24").
func (l *Lab) Link(a *NS, aIf, aAddr string, b *NS, bIf, bAddr string) {
	l.t.Helper()
	l.run("ip", "-n", a.Name, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	for _, end := range []struct {
		ns        *NS
		ifc, addr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if end.addr != "" {
			end.ns.Run("ip", "addr", "add", end.addr, "dev", end.ifc)
		}
		end.ns.Run("ip", "link", "set", end.ifc, "up")
	}
}

func (l *Lab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("netlab: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Run runs a command inside the namespace and returns its output; it fails
// the test if the command fails.
func (ns *NS) Run(args ...string) string {
	ns.lab.t.Helper()
	return ns.lab.run(append([]string{"ip", "netns", "exec", ns.Name}, args...)...)
}

// Sysctl sets a sysctl inside the namespace.
func (ns *NS) Sysctl(key, value string) {
	ns.lab.t.Helper()
	ns.Run("sysctl", "-q", "-w", key+"="+value)
}

// Nft loads an nftables ruleset into the namespace.
func (ns *NS) Nft(ruleset string) {
	ns.lab.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		ns.lab.t.Fatalf("netlab: nft in %s: %v\n%s\nruleset:\n%s", ns.Name, err, out, ruleset)
	}
}

// Route adds a default route via gw inside the namespace.
func (ns *NS) Route(gw string) {
	ns.lab.t.Helper()
	ns.Run("ip", "route", "add", "default", "via", gw)
}

// ListenUDP opens a batched UDP socket at addr inside the namespace and
// closes it when the test ends.
func (ns *NS) ListenUDP(addr string) *udp.BatchConn {
	ns.lab.t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ns.lab.t.Fatal(err)
	}
	network := "udp4"
	if ap.Addr().Is6() {
		network = "udp6"
	}
	var c *udp.BatchConn
	if err := ns.Do(func() (err error) {
		c, err = udp.Listen(network, ap)
		return err
	}); err != nil {
		ns.lab.t.Fatalf("netlab: listen %s in %s: %v", addr, ns.Name, err)
	}
	ns.lab.t.Cleanup(func() { c.Close() })
	return c
}

// Skip groups: what a newcomer loses when a tool the lab needs is missing.
const (
	groupNamespaces = "kernel NAT and real packet loss (network namespaces)"
	groupCoturn     = "STUN against a real server (coturn)"
	groupMiniUPnPd  = "port mapping against a real router (miniupnpd)"
)

// PublicNet is the address range of the lab's public segment.
const PublicNet = "198.51.100.0/24"

// Public creates the public segment: a namespace with a bridge, br0, that
// holds 198.51.100.1/24 and any addresses added with AddAddr. Public nodes
// (relays, STUN servers) listen there; NAT routers attach their WAN side to
// the bridge.
func (l *Lab) Public() *NS {
	l.t.Helper()
	pub := l.NS("pub")
	pub.Run("ip", "link", "add", "br0", "type", "bridge")
	pub.Run("ip", "addr", "add", "198.51.100.1/24", "dev", "br0")
	pub.Run("ip", "link", "set", "br0", "up")
	return pub
}

// AddAddr adds an address (CIDR) to an interface in the namespace.
func (ns *NS) AddAddr(ifc, addr string) {
	ns.lab.t.Helper()
	ns.Run("ip", "addr", "add", addr, "dev", ifc)
}

// NATRouter puts private host n behind a router that masquerades it onto
// the public segment made by Public. Addresses: router WAN 198.51.100.<10+n>,
// private network 10.0.<n>.0/24 with the router at .1 and the host at .2.
// mode is the masquerade option: "" (Linux's default keeps the source port
// when it is free and filters by address and port: a port-restricted
// cone), "random" or "fully-random" (a new port per destination:
// symmetric).
func (l *Lab) NATRouter(public *NS, n int, mode string) (router, host *NS) {
	l.t.Helper()
	router = l.NS(fmt.Sprintf("r%d", n))
	host = l.NS(fmt.Sprintf("h%d", n))
	port := fmt.Sprintf("p%d", n)
	l.Link(router, "wan", fmt.Sprintf("198.51.100.%d/24", 10+n), public, port, "")
	public.Run("ip", "link", "set", port, "master", "br0")
	l.Link(host, "eth0", fmt.Sprintf("10.0.%d.2/24", n), router, "lan", fmt.Sprintf("10.0.%d.1/24", n))
	host.Route(fmt.Sprintf("10.0.%d.1", n))
	router.Sysctl("net.ipv4.ip_forward", "1")
	router.Nft(fmt.Sprintf(`table ip nat {
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "wan" masquerade %s
	}
}`, mode))
	return router, host
}
