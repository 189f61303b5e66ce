package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon"
	counterdaemon "github.com/netmesh/netmesh/daemon/counter"
	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/identity"
)

// Daemons: the node's daemon runtime, its control methods and the daemon
// command. docs/DAEMONS.md describes the model.

// startDaemons starts the node's daemon runtime, on the rpc server the
// task layer uses, with the built-in kind counter.
func (n *node) startDaemons() error {
	cfg := n.rc.daemons
	cfg.Logger = n.rc.logger
	rt, err := daemon.NewRuntime(n.m, cmp.Or(n.srv, n.tasks.srv), cfg)
	if err != nil {
		return fmt.Errorf("daemons: %w", err)
	}
	if err := rt.Register(counterdaemon.Kind()); err != nil {
		rt.Close()
		return fmt.Errorf("daemons: %w", err)
	}
	n.daemons = rt
	return nil
}

// daemonMethods are the control methods of the daemon runtime.
func (n *node) daemonMethods() map[string]method {
	return map[string]method{
		"daemon.kinds":    n.daemonKinds,
		"daemon.list":     n.daemonList,
		"daemon.spawn":    n.daemonSpawn,
		"daemon.stop":     n.daemonStop,
		"daemon.snapshot": n.daemonSnapshot,
		"daemon.migrate":  n.daemonMigrate,
		"daemon.deliver":  n.daemonDeliver,
	}
}

// codeDaemonPrefix prefixes the control error codes of daemon errors:
// daemon_not_found, daemon_backpressure, ...
const codeDaemonPrefix = "daemon_"

// daemonError turns a daemon error into a control error with a daemon_
// code.
func daemonError(err error) error {
	var de *daemon.Error
	if errors.As(err, &de) {
		return errorf(codeDaemonPrefix+strings.ToLower(string(de.Code)), "%v", err)
	}
	return err
}

// daemonKindsResult is the result of "daemon.kinds".
type daemonKindsResult struct {
	// Here are the kinds this node runs.
	Here []string `json:"here"`
	// Nodes are the nodes that run a daemon runtime, this one included.
	Nodes []daemonNodeInfo `json:"nodes"`
}

// daemonNodeInfo is one node's kinds and daemon load.
type daemonNodeInfo struct {
	Node    identity.NodeID `json:"node"`
	Kinds   []string        `json:"kinds"`
	Running int             `json:"running"`
	Limit   int             `json:"limit"`
}

func (n *node) daemonKinds(context.Context, json.RawMessage, func(any) error) (any, error) {
	res := daemonKindsResult{Here: n.daemons.Kinds(), Nodes: []daemonNodeInfo{}}
	for _, c := range n.m.FindNodes(capability.AtLeast(daemon.LoadPrefix+".limit", 0)) {
		in := daemonNodeInfo{Node: c.ID, Kinds: []string{}}
		for _, t := range c.Set.Tags {
			if k, ok := strings.CutPrefix(t, daemon.KindTagPrefix); ok {
				in.Kinds = append(in.Kinds, k)
			}
		}
		slices.Sort(in.Kinds)
		if l, ok := placement.ParseLoad(c.Set, daemon.LoadPrefix); ok {
			in.Running, in.Limit = l.Running, l.Limit
		}
		res.Nodes = append(res.Nodes, in)
	}
	slices.SortFunc(res.Nodes, func(a, b daemonNodeInfo) int { return strings.Compare(a.Node.String(), b.Node.String()) })
	return res, nil
}

// daemonListResult is the result of "daemon.list".
type daemonListResult struct {
	Daemons []daemon.Info `json:"daemons"`
}

func (n *node) daemonList(context.Context, json.RawMessage, func(any) error) (any, error) {
	return daemonListResult{Daemons: n.daemons.List()}, nil
}

// daemonSpawnParams are the parameters of "daemon.spawn".
type daemonSpawnParams struct {
	Kind  string `json:"kind"`
	Node  string `json:"node"`  // NodeID, unique prefix, or "self"; "" places by Where
	Where string `json:"where"` // capability filter; "" matches every node
}

