package mesh

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh/udp"
	"github.com/netmesh/netmesh/mesh/wire"
)

// Flood benchmarks: what an unpaced flood from one socket leaves the
// node it hits. The flooder is a child process (this test binary, run
// with floodEnv set), so its CPU is not the node's; it sends one packet
// per datagram (no GSO) from one socket, as fast as sendmmsg goes.
//
//	go test -run '^$' -bench 'Flood' -count 6 ./mesh/ | benchstat -col /target -
//
// BenchmarkFloodStream compares a stream's throughput while the flood
// hits the node (target=node) with the same flood sent to a socket nobody
// reads (target=sink), which costs the machine the flooder's CPU and
// nothing else: the ratio is what the node's handling of the flood costs
// the stream. BenchmarkFloodDiscard reports what one flood packet costs an
// idle node's CPU (cpu-ns/pkt, from getrusage).

// floodEnv carries a child flooder's orders: kind, target address, the
// target's public key in hex (for handshake floods) and its index tag
// in hex (for data-tagged floods).
const floodEnv = "NETMESH_TEST_FLOOD"

// FloodChild runs this process as a flooder if floodEnv says so, until
// its standard input closes, and reports whether it did. TestMain calls
// it first.
func FloodChild() bool {
	spec := os.Getenv(floodEnv)
	if spec == "" {
		return false
	}
	var kind, target, key string
	var tag uint32
	fmt.Sscanf(spec, "%s %s %s %x", &kind, &target, &key, &tag)
	pkts := floodPackets(kind, key, tag)
	lc := udp.ListenConfig{DisableGSO: true}
	c, err := lc.Listen("udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return true
	}
	dst := netip.MustParseAddrPort(target)
	msgs := make([]udp.Message, 64)
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	for n := 0; ; {
		select {
		case <-stop:
			return true
		default:
		}
		for i := range msgs {
			msgs[i] = udp.Message{Buf: pkts[n%len(pkts)], Addr: dst}
			n++
		}
		c.WriteBatch(msgs)
	}
}

// floodPackets returns the packets of a flood of kind: "handshake",
// valid-looking IK initiations to the holder of key (hex); "junk", random
// bytes of no netmesh type; "data", data packets naming no session, their
// receiver index random; "data-tagged", the same with the target's index
// tag in the index, as an attacker who saw the node's traffic can send.
func floodPackets(kind, key string, tag uint32) [][]byte {
	pkts := make([][]byte, 64)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range pkts {
		if kind == "handshake" {
			pub, _ := hex.DecodeString(key)
			pkts[i] = ikInitiation(nil, pub, uint32(i+1))
			continue
		}
		p := make([]byte, 100+rnd.IntN(1000))
		for j := range p {
			p[j] = byte(rnd.Uint32())
		}
		switch kind {
		case "junk":
			p[0] = 0x42
		case "data":
			wire.PutDataHeader(p, wire.DataHeader{Receiver: rnd.Uint32(), Counter: rnd.Uint64()})
		case "data-tagged":
			wire.PutDataHeader(p, wire.DataHeader{Receiver: rnd.Uint32()&^indexTagMask | tag, Counter: rnd.Uint64()})
		}
		pkts[i] = p
	}
	return pkts
}

// startFlood starts a child flooder of kind against target; stop ends it.
func startFlood(b *testing.B, kind string, target *Mesh, to netip.AddrPort) (stop func()) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s %08x", floodEnv, kind, to, hex.EncodeToString(target.id.PublicKey()), target.tr.indexTag))
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return func() {
		in.Close()
		cmd.Wait()
	}
}

// sink is a UDP socket nobody reads.
func sink(b *testing.B) netip.AddrPort {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// floodCounted returns the node's drops that a flood of kind causes.
func floodCounted(m *Mesh, kind string) uint64 {
	switch kind {
	case "handshake":
		return drops(m, DropRateLimited) + drops(m, DropCookieRequired) + drops(m, DropQueueFull) + drops(m, DropStaleInitiation)
	case "junk", "data": // the socket's filter drops them
		var n uint64
		for _, s := range m.tr.socks {
			n += s.conn.(interface{ Stats() udp.Stats }).Stats().Dropped
		}
		return n
	}
	return drops(m, DropUnknownIndex)
}

func BenchmarkFloodStream(b *testing.B) {
	for _, kind := range []string{"handshake", "junk", "data", "data-tagged"} {
		for _, target := range []string{"sink", "node"} {
			b.Run("flood="+kind+"/target="+target, func(b *testing.B) {
				a, v, pv := pair(b)
				to := sink(b)
				if target == "node" {
					to = v.Addr()
				}
				stop := startFlood(b, kind, v, to)
				defer stop()
				if target == "node" {
					waitFlood(b, v, kind)
				} else {
					time.Sleep(200 * time.Millisecond) // the flooder is up
				}
				var connect time.Duration
				if kind == "handshake" {
					c := startNodeAt(b, "127.0.0.2")
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					start := time.Now()
					_, err := c.Connect(ctx, v.Addr(), Pin{Key: v.id.PublicKey()})
					cancel()
					if err != nil {
						b.Fatalf("newcomer: %v", err)
					}
					connect = time.Since(start)
				}
				bulk(b, a, pv, v)
				if kind == "handshake" {
					b.ReportMetric(float64(connect.Microseconds())/1000, "connect-ms")
				}
			})
		}
	}
}

// waitFlood waits until the flood reaches m.
func waitFlood(b *testing.B, m *Mesh, kind string) {
	deadline := time.Now().Add(10 * time.Second)
	for before := floodCounted(m, kind); floodCounted(m, kind) < before+1000; {
		if time.Now().After(deadline) {
			b.Fatal("the flood never reached the node")
		}
		time.Sleep(time.Millisecond)
	}
}

// bulk moves b.N 16 KiB messages from a to v on one reliable stream.
func bulk(b *testing.B, a *Mesh, pv *Peer, v *Mesh) {
	const size = 16 << 10
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := a.OpenStream(ctx, pv, StreamConfig{})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		rs, _, err := v.AcceptStream(ctx)
		if err != nil {
			done <- err
			return
		}
		buf := make([]byte, 0, size)
		for range b.N {
			if buf, err = rs.ReadMessage(ctx, buf); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	msg := make([]byte, size)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		if err := s.SendBlocking(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	s.Reset(0)
}

func BenchmarkFloodDiscard(b *testing.B) {
	for _, kind := range []string{"handshake", "junk", "data", "data-tagged"} {
		b.Run("flood="+kind, func(b *testing.B) {
			v := startNode(b)
			stop := startFlood(b, kind, v, v.Addr())
			defer stop()
			waitFlood(b, v, kind)
			b.ResetTimer()
			u0, s0 := cpuTime()
			n0 := floodCounted(v, kind)
			for floodCounted(v, kind) < n0+uint64(b.N) {
				time.Sleep(time.Millisecond)
			}
			u1, s1 := cpuTime()
			n := float64(floodCounted(v, kind) - n0)
			b.StopTimer()
			b.ReportMetric(float64((u1-u0+s1-s0).Nanoseconds())/n, "cpu-ns/pkt")
			b.ReportMetric(float64((u1-u0).Nanoseconds())/n, "user-ns/pkt")
		})
	}
}
