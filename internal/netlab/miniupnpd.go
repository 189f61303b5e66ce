package netlab

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/netmesh/netmesh/internal/testenv"
)

// MiniUPnPdConfig configures a miniupnpd started by StartMiniUPnPd.
type MiniUPnPdConfig struct {
	// WAN and LAN are the router's interfaces: "wan" and "lan" for a router
	// made by NATRouter, which is the default.
	WAN, LAN string
	// NATPMP and UPnP enable the two protocols on the LAN side.
	NATPMP, UPnP bool
	// STUN is "ip:port" of a STUN server on the public side that supports
	// RFC 5780 (see StartCoturnRFC5780). miniupnpd refuses to map while its
	// external address is in a documentation range such as the lab's
	// 198.51.100.0/24; with ext_perform_stun it asks the server instead,
	// learns that nothing filters its WAN side, and maps.
	STUN string
	// MinLifetime is the shortest lease miniupnpd grants, in seconds (its
	// min_lifetime); zero leaves miniupnpd's default (120 s). Tests that
	// watch renewals set it low.
	MinLifetime int
}

// MiniUPnPd is Debian's miniupnpd (package miniupnpd-nftables) running in
// a router namespace, offering NAT-PMP and UPnP-IGD on the LAN side and
// installing its rules in the nftables table MiniUPnPdTable.
type MiniUPnPd struct {
	ns  *NS
	cmd *exec.Cmd
	out *lockedBuffer
}

// MiniUPnPdTable is the nftables table (family inet) that StartMiniUPnPd
// creates for miniupnpd's filter and NAT chains.
const MiniUPnPdTable = "miniupnpd"

// miniupnpdRules are the chains miniupnpd's nftables backend fills: a
// forward filter and the NAT chains, jumping to the chains it manages
// (the layout of Debian's /etc/miniupnpd/nft_init.sh, which the package
// does not run by itself).
const miniupnpdRules = `table inet ` + MiniUPnPdTable + ` {
	chain forward {
		type filter hook forward priority filter; policy accept;
		jump miniupnpd
	}
	chain miniupnpd {
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump prerouting_miniupnpd
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump postrouting_miniupnpd
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
}`

// StartMiniUPnPd starts miniupnpd in the router namespace ns and stops it
// when the test ends. It skips the test if miniupnpd is not installed
// (apt-get install miniupnpd-nftables). It returns once miniupnpd listens.
// Its SSDP and NAT-PMP sockets are bound to the LAN interface inside the
// namespace, so nothing reaches the host's interfaces.
func (ns *NS) StartMiniUPnPd(cfg MiniUPnPdConfig) *MiniUPnPd {
	t := ns.lab.t
	t.Helper()
	bin, err := exec.LookPath("miniupnpd")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/miniupnpd"); err != nil {
			testenv.Missing(t, groupMiniUPnPd, "netlab: miniupnpd not installed (apt-get install miniupnpd-nftables)")
		}
		bin = "/usr/sbin/miniupnpd"
	}
	if cfg.WAN == "" {
		cfg.WAN = "wan"
	}
	if cfg.LAN == "" {
		cfg.LAN = "lan"
	}
	ns.Nft(miniupnpdRules)
	dir := t.TempDir()
	var u [16]byte
	rand.Read(u[:])
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "ext_ifname=%s\nlistening_ip=%s\nhttp_port=0\n", cfg.WAN, cfg.LAN)
	fmt.Fprintf(&conf, "enable_natpmp=%s\nenable_upnp=%s\n", yn(cfg.NATPMP), yn(cfg.UPnP))
	if cfg.STUN != "" {
		host, port, _ := strings.Cut(cfg.STUN, ":")
		fmt.Fprintf(&conf, "ext_perform_stun=yes\next_stun_host=%s\n", host)
		if port != "" {
			fmt.Fprintf(&conf, "ext_stun_port=%s\n", port)
		}
	}
	if cfg.MinLifetime > 0 {
		fmt.Fprintf(&conf, "min_lifetime=%d\n", cfg.MinLifetime)
	}
	fmt.Fprintf(&conf, "upnp_table_name=%s\nupnp_nat_table_name=%s\n", MiniUPnPdTable, MiniUPnPdTable)
	fmt.Fprintf(&conf, "secure_mode=yes\nsystem_uptime=no\nlease_file=%s\n", filepath.Join(dir, "leases"))
	fmt.Fprintf(&conf, "uuid=%x-%x-%x-%x-%x\n", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	conf.WriteString("allow 1024-65535 10.0.0.0/8 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n")
	confPath := filepath.Join(dir, "miniupnpd.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, bin, "-f", confPath, "-d", "-P", filepath.Join(dir, "miniupnpd.pid"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("netlab: starting miniupnpd: %v", err)
	}
	m := &MiniUPnPd{ns: ns, cmd: cmd, out: out}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("miniupnpd log:\n%s", out.String())
		}
	})
	ready := "HTTP listening on port"
	if cfg.NATPMP {
		ready = "Listening for NAT-PMP"
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), ready) {
		select {
		case <-exited:
			t.Fatalf("netlab: miniupnpd exited:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("netlab: miniupnpd not ready after 15s:\n%s", out.String())
		}
	}
	if cfg.STUN != "" && !strings.Contains(out.String(), "Port forwarding is now enabled") {
		t.Fatalf("netlab: miniupnpd's STUN check did not enable port forwarding (is the STUN server RFC 5780 capable?):\n%s", out.String())
	}
	return m
}

// Log returns what miniupnpd logged so far.
func (m *MiniUPnPd) Log() string { return m.out.String() }

// Rules returns miniupnpd's nftables table as nft lists it.
func (m *MiniUPnPd) Rules() string {
	m.ns.lab.t.Helper()
	return m.ns.Run("nft", "list", "table", "inet", MiniUPnPdTable)
}

// Redirects returns the UDP port forwards miniupnpd has installed, as
// "externalPort->internalIP:internalPort".
func (m *MiniUPnPd) Redirects() []string {
	m.ns.lab.t.Helper()
	var out []string
	for _, r := range redirectRE.FindAllStringSubmatch(m.Rules(), -1) {
		out = append(out, r[1]+"->"+r[2])
	}
	return out
}

// redirectRE matches a miniupnpd DNAT rule, e.g.
// `iif "wan" @nh,72,8 0x11 th dport 7001 dnat ip to 10.0.1.2:7001`.
var redirectRE = regexp.MustCompile(`(?m)^.*0x11 th dport (\d+) dnat ip to ([0-9.]+:\d+)`)