func (n *node) daemonSpawn(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p daemonSpawnParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.Node != "" && p.Where != "" {
		return nil, errorf(codeBadRequest, "give a node or a filter, not both")
	}
	var opts daemon.SpawnOptions
	if p.Node != "" {
		id, err := n.daemonNode(p.Node)
		if err != nil {
			return nil, err
		}
		opts.Node = id
	}
	f, err := parseFilter(p.Where)
	if err != nil {
		return nil, errorf(codeBadRequest, "where %v", err)
	}
	opts.Where = f
	loc, err := n.daemons.Spawn(ctx, p.Kind, opts)
	return loc, daemonError(err)
}

// daemonNode resolves a node name for the daemon methods: "self", or a
// NodeID or unique prefix of this node or another.
func (n *node) daemonNode(name string) (identity.NodeID, error) {
	self := n.m.ID()
	if name == "self" || name == self.String() {
		return self, nil
	}
	id, _, err := n.findNode(name)
	var ce *controlError
	if errors.As(err, &ce) && ce.Code == codeUnknownNode && strings.HasPrefix(self.String(), strings.ToLower(strings.TrimSpace(name))) {
		return self, nil
	}
	return id, err
}

// daemonIDParams are the parameters of the methods about one daemon.
type daemonIDParams struct {
	ID string `json:"id"`
}

// decodeDaemonID decodes the id of a method about one daemon.
func decodeDaemonID(raw json.RawMessage, p any, id *string) (daemon.ID, error) {
	if err := decodeParams(raw, p); err != nil {
		return daemon.ID{}, err
	}
	d, err := daemon.ParseID(*id)
	if err != nil {
		return d, errorf(codeBadRequest, "%v", err)
	}
	return d, nil
}

func (n *node) daemonStop(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p daemonIDParams
	id, err := decodeDaemonID(raw, &p, &p.ID)
	if err != nil {
		return nil, err
	}
	s, err := n.daemons.Stop(ctx, id)
	return s, daemonError(err)
}

func (n *node) daemonSnapshot(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p daemonIDParams
	id, err := decodeDaemonID(raw, &p, &p.ID)
	if err != nil {
		return nil, err
	}
	s, err := n.daemons.Snapshot(ctx, id)
	return s, daemonError(err)
}

// daemonMigrateParams are the parameters of "daemon.migrate".
type daemonMigrateParams struct {
	ID string `json:"id"`
	To string `json:"to"` // NodeID or unique prefix
}

// daemonPhase is an intermediate result of "daemon.migrate": a phase
// begins.
type daemonPhase struct {
	Phase daemon.Phase `json:"phase"`
	At    time.Time    `json:"at"`
}

// daemonMigrate moves a daemon; when it runs on this node, each phase is
// an intermediate result as it begins.
func (n *node) daemonMigrate(ctx context.Context, raw json.RawMessage, more func(any) error) (any, error) {
	var p daemonMigrateParams
	id, err := decodeDaemonID(raw, &p, &p.ID)
	if err != nil {
		return nil, err
	}
	to, err := n.daemonNode(p.To)
	if err != nil {
		return nil, err
	}
	rep, err := n.daemons.Migrate(ctx, id, to, daemon.OnPhase(func(ph daemon.Phase) {
		more(daemonPhase{Phase: ph, At: time.Now()})
	}))
	return rep, daemonError(err)
}

// daemonDeliverParams are the parameters of "daemon.deliver".
type daemonDeliverParams struct {
	ID    string          `json:"id"`
	Event json.RawMessage `json:"event"`
}

func (n *node) daemonDeliver(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p daemonDeliverParams
	id, err := decodeDaemonID(raw, &p, &p.ID)
	if err != nil {
		return nil, err
	}
	r, err := n.daemons.Deliver(ctx, id, p.Event)
	return r, daemonError(err)
}

