package main

import (
	"context"
	"time"

	"github.com/netmesh/netmesh/bootstrap"
	"github.com/netmesh/netmesh/mesh"
)

// Nodes named by the user: reaching them on demand, and what the
// inspection commands show of each (its name, whether it is a configured
// peer).

// reach returns the node a user named (see findNode) as a peer, connecting
// to it if no session is up: through its address if it is a peer, else by
// NodeID through routes and relays, within bootstrap.DefaultConnectTimeout.
// A peer the node cannot reach is returned down (Stats says why); a node
// of the index it cannot reach is an error.
func (n *node) reach(ctx context.Context, arg string) (*mesh.Peer, error) {
	id, key, err := n.findNode(arg)
	if err != nil {
		return nil, err
	}
	if p := n.m.Peer(id); p != nil && p.IsUp() {
		return p, nil
	}
	cctx, cancel := context.WithTimeout(ctx, bootstrap.DefaultConnectTimeout)
	defer cancel()
	p, err := n.m.ConnectNode(cctx, id, key)
	switch {
	case err == nil:
		return p, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case n.m.Peer(id) != nil:
		return n.m.Peer(id), nil
	}
	return nil, errorf(codeNodeDown, "no session with %s and connecting failed: %v", id, err)
}

// peerInfo describes a peer, with the name its announcement claims.
func (n *node) peerInfo(ps mesh.PeerStats) peerInfo {
	pi := newPeerInfo(ps)
	if c, ok := n.m.Capabilities().Index().Lookup(ps.ID); ok {
		pi.Name = c.Name()
	}
	return pi
}

// configuredPeers adds to peers, by NodeID, the bootstrap peers of the
// config: a peer it has is marked with its dial string; one it never
// reached is added, down, with the keeper's reason.
func (n *node) configuredPeers(peers map[string]*peerInfo, extra *[]peerInfo, now time.Time) {
	if n.keeper == nil {
		return
	}
	for _, st := range n.keeper.Status() {
		dial := st.Peer.String()
		if !st.ID.IsZero() {
			if pi := peers[st.ID.String()]; pi != nil {
				pi.Configured = dial
				continue
			}
		}
		pi := peerInfo{Configured: dial, Path: "none", PathReason: "not connected yet"}
		if !st.ID.IsZero() {
			pi.NodeID = st.ID.String()
		}
		if st.Err != nil {
			pi.PathReason = "not connected: " + st.Err.Error()
			if !st.Retry.IsZero() {
				pi.PathReason += "; next attempt in " + st.Retry.Sub(now).Round(100*time.Millisecond).String()
			}
		}
		*extra = append(*extra, pi)
	}
}
