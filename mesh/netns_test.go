package mesh_test

import (
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"strings"
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

// Issue 3: a 64 MiB reliable transfer between two hosts joined by a veth
// whose kernel drops 2% of the UDP packets it receives (nftables numgen;
// these kernels have no netem) arrives intact. With UDP GSO the input hook
// sees whole send batches, so the kernel drops bursts of datagrams (about
// 2.5% of them in all): harsher than independent loss.
func TestStreamOverKernelLoss(t *testing.T) {
	lab := netlab.New(t)
	h1, h2 := lab.NS("s1"), lab.NS("s2")
	lab.Link(h1, "eth0", "10.9.0.1/24", h2, "eth0", "10.9.0.2/24")
	for _, h := range []*netlab.NS{h1, h2} {
		h.Nft(`table inet loss {
	chain input {
		type filter hook input priority 0;
		meta l4proto udp numgen random mod 100 < 2 counter drop
	}
}`)
	}
	a := newNode(t, func(c *mesh.Config) { c.Conn = h1.ListenUDP("10.9.0.1:7000") })
	b := newNode(t, func(c *mesh.Config) { c.Conn = h2.ListenUDP("10.9.0.2:7000") })
	pb := connect(t, a, b, mesh.Pin{Key: b.Identity().PublicKey()})

	const size = 64 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := a.OpenStream(ctx, pb, mesh.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 1 << 20
	want := sha256.New()
	got := make(chan [sha256.Size]byte, 1)
	go func() {
		rs, _, err := b.AcceptStream(ctx)
		if err != nil {
			got <- [sha256.Size]byte{}
			return
		}
		h := sha256.New()
		for msg, err := range rs.Messages(ctx) {
			if err != nil {
				break
			}
			h.Write(msg)
		}
		got <- [sha256.Size]byte(h.Sum(nil))
	}()
	start := time.Now()
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, chunk)
	for sent := 0; sent < size; sent += chunk {
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		want.Write(buf)
		if err := s.SendBlocking(ctx, buf); err != nil {
			t.Fatalf("send at %d MiB: %v", sent>>20, err)
		}
	}
	if err := s.CloseContext(ctx); err != nil {
		t.Fatalf("close: %v (%+v)", err, s.Stats())
	}
	if sum := <-got; sum != [sha256.Size]byte(want.Sum(nil)) {
		t.Fatal("the transfer arrived corrupted or incomplete")
	}
	d := time.Since(start)
	drops := h2.Run("nft", "list", "chain", "inet", "loss", "input")
	st := s.Stats()
	t.Logf("%d MiB in %v (%.1f MB/s) through 2%% kernel loss; %d retransmits; receiver's drop rule: %s",
		size>>20, d.Round(time.Millisecond), float64(size)/d.Seconds()/1e6, st.Retransmits, strings.TrimSpace(drops[strings.Index(drops, "counter"):]))
	if st.Retransmits == 0 {
		t.Fatal("no retransmissions: the loss rule did not bite, so the test proves nothing")
	}
}

// Path MTU discovery over real interfaces: between two namespaces joined
// by a 9000-byte veth, stream fragments grow to what a jumbo frame
// carries; when a router with a 1500-byte link sits between hosts whose
// own links carry 9000 bytes, the kernel refuses nothing locally, the
// router drops the large probes (don't-fragment is set), and the search
// settles within the resolution below what 1500 bytes carry.
func TestStreamPathMTUOverVeth(t *testing.T) {
	const overhead = 20 + 8 + 32 + 2 // IPv4, UDP, data packet, frame header
	for _, tc := range []struct {
		name   string
		routed bool
		want   int // the largest frame the path carries
	}{
		{"jumbo", false, 9000 - overhead},
		{"1500-byte hop", true, 1500 - overhead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.New(t)
			h1, h2 := lab.NS("m1"), lab.NS("m2")
			addr1, addr2 := "10.7.0.1", "10.7.0.2"
			if tc.routed {
				r := lab.NS("mr")
				lab.Link(h1, "eth0", "10.7.1.1/24", r, "eth1", "10.7.1.254/24")
				lab.Link(r, "eth2", "10.7.2.254/24", h2, "eth0", "10.7.2.1/24")
				r.Sysctl("net.ipv4.ip_forward", "1")
				for _, ifc := range []string{"eth1", "eth2"} {
					r.Run("ip", "link", "set", ifc, "mtu", "9000")
				}
				r.Run("ip", "link", "set", "eth2", "mtu", "1500")
				h1.Route("10.7.1.254")
				h2.Route("10.7.2.254")
				addr1, addr2 = "10.7.1.1", "10.7.2.1"
			} else {
				lab.Link(h1, "eth0", "10.7.0.1/24", h2, "eth0", "10.7.0.2/24")
			}
			h1.Run("ip", "link", "set", "eth0", "mtu", "9000")
			h2.Run("ip", "link", "set", "eth0", "mtu", "9000")
			a := newNode(t, func(c *mesh.Config) { c.Conn = h1.ListenUDP(addr1 + ":7000") })
			b := newNode(t, func(c *mesh.Config) { c.Conn = h2.ListenUDP(addr2 + ":7000") })
			pb := connect(t, a, b, mesh.Pin{Key: b.Identity().PublicKey()})
			const resolution = 32 // the search's resolution (stream.pmtuResolution)
			// Probes ride on demand and a lost one waits three RTOs:
			// transfer until the search has settled.
			deadline := time.Now().Add(30 * time.Second)
			for {
				transfer(t, a, b, pb, []int{256 << 10}, 8, nil)
				got := pb.Stats().StreamMTU
				if got > tc.want {
					t.Fatalf("stream MTU %d: larger than the path carries (%d)", got, tc.want)
				}
				if got > tc.want-resolution {
					t.Logf("stream MTU %d, path carries %d", got, tc.want)
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("stream MTU %d after 30 s, want within %d below %d", got, resolution, tc.want)
				}
			}
		})
	}
}
