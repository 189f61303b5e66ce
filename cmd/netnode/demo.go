package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/rpc"
)

func newDemo() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a small mesh in this process on loopback and show it working",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return runDemo(ctx, cmd.OutOrStdout())
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

// demoNode is one named node of the demo.
type demoNode struct {
	name string
	m    *mesh.Mesh
}

// runDemo starts four nodes: alpha, beta and gamma connect directly; delta
// knows only beta. Delta announces a GPU; alpha discovers it through
// gossip and reaches it by NodeID through beta, which relays without being
// able to read the traffic. Alpha publishes on a channel beta and gamma
// subscribe to, calls an RPC service delta serves, sends delta a task,
// and spawns a daemon on delta that it moves to beta while events flow.
func runDemo(ctx context.Context, out io.Writer) error {
	names := []string{"alpha", "beta", "gamma", "delta"}
	nodes := make([]*demoNode, len(names))
	byID := map[identity.NodeID]string{}
	for i, name := range names {
		m, err := mesh.New(mesh.Config{ListenAddr: "127.0.0.1:0", Capabilities: capability.Config{MinAnnounceInterval: time.Second, TTL: 30 * time.Second}})
		if err != nil {
			return err
		}
		if err := m.Start(ctx); err != nil {
			return err
		}
		defer m.Close()
		nodes[i] = &demoNode{name, m}
		byID[m.ID()] = name
	}
	alpha, beta, gamma, delta := nodes[0], nodes[1], nodes[2], nodes[3]

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
		{delta, beta, mesh.Pin{}, "XX: delta knows only beta"},
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
	for i, from := range nodes[:3] {
		to := nodes[(i+1)%3]
		msg := fmt.Sprintf("hello %s, from %s", to.name, from.name)
		if err := sendUntilReceived(ctx, from, to, []byte(msg)); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %s -> %s  %q  delivered\n", from.name, to.name, msg)
	}

	fmt.Fprintln(out, "\ncapability discovery (signed announcements, gossiped hop by hop)")
	set := capability.Set{Tags: []string{"gpu", "cuda"}, Metadata: map[string]string{"gpu_mem_gb": "48"}}
	if err := delta.m.AnnounceCapabilities(set); err != nil {
		return err
	}
	fmt.Fprintf(out, "  delta announces %v %v\n", set.Tags, set.Metadata)
	filter, err := capability.ParseFilter("gpu && gpu_mem_gb>=24")
	if err != nil {
		return err
	}
	var found []*capability.Node
	for len(found) == 0 {
		if found = alpha.m.FindNodes(filter); len(found) == 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("alpha never learned of delta's GPU: %w", ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	gpu := found[0]
	fmt.Fprintf(out, "  alpha: find %q -> %s (%s), %d hops away, learned via %s\n", filter, byID[gpu.ID], gpu.ID.Short(), gpu.Hops, byID[gpu.Via])

	fmt.Fprintln(out, "\nrelayed session (alpha has no address for delta: the handshake runs through beta)")
	p, err := alpha.m.ConnectNode(ctx, gpu.ID, gpu.Key)
	if err != nil {
		return fmt.Errorf("alpha -> delta: %w", err)
	}
	msg := []byte("run job 42 on your GPU")
	if err := sendUntilReceived(ctx, alpha, delta, msg); err != nil {
		return err
	}
	rtt, err := alpha.m.Ping(ctx, p)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  alpha -> delta  %q  delivered end to end encrypted; RTT %v; beta relayed %d packets\n",
		msg, rtt.Round(time.Microsecond), beta.m.Stats().Relayed)

	if err := demoStream(ctx, out, alpha, gamma); err != nil {
		return err
	}
	if err := demoChannel(ctx, out, alpha, []*demoNode{beta, gamma}); err != nil {
		return err
	}
	srvDelta, err := rpc.NewServer(delta.m, rpc.ServerOptions{})
	if err != nil {
		return err
	}
	defer srvDelta.Close()
	if err := demoRPC(ctx, out, alpha, delta, srvDelta); err != nil {
		return err
	}
	if err := demoTasks(ctx, out, alpha, delta, srvDelta); err != nil {
		return err
	}
	if err := demoDaemons(ctx, out, nodes, map[*demoNode]*rpc.Server{delta: srvDelta}, alpha, beta, []*demoNode{alpha, gamma}); err != nil {
		return err
	}

	fmt.Fprintf(out, "\npeers of %s\n", alpha.name)
	printPeers(out, alpha.m, byID)
	fmt.Fprintln(out, "\ndemo finished: every node reached every other")
	return nil
}

// demoStream: from sends a bulk transfer to to on a reliable stream, which
// arrives intact; path MTU discovery sizes its packets along the way.
func demoStream(ctx context.Context, out io.Writer, from, to *demoNode) error {
	fmt.Fprintln(out, "\nreliable stream (ordered, flow-controlled; path MTU discovery sizes the packets)")
	p := from.m.Peer(to.m.ID())
	if p == nil {
		return fmt.Errorf("%s has no session with %s", from.name, to.name)
	}
	s, err := from.m.OpenStream(ctx, p, mesh.StreamConfig{})
	if err != nil {
		return err
	}
	const size, chunk = 32 << 20, 64 << 10
	received := make(chan [sha256.Size]byte, 1)
	go func() {
		defer close(received)
		rs, _, err := to.m.AcceptStream(ctx)
		if err != nil {
			return
		}
		h := sha256.New()
		for msg, err := range rs.Messages(ctx) {
			if err != nil {
				return
			}
			h.Write(msg)
		}
		received <- [sha256.Size]byte(h.Sum(nil))
	}()
	want := sha256.New()
	msg := make([]byte, chunk)
	start := time.Now()
	for i := range size / chunk {
		copy(msg, bytes.Repeat([]byte{byte(i)}, 8))
		want.Write(msg)
		if err := s.SendBlocking(ctx, msg); err != nil {
			return fmt.Errorf("stream to %s: %w", to.name, err)
		}
	}
	if err := s.CloseContext(ctx); err != nil {
		return fmt.Errorf("stream to %s: %w", to.name, err)
	}
	sum, ok := <-received
	if !ok || sum != [sha256.Size]byte(want.Sum(nil)) {
		return fmt.Errorf("stream to %s: the transfer did not arrive intact", to.name)
	}
	d := time.Since(start)
	frames := fmt.Sprintf("frames of %d bytes", mesh.MaxDatagramSize)
	if mtu := p.Stats().StreamMTU; mtu > mesh.MaxDatagramSize {
		frames = fmt.Sprintf("frames grew from %d to %d bytes", mesh.MaxDatagramSize, mtu)
	}
	fmt.Fprintf(out, "  %s -> %s  %d MiB in %d messages, intact (SHA-256), %.0f MB/s; %d retransmits; %s\n",
		from.name, to.name, size>>20, size/chunk, size/d.Seconds()/1e6, s.Stats().Retransmits, frames)
	return nil
}

// demoChannel: pub registers a channel, the subscribers join it, and one
// publish reaches them all.
func demoChannel(ctx context.Context, out io.Writer, pub *demoNode, subs []*demoNode) error {
	fmt.Fprintln(out, "\npub/sub channel (subscribe with acknowledgement, fan-out with a report)")
	if err := pub.m.RegisterChannel("news", channel.Config{}); err != nil {
		return err
	}
	var got []*channel.Subscription
	for _, n := range subs {
		s, err := n.m.SubscribeChannel(ctx, pub.m.ID(), "news", nil)
		if err != nil {
			return fmt.Errorf("%s subscribing: %w", n.name, err)
		}
		defer s.Unsubscribe()
		got = append(got, s)
	}
	rep, err := pub.m.Publish(ctx, "news", []byte("the mesh is up"))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  %s publishes on %q: %d of %d subscribers delivered\n", pub.name, "news", rep.Delivered, rep.Attempted)
	for i, s := range got {
		msg, err := s.Recv(ctx)
		if err != nil {
			return fmt.Errorf("%s receiving: %w", subs[i].name, err)
		}
		fmt.Fprintf(out, "  %s received %q\n", subs[i].name, msg.Payload)
	}
	return nil
}

// demoRPC: server serves a service on srv; caller finds it by capability
// and calls it (through the relay, in the demo).
func demoRPC(ctx context.Context, out io.Writer, caller, server *demoNode, srv *rpc.Server) error {
	fmt.Fprintln(out, "\nrpc (services advertised as capabilities, found by the caller)")
	err := srv.Handle("wordcount", func(_ context.Context, req []byte) ([]byte, error) {
		return fmt.Appendf(nil, "%d words", len(strings.Fields(string(req)))), nil
	})
	if err != nil {
		return err
	}
	for len(caller.m.FindNodes(capability.HasTag("rpc:wordcount"))) == 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never learned of the wordcount service: %w", caller.name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	c := rpc.NewClient(caller.m, rpc.ClientOptions{})
	req := "count the words in this request please"
	start := time.Now()
	resp, err := c.CallService(ctx, "wordcount", []byte(req))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  %s calls wordcount(%q) -> %q from %s in %v\n", caller.name, req, resp, server.name, time.Since(start).Round(time.Microsecond))
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

func printPeers(out io.Writer, m *mesh.Mesh, byID map[identity.NodeID]string) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PEER\tNODE ID\tPATH\tWHY\tTX\tRX")
	for _, st := range m.Stats().Peers {
		path := st.Endpoint.String()
		if st.Path == "relayed" {
			path = "via " + byID[st.Via]
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d B\t%d B\n", byID[st.ID], st.ID.Short(), path, st.PathReason, st.TxBytes, st.RxBytes)
	}
	tw.Flush()
}
