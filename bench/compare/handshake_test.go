package compare

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// handshakeChunk is how many handshakes each client runs between untimed
// set-up and tear-down.
const handshakeChunk = 16

// handshakeTimeout bounds one run of netmesh handshakes (about a second of
// them at the default -benchtime), so a lost handshake cannot hang it.
const handshakeTimeout = 5 * time.Minute

// BenchmarkHandshake measures full handshakes between clients and servers
// that have never met. ns/op is the wall time per handshake; handshakes/s
// the rate. With conc=1 handshakes run one after another, so ns/op is the
// latency of the client's call (quic-go Dial, netmesh Connect) until it can
// send application data. With conc=8 eight clients handshake at once, which
// measures how many handshakes the machine completes per second (both
// sides run on the same two cores). Starting fresh netmesh nodes and
// closing connections is not timed.
//
//   - quic: TLS 1.3 with crypto/tls's default key exchange
//     (X25519MLKEM768), no session resumption, ECDSA P-256 certificate
//     verified by the client; one server, one client transport.
//   - quic-x25519: the same with the key exchange restricted to X25519,
//     the curve Noise IK uses.
//   - netmesh: Noise IK with ed25519 identity signatures both ways, each
//     handshake between a fresh pair of nodes (a node connects to a given
//     peer once).
//   - netmesh-cert: the same in a closed mesh: each node presents a
//     membership certificate and checks its peer's. The certificate's
//     signature stands in for the identity signature, so each side still
//     checks one signature; what a closed mesh adds is the certificate in
//     both messages and its checks (`benchstat -col /impl` compares the
//     two).
func BenchmarkHandshake(b *testing.B) {
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			b.Run("impl=quic", func(b *testing.B) { quicHandshakes(b, conc, quicTLS(nil)) })
			b.Run("impl=quic-x25519", func(b *testing.B) { quicHandshakes(b, conc, quicTLS([]tls.CurveID{tls.X25519})) })
			b.Run("impl=netmesh", func(b *testing.B) { meshHandshakes(b, conc, nil) })
			b.Run("impl=netmesh-cert", func(b *testing.B) { meshHandshakes(b, conc, newAuthority(b)) })
		})
	}
}

func newAuthority(b *testing.B) *identity.Identity {
	ca, err := identity.Generate()
	if err != nil {
		b.Fatal(err)
	}
	return ca
}

// member makes a node a member of ca's closed mesh (nil: an open one).
func member(b *testing.B, ca *identity.Identity) func(*mesh.Config) {
	return func(c *mesh.Config) {
		if ca == nil {
			return
		}
		c.Identity, _ = identity.Generate()
		cert, err := identity.IssueCertificate(ca, identity.CertificateTemplate{
			NodeKey: c.Identity.PublicKey(), Name: "bench", Groups: []string{"bench"}, NotAfter: time.Now().Add(time.Hour),
		})
		if err != nil {
			b.Fatal(err)
		}
		c.Membership.Authorities = []ed25519.PublicKey{ca.PublicKey()}
		c.Membership.Certificate = cert
	}
}

// runHandshakes runs b.N handshakes, conc at a time, in chunks: setup(k)
// prepares k handshakes untimed, run(i) performs handshake i of the chunk
// (timed, from conc goroutines), teardown releases the chunk untimed.
// Besides the wall time it reports cpu-ns/op, the process's CPU time
// (user and system, both sides of the handshake) per handshake while
// timed, which other jobs on a shared machine disturb far less.
func runHandshakes(b *testing.B, conc int, setup func(k int), run func(i int) error, teardown func()) {
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	var cpu time.Duration
	for done := 0; done < b.N; {
		k := min(handshakeChunk*conc, b.N-done)
		setup(k)
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, conc)
		b.StartTimer()
		cpu0 := cpuTime(b)
		for range min(conc, k) {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= k {
						return
					}
					if err := run(i); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		cpu += cpuTime(b) - cpu0
		b.StopTimer()
		teardown()
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		done += k
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func quicHandshakes(b *testing.B, conc int, tc tlsPair) {
	srv := newQUICServer(b, tc)
	defer srv.close()
	ctr := newQUICClient(b)
	defer ctr.Close()
	// quic-go bounds a stuck Dial itself (HandshakeIdleTimeout, 5 s).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Accept keeps the listener's queue from filling. The server side is
	// not closed here: closing it at once can race the client's Dial and
	// fail it; the client's close in the untimed tear-down ends both sides.
	go func() {
		for {
			if _, err := srv.ln.Accept(ctx); err != nil {
				return
			}
		}
	}()
	conns := make([]*quic.Conn, handshakeChunk*conc)
	runHandshakes(b, conc,
		func(int) {},
		func(i int) error {
			c, err := ctr.Dial(ctx, srv.ln.Addr(), tc.client, quicConfig)
			conns[i] = c
			return err
		},
		func() {
			for i, c := range conns {
				if c != nil {
					c.CloseWithError(0, "")
					conns[i] = nil
				}
			}
		})
}

func meshHandshakes(b *testing.B, conc int, ca *identity.Identity) {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	var ini, res []*mesh.Mesh
	var retries uint64
	runHandshakes(b, conc,
		func(k int) {
			for range k {
				ini = append(ini, testnode.Start(b, member(b, ca)))
				res = append(res, testnode.Start(b, member(b, ca)))
			}
		},
		func(i int) error {
			_, err := ini[i].Connect(ctx, res[i].Addr(), mesh.Pin{Key: res[i].Identity().PublicKey()})
			return err
		},
		func() {
			for i := range ini {
				retries += ini[i].Stats().HandshakesInitiated - 1
				ini[i].Close()
				res[i].Close()
			}
			ini, res = ini[:0], res[:0]
		})
	// Initiations resent after HandshakeRetransmit (1 s) without an
	// answer: each is a one-second outlier in ns/op.
	b.ReportMetric(float64(retries)/float64(b.N), "retransmits/op")
}
