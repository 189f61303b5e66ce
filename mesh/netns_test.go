package mesh_test

import (
	"context"
	"testing"
	"time"

	"github.com/netmesh/netmesh/internal/netlab"
	"github.com/netmesh/netmesh/mesh"
)

// A worker behind a real kernel NAT dials out to a controller on the
// public side; long after the NAT's UDP timeout the controller can still
// reach it over that session, because keepalives hold the mapping open. A
// second worker without keepalives shows that the timeout is real.
func TestReverseConnectionThroughKernelNAT(t *testing.T) {
	lab := netlab.New(t)
	pub := lab.Public()
	router, host := lab.NATRouter(pub, 1, "")
	const natTimeout = 2 * time.Second
	router.Sysctl("net.netfilter.nf_conntrack_udp_timeout", "2")
	router.Sysctl("net.netfilter.nf_conntrack_udp_timeout_stream", "2")

	quiet := func(c *mesh.Config) { c.KeepaliveInterval = time.Hour }
	controller := newNode(t, quiet, func(c *mesh.Config) { c.Conn = pub.ListenUDP("198.51.100.1:7000") })
	worker := newNode(t, func(c *mesh.Config) {
		c.Conn = host.ListenUDP("10.0.1.2:0")
		c.KeepaliveInterval = natTimeout / 3
	})
	silent := newNode(t, quiet, func(c *mesh.Config) { c.Conn = host.ListenUDP("10.0.1.2:0") })

	connect(t, worker, controller, mesh.Pin{Key: controller.Identity().PublicKey()})
	connect(t, silent, controller, mesh.Pin{Key: controller.Identity().PublicKey()})
	pw := controller.Peer(worker.ID())
	eventually(t, 3*time.Second, "the controller to see the worker", func() bool { return pw != nil && pw.IsUp() })
	if got := pw.Endpoint().Addr().String(); got != "198.51.100.11" {
		t.Fatalf("controller sees the worker at %v, want the router's public address", pw.Endpoint())
	}
	ps := controller.Peer(silent.ID())

	time.Sleep(3 * natTimeout)

	exchange(t, controller, pw, worker, []byte("command for the worker"))
	controller.SendDatagram(context.Background(), ps, []byte("lost"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, _, err := silent.ReadDatagram(ctx, make([]byte, 64)); err == nil {
		t.Fatal("the NAT mapping of the worker without keepalives survived 3x its timeout: the test proves nothing")
	}
}
