package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon"
	counterdaemon "github.com/netmesh/netmesh/daemon/counter"
	"github.com/netmesh/netmesh/rpc"
)

// demoEvents is how many events flow before and after the move.
const demoEvents = 300

// demoDaemons: every node runs a daemon runtime with the counter kind, on
// its rpc server (the one in srvs, or a new one). owner spawns a counter on a node
// with a GPU (by filter, not by name); the senders deliver to it without
// pause while owner moves it to target. The receipts' sequence numbers
// and the counter's final state show what was lost, duplicated or
// reordered: nothing.
func demoDaemons(ctx context.Context, out io.Writer, nodes []*demoNode, srvs map[*demoNode]*rpc.Server, owner, target *demoNode, senders []*demoNode) error {
	fmt.Fprintln(out, "\ndaemons (stateful, placed by filter and load, moved live while events flow)")
	rts := map[*demoNode]*daemon.Runtime{}
	for _, n := range nodes {
		srv := srvs[n]
		if srv == nil {
			var err error
			if srv, err = rpc.NewServer(n.m, rpc.ServerOptions{}); err != nil {
				return err
			}
			defer srv.Close()
		}
		rt, err := daemon.NewRuntime(n.m, srv, daemon.Config{})
		if err != nil {
			return err
		}
		defer rt.Close()
		if err := rt.Register(counterdaemon.Kind()); err != nil {
			return err
		}
		rts[n] = rt
	}
	where := capability.HasTag("gpu")
	want := capability.AllOf(where, capability.HasTag(daemon.KindTagPrefix+counterdaemon.Name))
	for len(owner.m.FindNodes(want)) == 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never learned of a runtime with a GPU: %w", owner.name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	loc, err := rts[owner].Spawn(ctx, counterdaemon.Name, daemon.SpawnOptions{Where: where})
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, n := range nodes {
		names[n.m.ID().String()] = n.name
	}
	fmt.Fprintf(out, "  %s spawns a counter where %q -> daemon %s on %s\n", owner.name, where, loc.Daemon.Short(), names[loc.Node.String()])

	// The senders: two goroutines on each sender node, each adding 1 to
	// its own counter, one event after the other.
	type sender struct {
		name    string
		acked   int64
		lastSeq uint64
		err     error
	}
	var all []*sender
	var applied atomic.Int64
	var moving atomic.Bool
	var maxDuring atomic.Int64 // the longest delivery while the daemon moved, ns
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range senders {
		for g := range 2 {
			s := &sender{name: fmt.Sprintf("%s-%d", n.name, g)}
			all = append(all, s)
			event, _ := json.Marshal(counterdaemon.Event{Key: s.name, Add: 1})
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					during := moving.Load()
					start := time.Now()
					r, err := rts[n].Deliver(ctx, loc.Daemon, event)
					if err != nil {
						s.err = err
						return
					}
					if d := int64(time.Since(start)); (during || moving.Load()) && d > maxDuring.Load() {
						maxDuring.Store(d)
					}
					if r.Seq <= s.lastSeq {
						s.err = fmt.Errorf("sequence %d after %d", r.Seq, s.lastSeq)
						return
					}
					s.lastSeq = r.Seq
					s.acked++
					applied.Add(1)
				}
			})
		}
	}
	halt := func() {
		close(stop)
		wg.Wait()
	}
	wait := func(n int64) error {
		for applied.Load() < n {
			select {
			case <-ctx.Done():
				halt()
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		return nil
	}
	if err := wait(demoEvents); err != nil {
		return err
	}
	fmt.Fprintf(out, "  %d senders on %d nodes deliver without pause; %s moves the daemon to %s:\n", len(all), len(senders), owner.name, target.name)
	start := time.Now()
	moving.Store(true)
	before := applied.Load()
	rep, err := rts[owner].Migrate(ctx, loc.Daemon, target.m.ID())
	moving.Store(false)
	during := applied.Load() - before
	if err != nil {
		halt()
		return err
	}
	for _, p := range rep.Phases {
		fmt.Fprintf(out, "    %-9s %v\n", p.Phase, p.Duration.Round(time.Microsecond))
	}
	fmt.Fprintf(out, "    moved in %v; events waited at the cutover %v; %d events applied during the move\n",
		time.Since(start).Round(time.Microsecond), rep.Frozen.Round(time.Microsecond), during)
	if err := wait(applied.Load() + demoEvents); err != nil {
		return err
	}
	halt()
	for _, s := range all {
		if s.err != nil {
			return fmt.Errorf("sender %s: %w", s.name, s.err)
		}
	}
	snap, err := rts[owner].Snapshot(ctx, loc.Daemon)
	if err != nil {
		return err
	}
	values, err := counterdaemon.Values(snap.State)
	if err != nil {
		return err
	}
	var lost, dup, total int64
	for _, s := range all {
		total += s.acked
		switch v := values[s.name]; {
		case v < s.acked:
			lost += s.acked - v
		case v > s.acked:
			dup += v - s.acked
		}
	}
	fmt.Fprintf(out, "  %d events acknowledged, the daemon at sequence %d on %s: lost %d, duplicated %d, each sender's order kept\n",
		total, snap.Seq, names[rep.To.String()], lost, dup)
	fmt.Fprintf(out, "  the slowest event during the move took %v\n", time.Duration(maxDuring.Load()).Round(time.Microsecond))
	if lost != 0 || dup != 0 || uint64(total) != snap.Seq {
		return fmt.Errorf("the move lost %d and duplicated %d events", lost, dup)
	}
	return nil
}
