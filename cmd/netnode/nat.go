package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"

	"github.com/spf13/cobra"
)

// natInfo is the result of "nat": mesh.TraversalStats. With Enabled false
// (netnode built without -tags nat) the other fields are zero.
type natInfo struct {
	Enabled          bool     `json:"enabled"`
	Type             string   `json:"type,omitempty"`     // unknown, open, cone or symmetric
	Reflex           string   `json:"reflex,omitempty"`   // ip:port peers outside the NAT see, "" if unknown
	Override         string   `json:"override,omitempty"` // reflex override, "" if unset
	PortMap          string   `json:"port_map,omitempty"` // mapping or why none; "" when port mapping is off
	STUNServers      []string `json:"stun_servers,omitempty"`
	PunchesAttempted uint64   `json:"punches_attempted"`
	PunchesSucceeded uint64   `json:"punches_succeeded"`
	PunchesSkipped   uint64   `json:"punches_skipped"`
	RelayFallbacks   uint64   `json:"relay_fallbacks"`
	Introductions    uint64   `json:"introductions"`
	ReflexQueries    uint64   `json:"reflex_queries"`
	ReflexAnswers    uint64   `json:"reflex_answers"`
	Classifications  uint64   `json:"classifications"`
}

// natDisabledInfo is what nat --json prints for a node without NAT
// traversal: exactly {"enabled": false}.
type natDisabledInfo struct {
	Enabled bool `json:"enabled"`
}

// natNotCompiled is what nat prints for a node without NAT traversal.
const natNotCompiled = "NAT traversal not compiled in (build with -tags nat)"

func (n *node) nat(context.Context, json.RawMessage, func(any) error) (any, error) {
	ts := n.m.TraversalStats()
	if !ts.Enabled {
		return natDisabledInfo{}, nil
	}
	addr := func(a netip.AddrPort) string {
		if !a.IsValid() {
			return ""
		}
		return a.String()
	}
	return natInfo{
		Enabled:          true,
		Type:             ts.Type.String(),
		Reflex:           addr(ts.Reflex),
		Override:         addr(ts.Override),
		PortMap:          ts.PortMap,
		STUNServers:      n.rc.nat.STUNServers,
		PunchesAttempted: ts.PunchesAttempted,
		PunchesSucceeded: ts.PunchesSucceeded,
		PunchesSkipped:   ts.PunchesSkipped,
		RelayFallbacks:   ts.RelayFallbacks,
		Introductions:    ts.Introductions,
		ReflexQueries:    ts.ReflexQueries,
		ReflexAnswers:    ts.ReflexAnswers,
		Classifications:  ts.Classifications,
	}, nil
}

func newNAT() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "nat",
		Short: "Show the running node's NAT type, reflexive address and hole-punching counters",
		Long: `Show what NAT traversal found: the NAT type (open, cone, symmetric or
unknown), the reflexive address peers outside the NAT see, and the punch
counters. Why one peer stays relayed is in netnode peers (WHY column). A
node built without -tags nat has no NAT traversal: the command says so and
exits 0, and --json prints {"enabled": false}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var info natInfo
			if err := o.get(cmd, "nat", nil, &info); err != nil || o.json {
				return err
			}
			printNAT(cmd.OutOrStdout(), info)
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func printNAT(out io.Writer, info natInfo) {
	if !info.Enabled {
		fmt.Fprintln(out, natNotCompiled)
		return
	}
	orNone := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	tw := newTable(out)
	fmt.Fprintf(tw, "nat type\t%s\n", info.Type)
	fmt.Fprintf(tw, "reflex\t%s\n", orNone(info.Reflex))
	if info.PortMap != "" {
		fmt.Fprintf(tw, "port mapping\t%s\n", info.PortMap)
	}
	if info.Override != "" {
		fmt.Fprintf(tw, "override\t%s\n", info.Override)
	}
	stun := "none (directly connected peers report the reflex)"
	if len(info.STUNServers) > 0 {
		stun = fmt.Sprint(info.STUNServers)
	}
	fmt.Fprintf(tw, "stun servers\t%s\n", stun)
	fmt.Fprintf(tw, "reflex queries\t%d sent, %d answered; %d classifications\n", info.ReflexQueries, info.ReflexAnswers, info.Classifications)
	fmt.Fprintf(tw, "punches\t%d attempted, %d direct, %d skipped\n", info.PunchesAttempted, info.PunchesSucceeded, info.PunchesSkipped)
	fmt.Fprintf(tw, "relay fallbacks\t%d\n", info.RelayFallbacks)
	fmt.Fprintf(tw, "introductions\t%d (as coordinator)\n", info.Introductions)
	tw.Flush()
}
