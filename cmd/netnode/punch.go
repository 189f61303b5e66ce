package main

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// punchTimeout bounds one ConnectDirect: the rendezvous through the
// coordinator and the punch window (3 s by default) fit well within it.
const punchTimeout = 15 * time.Second

// punchRelayed runs in nodes built with -tags nat until ctx ends. When a
// session comes up relayed, it asks NAT traversal to make it direct, with
// the relay as coordinator; a punch that fails leaves the session relayed
// (netnode peers says why) and the NAT engine retries it with backoff. Of
// two nodes, only the one with the smaller NodeID asks, so that the two
// never start crossing introductions.
func punchRelayed(ctx context.Context, m *mesh.Mesh, log *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	self := m.ID()
	for ev := range m.WatchPeers(ctx) {
		if !ev.Up || bytes.Compare(self[:], ev.Peer[:]) > 0 {
			continue
		}
		p := m.Peer(ev.Peer)
		if p == nil || p.Via().IsZero() {
			continue
		}
		coord := m.Peer(p.Via())
		if coord == nil {
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, punchTimeout)
			defer cancel()
			switch err := m.ConnectDirect(pctx, p, coord); {
			case err == nil:
				log.Info("relayed peer is now direct", "peer", p.ID(), "addr", p.Endpoint())
			case ctx.Err() == nil:
				log.Info("peer stays relayed", "peer", p.ID(), "err", err)
			}
		})
	}
}
