package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// Timing of the bootstrap keepers. Variables so tests can shrink them.
var (
	// connectTimeout bounds one connection attempt to a bootstrap peer.
	connectTimeout = 20 * time.Second
	// backoffMin and backoffMax bound the wait between failed attempts;
	// it doubles after each failure, with ±25% jitter so that nodes that
	// restart together do not retry in step.
	backoffMin = 500 * time.Millisecond
	backoffMax = 30 * time.Second
	// recheckInterval is how often a keeper looks at its peer even without
	// a peer event: WatchPeers drops events for a watcher that falls behind.
	recheckInterval = 10 * time.Second
)

// keepPeers keeps a session up with each bootstrap peer until ctx ends:
// it connects, retrying with backoff, and reconnects when the peer goes
// down.
func keepPeers(ctx context.Context, m *mesh.Mesh, peers []bootPeer, log *slog.Logger) {
	if len(peers) == 0 {
		return
	}
	// Each keeper checks its own peer when any peer goes down; a
	// one-slot channel coalesces bursts of events.
	wake := make([]chan struct{}, len(peers))
	for i := range wake {
		wake[i] = make(chan struct{}, 1)
	}
	events := m.WatchPeers(ctx) // before the first connect: no event is missed
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev := range events {
			if ev.Up {
				continue
			}
			for _, w := range wake {
				select {
				case w <- struct{}{}:
				default:
				}
			}
		}
	})
	for i, bp := range peers {
		wg.Go(func() { keepPeer(ctx, m, bp, wake[i], log) })
	}
	wg.Wait()
}

// keepPeer keeps a session with bp up until ctx ends.
func keepPeer(ctx context.Context, m *mesh.Mesh, bp bootPeer, wake <-chan struct{}, log *slog.Logger) {
	wait := backoffMin
	for ctx.Err() == nil {
		p, err := connectPeer(ctx, m, bp)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := jitter(wait)
			log.Warn("bootstrap peer unreachable", "peer", bp, "err", err, "retry_in", d.Round(time.Millisecond))
			if !sleep(ctx, d) {
				return
			}
			wait = min(2*wait, backoffMax)
			continue
		}
		wait = backoffMin
		log.Info("bootstrap peer up", "peer", bp, "id", p.ID())
		watchUntilDown(ctx, p, wake)
		if ctx.Err() == nil {
			log.Warn("bootstrap peer down, reconnecting", "peer", bp, "id", p.ID())
		}
	}
}

// connectPeer makes one attempt: by address, or by NodeID through a relay
// when bp has no address.
func connectPeer(ctx context.Context, m *mesh.Mesh, bp bootPeer) (*mesh.Peer, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if bp.addr.IsValid() {
		return m.Connect(ctx, bp.addr, bp.pin)
	}
	return m.ConnectNode(ctx, bp.pin.ID, bp.pin.Key)
}

// watchUntilDown returns when p is down or ctx ends.
func watchUntilDown(ctx context.Context, p *mesh.Peer, wake <-chan struct{}) {
	t := time.NewTicker(recheckInterval)
	defer t.Stop()
	for p.IsUp() {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// jitter returns d ±25%.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
