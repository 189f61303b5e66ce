// Package bootstrap keeps a node connected to a fixed set of peers: it
// connects to each, retrying with exponential back-off and jitter until
// the peer answers, and reconnects whenever the peer goes down. Peers
// are dial strings (package dialaddr); a DNS name is resolved again
// before every attempt, so a peer whose address changes is followed.
//
// A Keeper (or Keep) runs one goroutine per peer and one that watches the
// mesh's peer events; all end when its context ends. Keeper.Status says
// how each peer fares: up, or why the last attempt failed and when the
// next starts.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/netmesh/netmesh/dialaddr"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/backoff"
	"github.com/netmesh/netmesh/mesh"
)

// Defaults for the zero values of Options.
const (
	// DefaultConnectTimeout bounds one connection attempt to a peer,
	// every address of its name included.
	DefaultConnectTimeout = 20 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound the wait between
	// failed attempts: it doubles after each failure, with ±25% jitter so
	// that nodes that restart together do not retry in step.
	DefaultBackoffMin = 500 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
	// DefaultRecheck is how often a keeper looks at its peer even without
	// a peer event: the mesh drops events for a watcher that falls
	// behind.
	DefaultRecheck = 10 * time.Second
)

// Options configures Keep. The zero value of every field is a documented
// default.
type Options struct {
	// ConnectTimeout bounds one attempt. 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between failed attempts.
	// 0 means DefaultBackoffMin and DefaultBackoffMax.
	BackoffMin, BackoffMax time.Duration
	// Recheck is how often a connected peer is checked without an
	// event. 0 means DefaultRecheck.
	Recheck time.Duration
	// Resolver resolves the peers' DNS names. Nil means
	// net.DefaultResolver.
	Resolver *net.Resolver
	// Logger receives a line when a peer comes up, is unreachable (with
	// the error and the wait before the next attempt) or goes down. Nil
	// discards them.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.Recheck == 0 {
		o.Recheck = DefaultRecheck
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Keep keeps a session up with each of peers until ctx ends, then
// returns: New(m, peers, opts).Run(ctx).
func Keep(ctx context.Context, m *mesh.Mesh, peers []dialaddr.Addr, opts Options) {
	New(m, peers, opts).Run(ctx)
}

// Keeper keeps a session up with each of a fixed set of peers, and says
// how each fares (Status). A peer with an address is connected to there
// (pinned to its key or id if the dial string has one); a peer with only
// a pin is reached by NodeID through routes and relays
// (mesh.ConnectNode).
type Keeper struct {
	m       *mesh.Mesh
	opts    Options
	keepers []*keeper
}

// New returns a keeper of peers on m; Run keeps them.
func New(m *mesh.Mesh, peers []dialaddr.Addr, opts Options) *Keeper {
	opts.setDefaults()
	k := &Keeper{m: m, opts: opts}
	for _, a := range peers {
		k.keepers = append(k.keepers, &keeper{m: m, peer: a, wake: make(chan struct{}, 1), opts: &k.opts})
	}
	return k
}

// PeerStatus is how one kept peer fares.
type PeerStatus struct {
	// Peer is the peer as configured.
	Peer dialaddr.Addr
	// ID is the NodeID of the node the last session was with, else the
	// pinned one; zero when neither is known.
	ID identity.NodeID
	// Up reports a session up now.
	Up bool
	// Err is why the last attempt failed, while the peer is not up; nil
	// before the first attempt ended, and once up.
	Err error
	// Retry is when the next attempt starts, while one waits; zero
	// otherwise.
	Retry time.Time
}

// Status returns how each peer fares, in the order given to New.
func (k *Keeper) Status() []PeerStatus {
	out := make([]PeerStatus, len(k.keepers))
	for i, kp := range k.keepers {
		out[i] = kp.status()
	}
	return out
}

// Run keeps the sessions up until ctx ends, then returns. It runs one
// goroutine per peer and one that watches the mesh's peer events.
func (k *Keeper) Run(ctx context.Context) {
	if len(k.keepers) == 0 {
		return
	}
	// Each keeper checks its own peer when any peer goes down; a
	// one-slot channel coalesces bursts of events.
	events := k.m.WatchPeers(ctx) // before the first connect: no event is missed
	var wg sync.WaitGroup
	wg.Go(func() {
		for ev := range events {
			if ev.Up {
				continue
			}
			for _, kp := range k.keepers {
				select {
				case kp.wake <- struct{}{}:
				default:
				}
			}
		}
	})
	for _, kp := range k.keepers {
		wg.Go(func() { kp.run(ctx) })
	}
	wg.Wait()
}

// keeper keeps the session with one peer up.
type keeper struct {
	m    *mesh.Mesh
	peer dialaddr.Addr
	wake chan struct{}
	opts *Options

	mu    sync.Mutex // guards the fields below
	last  *mesh.Peer // the peer of the last session
	err   error      // the last attempt's failure, until a success
	retry time.Time  // the next attempt, while one waits
}

// status reports how the peer fares.
func (kp *keeper) status() PeerStatus {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	st := PeerStatus{Peer: kp.peer, ID: kp.peer.NodeID(), Err: kp.err, Retry: kp.retry}
	if kp.last != nil {
		st.ID, st.Up = kp.last.ID(), kp.last.IsUp()
	}
	if st.Up {
		st.Err, st.Retry = nil, time.Time{}
	}
	return st
}

// note records an attempt's outcome.
func (kp *keeper) note(p *mesh.Peer, err error, retry time.Time) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if p != nil {
		kp.last = p
	}
	kp.err, kp.retry = err, retry
}

