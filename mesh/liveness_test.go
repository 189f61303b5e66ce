package mesh_test

import (
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// TestSilentDeathDetected: with the default timers, an idle peer that is
// killed (no goodbye) or whose cable is pulled is probed and taken down
// by the failure detector, in about 4 s; before it, a silent peer was
// re-handshaken after 45 s and down only when that gave up, 15 s later.
func TestSilentDeathDetected(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(b *mesh.Mesh, fa, fb *meshtest.FaultConn)
	}{
		{"killed", func(b *mesh.Mesh, _, _ *meshtest.FaultConn) { b.Close() }},
		{"cable pulled", func(b *mesh.Mesh, fa, fb *meshtest.FaultConn) {
			fa.Block(b.Addr())
			fb.Block(fa.LocalAddr())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fa := meshtest.Listen(t, meshtest.Options{})
			fb := meshtest.Listen(t, meshtest.Options{})
			a := testnode.Start(t, func(c *mesh.Config) { c.Conn = fa })
			b := testnode.Start(t, func(c *mesh.Config) { c.Conn = fb })
			testnode.Connect(t, a, b)
			ea, eb := peerEvents(t, a), peerEvents(t, b)
			// Idle for a while: keepalives only.
			eventually(t, 10*time.Second, "a keepalive round trip", func() bool {
				return a.Peer(b.ID()).Stats().RxPackets >= 3
			})
			start := time.Now()
			tc.kill(b, fa, fb)
			check := func(who string, ev mesh.PeerEvent) {
				if !strings.HasPrefix(ev.Reason, "no answer to ") {
					t.Fatalf("%s: down because %q, want unanswered probes", who, ev.Reason)
				}
				t.Logf("%s: down after %v: %s", who, time.Since(start).Round(10*time.Millisecond), ev.Reason)
			}
			check("a sees b", nextDown(t, ea, b.ID()))
			if tc.name == "cable pulled" {
				// Of the two, one keeps the idle session alive with its
				// pings and the other answers; both notice.
				check("b sees a", nextDown(t, eb, a.ID()))
			}
		})
	}
}