// oneDaemonID checks that a command got exactly one argument: a daemon id.
func oneDaemonID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes one daemon id (got %d arguments)", cmd.Name(), len(args))
	}
	_, err := daemon.ParseID(args[0])
	return err
}

// newDaemon is the daemon command and its subcommands.
func newDaemon() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Spawn stateful daemons, send them events, snapshot and move them live",
		Long: `Spawn a stateful daemon on a node chosen by its kind's requirements, a
capability filter and load; send it events from any node, by id; take its
snapshot; move it to another node while events keep flowing; stop it.
Every node runs the built-in kind "counter" (events {"key": "k", "add":
n}). See docs/DAEMONS.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDaemonKinds(), newDaemonList(), newDaemonSpawn(), newDaemonStop(), newDaemonSnapshot(),
		newDaemonMigrate(), newDaemonDeliver())
	return cmd
}

func newDaemonKinds() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "kinds",
		Short: "The kinds this node runs, and the nodes that run daemons with theirs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res daemonKindsResult
			if err := o.get(cmd, "daemon.kinds", nil, &res); err != nil || o.json {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "this node runs: %s\n", strings.Join(res.Here, ", "))
			tw := newTable(out)
			fmt.Fprintln(tw, "NODE\tKINDS\tDAEMONS")
			for _, in := range res.Nodes {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\n", in.Node.Short(), strings.Join(in.Kinds, ","), in.Running, in.Limit)
			}
			return tw.Flush()
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newDaemonList() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "list",
		Short: "The daemons this node hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res daemonListResult
			if err := o.get(cmd, "daemon.list", nil, &res); err != nil || o.json {
				return err
			}
			out := cmd.OutOrStdout()
			if len(res.Daemons) == 0 {
				fmt.Fprintln(out, "no daemons")
				return nil
			}
			tw := newTable(out)
			fmt.Fprintln(tw, "ID\tKIND\tSTATE\tSEQ\tAPPLIED\tQUEUED\tOWNER\tSINCE")
			for _, in := range res.Daemons {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", in.ID, in.Kind, in.State, in.Seq, in.Applied, in.Queued,
					in.Owner.Short(), in.Since.Format(time.TimeOnly))
			}
			return tw.Flush()
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newDaemonSpawn() *cobra.Command {
	var o clientOpts
	var p daemonSpawnParams
	cmd := &cobra.Command{
		Use:   "spawn KIND [--node N | --where FILTER]",
		Short: "Start a daemon of a kind and print its id",
		Long: `Start a daemon of KIND with a fresh identity: on --node ("self" for this
node), or on the least loaded node that runs the kind and matches its
requirements and --where. This node owns it: only it (and the node
hosting it) may stop, snapshot or move it.`,
		Example: `  netnode daemon spawn counter
  netnode daemon spawn counter --where 'region:eu && !busy'
  netnode daemon spawn counter --node self --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Kind = args[0]
			if p.Where != "" {
				if _, err := parseFilter(p.Where); err != nil {
					return usageError{fmt.Errorf("--where %w", err)}
				}
			}
			var loc daemon.Location
			if err := o.get(cmd, "daemon.spawn", p, &loc); err != nil || o.json {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s on %s\n", loc.Daemon, loc.Node)
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&p.Node, "node", "", `spawn on this node (a NodeID, a unique prefix, or "self")`)
	cmd.Flags().StringVar(&p.Where, "where", "", "place on a node matching this capability filter")
	return cmd
}

