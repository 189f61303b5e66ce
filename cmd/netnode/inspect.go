package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// requestTimeout bounds a one-shot request to the node.
const requestTimeout = 10 * time.Second

// clientOpts are the flags of every command that talks to a running node.
type clientOpts struct {
	control string
	json    bool
}

func (o *clientOpts) addFlags(cmd *cobra.Command) {
	addControlFlag(cmd, &o.control)
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON (stable snake_case field names)")
}

// call sends one request to the node and returns its final result; more
// receives the intermediate results of a streaming method. Errors that
// are the caller's fault (a malformed or ambiguous node name) are usage
// errors.
func (o *clientOpts) call(ctx context.Context, method string, params any, more func(json.RawMessage) error) (json.RawMessage, error) {
	c, err := dialControl(ctx, o.control)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res, err := c.call(ctx, method, params, more)
	var ce *controlError
	if errors.As(err, &ce) && (ce.Code == codeBadRequest || ce.Code == codeAmbiguousNode) {
		return nil, usageError{err}
	}
	return res, err
}

// get calls a one-shot method and decodes its result into v. With --json
// it prints the result as the node sent it.
func (o *clientOpts) get(cmd *cobra.Command, method string, params, v any) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
	defer cancel()
	res, err := o.call(ctx, method, params, nil)
	if err != nil {
		return err
	}
	if o.json {
		fmt.Fprintf(cmd.OutOrStdout(), "%s\n", res)
	}
	return json.Unmarshal(res, v)
}

func newPeers() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List the running node's peers: path, why, RTT, bytes, last seen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res peersResult
			if err := o.get(cmd, "peers", nil, &res); err != nil || o.json {
				return err
			}
			printPeerTable(cmd.OutOrStdout(), res.Peers, time.Now())
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

// printPeerTable prints peers as an aligned table.
func printPeerTable(out io.Writer, peers []peerInfo, now time.Time) {
	if len(peers) == 0 {
		fmt.Fprintln(out, "no peers")
		return
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "NODE ID\tNAME\tSTATE\tPATH\tADDRESS\tRTT\tTX\tRX\tLAST SEEN\tWHY")
	for _, p := range peers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cmp.Or(p.NodeID, "?"), cmp.Or(p.Name, "-"), upDown(p.Up), p.Path, p.address(),
			fmtRTT(p.RTTMs), fmtBytes(p.TxBytes), fmtBytes(p.RxBytes), fmtAgo(p.LastSeen, now), p.PathReason)
	}
	tw.Flush()
}

// address is where packets to the peer go: its endpoint, or its relay;
// for a configured peer never reached, its dial string.
func (p peerInfo) address() string {
	switch {
	case p.Via != "":
		return "via " + p.Via[:min(8, len(p.Via))]
	case p.Endpoint != "":
		return p.Endpoint
	case p.Configured != "":
		return p.Configured
	}
	return "-"
}

