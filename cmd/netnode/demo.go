package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/mesh"
)

func newDemo() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run three nodes in this process on loopback and show them working",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return runDemo(ctx, cmd.OutOrStdout())
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 20*time.Second, "give up after this long")
	return cmd
}

// demoNode is one named node of the demo.
type demoNode struct {
	name string
	m    *mesh.Mesh
}

func runDemo(ctx context.Context, out io.Writer) error {
	names := []string{"alpha", "beta", "gamma"}
	nodes := make([]*demoNode, len(names))
	for i, name := range names {
		m, err := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0"})
		if err != nil {
			return err
		}
		if err := m.Start(ctx); err != nil {
			return err
		}
		defer m.Close()
		nodes[i] = &demoNode{name, m}
	}
	alpha, beta, gamma := nodes[0], nodes[1], nodes[2]

	fmt.Fprintf(out, "netmesh demo: %d nodes in this process, on loopback\n\n", len(nodes))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tNODE ID\tADDRESS\tSOCKETS")
	for _, n := range nodes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", n.name, n.m.ID(), n.m.Addr(), n.m.Stats().IOMode)
	}
	tw.Flush()

	fmt.Fprintln(out, "\nhandshakes (Noise over UDP, identities bound by ed25519 signatures)")
	links := []struct {
		from, to *demoNode
		pin      mesh.Pin
		how      string
	}{
		{alpha, beta, mesh.Pin{Key: beta.m.Identity().PublicKey()}, "IK: alpha knew beta's key, 1 round trip"},
		{gamma, alpha, mesh.Pin{}, "XX: gamma knew only alpha's address"},
		{beta, gamma, mesh.Pin{ID: gamma.m.ID()}, "XX, pinned to gamma's NodeID"},
	}
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, l := range links {
		start := time.Now()
		if _, err := l.from.m.Connect(ctx, l.to.m.Addr(), l.pin); err != nil {
			return fmt.Errorf("%s -> %s: %w", l.from.name, l.to.name, err)
		}
		fmt.Fprintf(tw, "  %s -> %s\t%s\t%v\n", l.from.name, l.to.name, l.how, time.Since(start).Round(10*time.Microsecond))
	}
	tw.Flush()

	fmt.Fprintln(out, "\nencrypted datagrams (ChaCha20-Poly1305, 32 bytes of overhead each)")
	for i, from := range nodes {
		to := nodes[(i+1)%len(nodes)]
		msg := fmt.Sprintf("hello %s, from %s", to.name, from.name)
		if err := sendUntilReceived(ctx, from, to, []byte(msg)); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %s -> %s  %q  delivered\n", from.name, to.name, msg)
	}

	fmt.Fprintf(out, "\npeers of %s\n", alpha.name)
	printPeers(out, alpha.m, nodes)
	fmt.Fprintln(out, "\ndemo finished: every node reached every other")
	return nil
}

// sendUntilReceived sends msg until to reads it: datagrams are unreliable.
func sendUntilReceived(ctx context.Context, from, to *demoNode, msg []byte) error {
	p := from.m.Peer(to.m.ID())
	if p == nil {
		return fmt.Errorf("%s has no session with %s", from.name, to.name)
	}
	buf := make([]byte, mesh.MaxDatagramSize)
	for {
		if err := from.m.SendDatagram(ctx, p, msg); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		n, src, err := to.m.ReadDatagram(rctx, buf)
		cancel()
		switch {
		case err == nil && src.ID() == from.m.ID() && string(buf[:n]) == string(msg):
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("%s -> %s: datagram not delivered: %w", from.name, to.name, ctx.Err())
		}
	}
}

func printPeers(out io.Writer, m *mesh.Mesh, nodes []*demoNode) {
	name := func(addr netip.AddrPort) string {
		for _, n := range nodes {
			if n.m.Addr() == addr {
				return n.name
			}
		}
		return "?"
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PEER\tNODE ID\tADDRESS\tPATH\tTX\tRX")
	for _, st := range m.Stats().Peers {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d B\t%d B\n", name(st.Endpoint), st.ID.Short(), st.Endpoint, st.Path, st.TxBytes, st.RxBytes)
	}
	tw.Flush()
}