// run keeps the session up until ctx ends.
func (k *keeper) run(ctx context.Context) {
	log := k.opts.Logger.With("peer", k.peer.String())
	wait := k.opts.BackoffMin
	for ctx.Err() == nil {
		p, err := k.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := backoff.Jitter(wait)
			k.note(nil, err, time.Now().Add(d))
			log.Warn("bootstrap peer unreachable", "err", err, "retry_in", d.Round(time.Millisecond))
			if !backoff.Sleep(ctx, d) {
				return
			}
			wait = min(2*wait, k.opts.BackoffMax)
			continue
		}
		wait = k.opts.BackoffMin
		k.note(p, nil, time.Time{})
		log.Info("bootstrap peer up", "id", p.ID())
		k.watchUntilDown(ctx, p)
		if ctx.Err() == nil {
			log.Warn("bootstrap peer down, reconnecting", "id", p.ID())
		}
	}
}

// connect makes one attempt, bounded by ConnectTimeout: at the addresses
// the peer's host resolves to now, in order, or by NodeID through a relay
// when the peer has no address.
func (k *keeper) connect(ctx context.Context) (*mesh.Peer, error) {
	ctx, cancel := context.WithTimeout(ctx, k.opts.ConnectTimeout)
	defer cancel()
	a := k.peer
	if a.Host == "" {
		return k.m.ConnectNode(ctx, a.NodeID(), a.Key)
	}
	addrs, err := a.Resolve(ctx, k.opts.Resolver)
	if err != nil {
		return nil, err
	}
	pin := mesh.Pin{Key: a.Key, ID: a.NodeID()}
	var errs []error
	for i, ap := range addrs {
		// Each address gets an equal share of what is left.
		left, _ := ctx.Deadline()
		actx, acancel := context.WithTimeout(ctx, time.Until(left)/time.Duration(len(addrs)-i))
		p, err := k.m.Connect(actx, ap, pin)
		acancel()
		if err == nil {
			return p, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ap, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// watchUntilDown returns when p is down or ctx ends.
func (k *keeper) watchUntilDown(ctx context.Context, p *mesh.Peer) {
	t := time.NewTicker(k.opts.Recheck)
	defer t.Stop()
	for p.IsUp() {
		select {
		case <-ctx.Done():
			return
		case <-k.wake:
		case <-t.C:
		}
	}
}
