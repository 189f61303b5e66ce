package netlab

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/netmesh/netmesh/internal/testenv"
)

// Coturn is a coturn STUN server (Debian's turnserver, in STUN-only mode)
// running in a namespace.
type Coturn struct {
	// Addr is the server's address, "ip:port".
	Addr string
	cmd  *exec.Cmd
	out  *lockedBuffer
}

// StartCoturn starts turnserver in STUN-only mode listening on ip:port
// inside the namespace and stops it when the test ends. It skips the test
// if turnserver is not installed (apt-get install coturn). It returns once
// the server answers a STUN Binding request.
func (ns *NS) StartCoturn(ip string, port int) *Coturn { return ns.startCoturn(port, ip) }

// StartCoturnRFC5780 is StartCoturn on two addresses of the namespace, ip
// and altIP, so that the server answers RFC 5780 CHANGE-REQUESTs (NAT
// behaviour discovery), which miniupnpd's ext_perform_stun check needs.
func (ns *NS) StartCoturnRFC5780(ip, altIP string, port int) *Coturn {
	return ns.startCoturn(port, ip, altIP)
}

// startCoturn starts turnserver listening on port of every address in
// ips; Addr is the first.
func (ns *NS) startCoturn(port int, ips ...string) *Coturn {
	t := ns.lab.t
	t.Helper()
	if _, err := exec.LookPath("turnserver"); err != nil {
		testenv.Missing(t, groupCoturn, "netlab: turnserver not installed (apt-get install coturn)")
	}
	dir := t.TempDir()
	out := &lockedBuffer{}
	args := []string{"netns", "exec", ns.Name, "turnserver",
		"--stun-only", "--no-cli", "--no-tls", "--no-dtls", "-n",
		"--listening-port", fmt.Sprint(port),
		"--pidfile", filepath.Join(dir, "turnserver.pid"),
		"--log-file", "stdout", "--simple-log"}
	for _, ip := range ips {
		args = append(args, "--listening-ip", ip)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("netlab: starting turnserver: %v", err)
	}
	c := &Coturn{Addr: fmt.Sprintf("%s:%d", ips[0], port), cmd: cmd, out: out}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if err := ns.waitSTUN(c.Addr, 10*time.Second); err != nil {
		t.Fatalf("netlab: turnserver does not answer: %v\n%s", err, out.String())
	}
	return c
}

// waitSTUN sends STUN Binding requests to addr from inside the namespace
// until one is answered.
func (ns *NS) waitSTUN(addr string, within time.Duration) error {
	dst, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return err
	}
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", nil)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	// A Binding request: type 0x0001, length 0, the magic cookie and a
	// transaction id (RFC 5389 section 6).
	req := []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 'n', 'e', 't', 'l', 'a', 'b', 'w', 'a', 'i', 't', '0', '1'}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if _, err := c.WriteToUDP(req, dst); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := c.ReadFromUDP(buf)
		if err == nil && n >= 20 && bytes.Equal(buf[8:20], req[8:20]) {
			return nil
		}
	}
	return fmt.Errorf("no STUN answer from %s within %v", addr, within)
}

// Log returns what the server logged so far.
func (c *Coturn) Log() string { return c.out.String() }

// lockedBuffer is a bytes.Buffer safe for a writer process and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
