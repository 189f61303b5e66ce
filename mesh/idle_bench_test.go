package mesh_test

import (
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// BenchmarkIdlePeer measures what a healthy idle session costs with the
// default timers: the keepalives that keep NAT mappings open and tell
// each side the other is alive. Each iteration is one second of idleness,
// so run it with -benchtime Nx. It reports, per idle peer and second,
// the bytes one node sends (UDP payload, and on the wire over IPv4 with
// the 28 bytes of IP and UDP headers) and its packets.
func BenchmarkIdlePeer(b *testing.B) {
	a, c := testnode.Start(b), testnode.Start(b)
	p := testnode.Connect(b, a, c)
	time.Sleep(time.Second) // past the handshake's own packets
	st0 := p.Stats()
	start := time.Now()
	for b.Loop() {
		time.Sleep(time.Second)
	}
	st := p.Stats()
	secs := time.Since(start).Seconds()
	pkts := float64(st.TxPackets - st0.TxPackets)
	b.ReportMetric(float64(st.TxBytes-st0.TxBytes)/secs, "payload-B/s")
	b.ReportMetric((float64(st.TxBytes-st0.TxBytes)+28*pkts)/secs, "wire-B/s")
	b.ReportMetric(pkts/secs, "pkts/s")
	b.ReportMetric(0, "ns/op")
}