func newDaemonStop() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a daemon after the events in its inbox, and print its final snapshot",
		Args:  oneDaemonID,
		RunE: func(cmd *cobra.Command, args []string) error {
			var s daemon.Snapshot
			if err := o.get(cmd, "daemon.stop", daemonIDParams{ID: args[0]}, &s); err != nil || o.json {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped %s at sequence %d\n", s.Daemon, s.Seq)
			printState(cmd.OutOrStdout(), s.State)
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newDaemonSnapshot() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "snapshot ID",
		Short: "Print a daemon's snapshot: its state between two events",
		Long: `Print a daemon's snapshot, taken between two events wherever it runs. With
--json the snapshot carries the daemon's key sealed for this node, so
the node can start the daemon again from it.`,
		Args: oneDaemonID,
		RunE: func(cmd *cobra.Command, args []string) error {
			var s daemon.Snapshot
			if err := o.get(cmd, "daemon.snapshot", daemonIDParams{ID: args[0]}, &s); err != nil || o.json {
				return err
			}
			out := cmd.OutOrStdout()
			tw := newTable(out)
			fmt.Fprintf(tw, "daemon\t%s\nkind\t%s\nseq\t%d\nowner\t%s\nstate\t%d bytes\n", s.Daemon, s.Kind, s.Seq, s.Owner, len(s.State))
			tw.Flush()
			printState(out, s.State)
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

// printState prints a state that is JSON; other states are left out.
func printState(out io.Writer, state []byte) {
	if len(state) > 0 && json.Valid(state) {
		fmt.Fprintf(out, "%s\n", state)
	}
}

func newDaemonMigrate() *cobra.Command {
	var o clientOpts
	var to string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "migrate ID --to NODE",
		Short: "Move a daemon to another node while events keep flowing to it",
		Long: `Move a daemon live: its snapshot travels to NODE and is restored there, the
events it applied meanwhile are replayed, then it cuts over; events that
arrive meanwhile wait and are applied on NODE, in order. The phases are
printed as they begin when the daemon runs on this node, then the
report.`,
		Args: oneDaemonID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageError{errors.New("--to is required")}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			out := cmd.OutOrStdout()
			raw, err := o.call(ctx, "daemon.migrate", daemonMigrateParams{ID: args[0], To: to}, func(ev json.RawMessage) error {
				if o.json {
					_, err := fmt.Fprintf(out, "%s\n", ev)
					return err
				}
				var ph daemonPhase
				if err := json.Unmarshal(ev, &ph); err != nil {
					return err
				}
				_, err := fmt.Fprintf(out, "%s  %s\n", ph.At.Format("15:04:05.000000"), ph.Phase)
				return err
			})
			if err != nil || o.json {
				if err == nil {
					fmt.Fprintf(out, "%s\n", raw)
				}
				return err
			}
			var rep daemon.MigrationReport
			if err := json.Unmarshal(raw, &rep); err != nil {
				return err
			}
			fmt.Fprintf(out, "moved %s from %s to %s in %v: snapshot at %d, cutover at %d, %d replayed, %d handed over, events waited %v\n",
				rep.Daemon, rep.From.Short(), rep.To.Short(), rep.Total.Round(time.Microsecond), rep.SnapshotSeq, rep.CutoverSeq,
				rep.Replayed, rep.Handed, rep.Frozen.Round(time.Microsecond))
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the node to move it to (a NodeID or a unique prefix)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	return cmd
}

func newDaemonDeliver() *cobra.Command {
	var o clientOpts
	var event string
	cmd := &cobra.Command{
		Use:     "deliver ID --event JSON",
		Short:   "Send an event to a daemon, wherever it runs, and print its receipt",
		Example: `  netnode daemon deliver ycrz6c3k4m5qb2p4p2ydyw7wpq --event '{"key": "visits", "add": 1}'`,
		Args:    oneDaemonID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !json.Valid([]byte(event)) {
				return usageError{errors.New("--event: not one JSON value (quote it for the shell)")}
			}
			var r daemon.Receipt
			if err := o.get(cmd, "daemon.deliver", daemonDeliverParams{ID: args[0], Event: json.RawMessage(event)}, &r); err != nil || o.json {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "applied at sequence %d on %s\n", r.Seq, r.Node.Short())
			for _, o := range r.Outputs {
				if json.Valid(o) {
					fmt.Fprintf(out, "%s\n", o)
				} else {
					fmt.Fprintf(out, "%q\n", o)
				}
			}
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&event, "event", "", "the event: one JSON value")
	return cmd
}