func newHealth() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "health <node>",
		Short: "Show whether a peer is up, its path, RTT and last contact; exit 1 if it is down",
		Long: `Show one node's health: its state, path, RTT and last contact. The node is
named by its NodeID, a prefix of it that matches one node, or the name one
node claims; a node the running node has no session with is connected to
first, as call does. The exit code is 0 when the node is up, 1 when it is
down or unknown, 2 when the name is malformed or ambiguous.`,
		Args: oneNode,
		RunE: func(cmd *cobra.Command, args []string) error {
			var p peerInfo
			if err := o.get(cmd, "health", nodeParams{Node: args[0]}, &p); err != nil {
				return err
			}
			if !o.json {
				printHealth(cmd.OutOrStdout(), p, time.Now())
			}
			if !p.Up {
				return fmt.Errorf("node %s is down", p.NodeID)
			}
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func printHealth(out io.Writer, p peerInfo, now time.Time) {
	tw := newTable(out)
	fmt.Fprintf(tw, "node\t%s\n", p.NodeID)
	if p.Name != "" {
		fmt.Fprintf(tw, "name\t%s\n", p.Name)
	}
	fmt.Fprintf(tw, "state\t%s\n", upDown(p.Up))
	path := p.Path
	if p.Via != "" {
		path += " via " + p.Via
	}
	fmt.Fprintf(tw, "path\t%s (%s)\n", path, p.PathReason)
	fmt.Fprintf(tw, "address\t%s\n", p.address())
	fmt.Fprintf(tw, "rtt\t%s\n", fmtRTT(p.RTTMs))
	fmt.Fprintf(tw, "last seen\t%s\n", fmtAgo(p.LastSeen, now))
	if p.Up {
		fmt.Fprintf(tw, "session age\t%s\n", fmtDuration(p.SessionAgeMs))
		fmt.Fprintf(tw, "cipher suite\t%s\n", p.CipherSuite)
	}
	fmt.Fprintf(tw, "traffic\ttx %s in %d packets, rx %s in %d packets\n", fmtBytes(p.TxBytes), p.TxPackets, fmtBytes(p.RxBytes), p.RxPackets)
	fmt.Fprintf(tw, "handshakes\t%d\n", p.Handshakes)
	if p.StreamMTU > 0 {
		fmt.Fprintf(tw, "stream mtu\t%d bytes per frame (path MTU discovery)\n", p.StreamMTU)
	}
	tw.Flush()
}

func newPing() *cobra.Command {
	var o clientOpts
	var count int
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "ping <node>",
		Short: "Measure round trips to a peer over its session",
		Long: `Send -c pings to a node over its encrypted session, -i apart, and print
each round-trip time. The node is named as for health, and connected to
first if there is no session with it. With --json, print one JSON object
per reply and a summary object last. The exit code is 1 if no reply came
back.`,
		Args: oneNode,
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 1 || count > maxPingCount {
				return usageError{fmt.Errorf("--count %d: want 1 to %d", count, maxPingCount)}
			}
			if interval < minPingInterval {
				return usageError{fmt.Errorf("--interval %v: want at least %v", interval, minPingInterval)}
			}
			out := cmd.OutOrStdout()
			params := pingParams{Node: args[0], Count: count, IntervalMs: int(interval / time.Millisecond)}
			res, err := o.call(cmd.Context(), "ping", params, func(raw json.RawMessage) error {
				if o.json {
					_, err := fmt.Fprintf(out, "%s\n", raw)
					return err
				}
				var r pingReply
				if err := json.Unmarshal(raw, &r); err != nil {
					return err
				}
				if r.Error != "" {
					fmt.Fprintf(out, "seq=%d  %s\n", r.Seq, r.Error)
				} else {
					fmt.Fprintf(out, "seq=%d  rtt=%s\n", r.Seq, fmtRTT(r.RTTMs))
				}
				return nil
			})
			if err != nil {
				return err
			}
			var sum pingSummary
			if err := json.Unmarshal(res, &sum); err != nil {
				return err
			}
			if o.json {
				fmt.Fprintf(out, "%s\n", res)
			} else {
				fmt.Fprintf(out, "%s: %d sent, %d received, %.0f%% loss", sum.NodeID, sum.Sent, sum.Received,
					100*float64(sum.Sent-sum.Received)/float64(sum.Sent))
				if sum.Received > 0 {
					fmt.Fprintf(out, ", rtt min/avg/max %s/%s/%s", fmtRTT(sum.MinMs), fmtRTT(sum.AvgMs), fmtRTT(sum.MaxMs))
				}
				fmt.Fprintln(out)
			}
			if sum.Received == 0 {
				return fmt.Errorf("no reply from %s", sum.NodeID)
			}
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().IntVarP(&count, "count", "c", 4, "number of pings")
	cmd.Flags().DurationVarP(&interval, "interval", "i", time.Second, "time between pings")
	return cmd
}

func newStatus() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running node: NodeID, addresses, IO mode, counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st statusInfo
			if err := o.get(cmd, "status", nil, &st); err != nil || o.json {
				return err
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func printStatus(out io.Writer, st statusInfo) {
	tw := newTable(out)
	fmt.Fprintf(tw, "node id\t%s\n", st.NodeID)
	fmt.Fprintf(tw, "name\t%s\n", cmp.Or(st.Name, "none"))
	fmt.Fprintf(tw, "public key\t%s\n", st.PublicKey)
	fmt.Fprintf(tw, "version\t%s\n", st.Version)
	fmt.Fprintf(tw, "listening\t%s\n", strings.Join(st.ListenAddrs, ", "))
	fmt.Fprintf(tw, "io mode\t%s\n", st.IOMode)
	relay := "off (does not forward for other nodes)"
	if st.Relay {
		relay = "on (forwards for nodes it has sessions with)"
	}
	fmt.Fprintf(tw, "relay\t%s\n", relay)
	fmt.Fprintf(tw, "subnet\t%s\n", cmp.Or(st.Subnet, "none"))
	fmt.Fprintf(tw, "channels\t%s\n", cmp.Or(strings.Join(st.Channels, ", "), "none"))
	fmt.Fprintf(tw, "mdns\t%s\n", onOff(st.MDNS))
	nat := "not compiled in"
	if st.NATCompiled {
		nat = "compiled in (netnode nat)"
	}
	fmt.Fprintf(tw, "nat traversal\t%s\n", nat)
	fmt.Fprintf(tw, "rpc services\t%s\n", cmp.Or(strings.Join(st.RPCServices, ", "), "none (rpc_builtin = false)"))
	fmt.Fprintf(tw, "uptime\t%s\n", time.Duration(st.UptimeSeconds*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(tw, "peers\t%d up, %d known\n", st.PeersUp, st.PeersKnown)
	fmt.Fprintf(tw, "handshakes\t%d initiated, %d completed, %d processed\n", st.HandshakesInitiated, st.HandshakesCompleted, st.HandshakesProcessed)
	if st.SuiteFallbacks > 0 {
		fmt.Fprintf(tw, "suite fallbacks\t%d dials fell back to ChaCha20-Poly1305 (docs/SECURITY.md, Cipher suites)\n", st.SuiteFallbacks)
	}
	fmt.Fprintf(tw, "cookies sent\t%d\n", st.CookiesSent)
	fmt.Fprintf(tw, "relayed\t%d packets\n", st.RelayedPackets)
	fmt.Fprintf(tw, "back-pressure\t%d sends refused\n", st.SendBackpressure)
	if len(st.Drops) == 0 {
		fmt.Fprintf(tw, "drops\tnone\n")
	}
	for i, reason := range slices.Sorted(maps.Keys(st.Drops)) {
		label := ""
		if i == 0 {
			label = "drops"
		}
		fmt.Fprintf(tw, "%s\t%d %s\n", label, st.Drops[reason], reason)
	}
	tw.Flush()
}

// newTable returns a tabwriter for aligned columns.
func newTable(out io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// fmtRTT formats a round-trip time in milliseconds; "-" if unmeasured.
func fmtRTT(ms float64) string {
	if ms <= 0 {
		return "-"
	}
	return fmtDuration(ms)
}

// fmtDuration formats milliseconds with a precision that suits the size.
func fmtDuration(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// fmtBytes formats a byte count with a binary unit.
func fmtBytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// fmtAgo formats how long before now t was; "never" for nil.
func fmtAgo(t *time.Time, now time.Time) string {
	if t == nil {
		return "never"
	}
	d := now.Sub(*t)
	if d < time.Second {
		return "just now"
	}
	return d.Round(time.Second).String() + " ago"
}
