package mesh_test

import (
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
)

// TestLogsReadableAsJSON runs a relayed session and a peer going down
// with every node logging JSON, and checks each line parses and each
// value prints as it does in text (no {} for a struct, no number for an
// enum).
func TestLogsReadableAsJSON(t *testing.T) {
	lc := meshtest.NewLogCheck()
	logged := func(c *mesh.Config) {
		c.Logger = lc.Logger()
		c.DeadPeerTimeout = 600 * time.Millisecond
		c.ProbeTimeout = time.Second
	}
	r := newNode(t, logged)
	b := newNode(t, logged)
	a := newNode(t, logged, func(c *mesh.Config) {
		c.Relays = []mesh.Relay{{Addr: r.Addr(), Pin: mesh.Pin{Key: r.Identity().PublicKey()}}}
	})
	connect(t, b, r, mesh.Pin{})
	eventually(t, 5*time.Second, "a to reach its relay", func() bool { p := a.Peer(r.ID()); return p != nil && p.IsUp() })
	pb, err := a.ConnectNode(ctxT(t), b.ID(), b.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, a, pb, b, []byte("logged"))
	r.Close()
	eventually(t, 10*time.Second, "b to see the relay down", func() bool { return !b.Peer(r.ID()).IsUp() })
	recs := lc.Check(t)
	if len(recs) == 0 {
		t.Fatal("nothing was logged")
	}
	t.Logf("%d JSON log lines checked", len(recs))
}
