package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/capability"
)

// Capability discovery: the find and nodes commands and their control
// methods.

// capNode is one node of the capability index: an element of the results
// of "find" and "nodes".
type capNode struct {
	NodeID    string            `json:"node_id"`
	Name      string            `json:"name"` // the name it claims; "" if none
	PublicKey string            `json:"public_key"`
	Self      bool              `json:"self"`
	Status    string            `json:"status"` // online or degraded
	Tags      []string          `json:"tags"`
	Metadata  map[string]string `json:"metadata"`
	Subnet    string            `json:"subnet"` // as this node's subnet policy derives it; "" for none
	Hops      int               `json:"hops"`   // 0 for this node
	Via       string            `json:"via"`    // the neighbour it was learned from; "" for this node
	Version   uint64            `json:"version"`
	Updated   time.Time         `json:"updated"`
	Expires   time.Time         `json:"expires"`
	// Skills are the task skills the node offers (its skill: tags), Hot
	// those ready now, and Load its task load; nil when it runs no skill.
	Skills []string  `json:"skills"`
	Hot    []string  `json:"hot_skills"`
	Load   *taskLoad `json:"task_load"`
}

// findParams are the parameters of "find".
type findParams struct {
	Filter string `json:"filter"`
}

// findResult is the result of "find".
type findResult struct {
	NodeID string    `json:"node_id"` // the node that answered
	Filter string    `json:"filter"`  // the filter as the node parsed it
	Nodes  []capNode `json:"nodes"`
}

// indexHealth is capability.Health.
type indexHealth struct {
	Known    int `json:"known"`
	Online   int `json:"online"`
	Degraded int `json:"degraded"`
	Offline  int `json:"offline"`
	Left     int `json:"left"` // withdrew their announcements (stopped gracefully)
	// DuplicateNames are the names more than one live node claims,
	// sorted; empty when none.
	DuplicateNames []string `json:"duplicate_names"`
}

// nodesResult is the result of "nodes".
type nodesResult struct {
	NodeID string      `json:"node_id"`
	Health indexHealth `json:"health"`
	Nodes  []capNode   `json:"nodes"`
}

func (n *node) find(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var params findParams
	if err := decodeParams(raw, &params); err != nil {
		return nil, err
	}
	f, err := parseFilter(params.Filter)
	if err != nil {
		return nil, errorf(codeBadRequest, "filter %v", err)
	}
	return findResult{NodeID: n.m.ID().String(), Filter: f.String(), Nodes: n.capNodes(n.m.FindNodes(f))}, nil
}

func (n *node) nodes(context.Context, json.RawMessage, func(any) error) (any, error) {
	h := n.m.Capabilities().Health()
	health := indexHealth{Known: h.Known, Online: h.Online, Degraded: h.Degraded, Offline: h.Offline, Left: h.Left,
		DuplicateNames: append([]string{}, n.m.Capabilities().Index().DuplicateNames()...)}
	return nodesResult{
		NodeID: n.m.ID().String(),
		Health: health,
		Nodes:  n.capNodes(n.m.FindNodes(capability.Filter{})),
	}, nil
}

// capNodes converts index nodes, sorted by NodeID.
func (n *node) capNodes(found []*capability.Node) []capNode {
	out := make([]capNode, 0, len(found))
	for _, c := range found {
		cn := capNode{
			NodeID:    c.ID.String(),
			Name:      c.Name(),
			PublicKey: hex.EncodeToString(c.Key),
			Self:      c.Self,
			Status:    c.Status.String(),
			Tags:      slices.Sorted(slices.Values(c.Set.Tags)),
			Metadata:  maps.Clone(c.Set.Metadata),
			Hops:      c.Hops,
			Version:   c.Version,
			Updated:   c.Updated.UTC(),
			Expires:   c.Expires.UTC(),
		}
		if cn.Tags == nil {
			cn.Tags = []string{}
		}
		if cn.Metadata == nil {
			cn.Metadata = map[string]string{}
		}
		if !c.Via.IsZero() {
			cn.Via = c.Via.String()
		}
		if sub := n.rc.policy.Subnet(c.Set); !sub.IsZero() {
			cn.Subnet = sub.String()
		}
		cn.Skills, cn.Hot, cn.Load = taskView(c.Set)
		out = append(out, cn)
	}
	slices.SortFunc(out, func(a, b capNode) int { return cmp.Compare(a.NodeID, b.NodeID) })
	return out
}

func newFind() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "find <filter>",
		Short: "List the nodes whose announced capabilities match a filter",
		Long: `List the nodes in the running node's capability index that match a
filter: tags, metadata comparisons, &&, ||, ! and parentheses, "*" for every
node (see docs/CAPABILITIES.md). Quote the filter for the shell; several
arguments are joined with spaces. The exit code is 1 when no node matches.`,
		Example: `  netnode find gpu
  netnode find 'gpu && gpu_mem_gb>=24 && !busy'
  netnode find 'region:eu || region:us' --json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			filter := strings.Join(args, " ")
			if _, err := parseFilter(filter); err != nil {
				return usageError{fmt.Errorf("filter %w", err)}
			}
			var res findResult
			if err := o.get(cmd, "find", findParams{Filter: filter}, &res); err != nil {
				return err
			}
			if !o.json {
				printCapNodes(cmd.OutOrStdout(), res.Nodes, false)
			}
			if len(res.Nodes) == 0 {
				return fmt.Errorf("no node matches %s", res.Filter)
			}
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newNodes() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List every node in the capability index, with a health summary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res nodesResult
			if err := o.get(cmd, "nodes", nil, &res); err != nil || o.json {
				return err
			}
			out := cmd.OutOrStdout()
			h := res.Health
			fmt.Fprintf(out, "%d nodes known: %d online, %d degraded; %d gone offline, %d left\n", h.Known, h.Online, h.Degraded, h.Offline, h.Left)
			if len(h.DuplicateNames) > 0 {
				fmt.Fprintf(out, "names claimed by more than one node (a name is a label, not an identity): %s\n", strings.Join(h.DuplicateNames, ", "))
			}
			fmt.Fprintln(out)
			printCapNodes(out, res.Nodes, true)
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

// printCapNodes prints index nodes as an aligned table; withSubnet adds
// the subnet column.
func printCapNodes(out io.Writer, nodes []capNode, withSubnet bool) {
	if len(nodes) == 0 {
		fmt.Fprintln(out, "no nodes")
		return
	}
	tw := newTable(out)
	subnetCol := func(s string) string {
		if !withSubnet {
			return ""
		}
		return cmp.Or(s, "-") + "\t"
	}
	fmt.Fprintf(tw, "NODE ID\tNAME\tSTATUS\tHOPS\tVIA\t%sSKILLS\tLOAD\tTAGS\tMETADATA\n", subnetCol("SUBNET"))
	for _, c := range nodes {
		via := "-"
		if c.Via != "" {
			via = c.Via[:min(8, len(c.Via))]
		}
		hops := fmt.Sprint(c.Hops)
		if c.Self {
			hops, via = "self", "-"
		}
		md := make([]string, 0, len(c.Metadata))
		for _, k := range slices.Sorted(maps.Keys(c.Metadata)) {
			md = append(md, k+"="+c.Metadata[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s%s\t%s\t%s\t%s\n", c.NodeID, cmp.Or(c.Name, "-"), c.Status, hops, via, subnetCol(c.Subnet),
			skillsColumn(c), c.Load, cmp.Or(strings.Join(c.Tags, ","), "-"), cmp.Or(strings.Join(md, " "), "-"))
	}
	tw.Flush()
}
