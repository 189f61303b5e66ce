package channel_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
)

// node is a Transport for the example: two engines that hand messages
// straight to each other. A real mesh sends them over the peer's session.
type node struct {
	id    *identity.Identity
	tags  []string
	e     *channel.Engine
	peers map[identity.NodeID]*node
}

func (n *node) Send(to identity.NodeID, msg []byte) error {
	return n.peers[to].e.HandleMessage(n.id.NodeID(), msg)
}

func (n *node) PeerInfo(id identity.NodeID) (capability.Node, ed25519.PublicKey, bool) {
	p, ok := n.peers[id]
	if !ok {
		return capability.Node{}, nil, false
	}
	return capability.Node{ID: id, Key: p.id.PublicKey(), Set: capability.Set{Tags: p.tags}}, p.id.PublicKey(), true
}

// Example registers a token-protected channel, subscribes with a token the
// publisher issued, and receives a message; a subscriber without a token
// is refused with a typed reason.
func Example() {
	pubID, _ := identity.Generate()
	subID, _ := identity.Generate()
	peers := map[identity.NodeID]*node{}
	pub := &node{id: pubID, tags: []string{"sensor"}, peers: peers}
	sub := &node{id: subID, tags: []string{"dashboard"}, peers: peers}
	peers[pubID.NodeID()], peers[subID.NodeID()] = pub, sub
	pub.e, _ = channel.New(pubID, pub, channel.Options{})
	sub.e, _ = channel.New(subID, sub, channel.Options{})

	ctx := context.Background()
	_ = pub.e.Register("sensors/temp", channel.Config{
		SubscribeCaps: capability.HasTag("dashboard"),
		RequireToken:  true,
	})

	_, err := sub.e.Subscribe(ctx, pubID.NodeID(), "sensors/temp", nil)
	var re *channel.RejectError
	fmt.Println(errors.As(err, &re), re.Reason, errors.Is(err, channel.ErrUnauthorized))

	tok, _ := identity.IssueToken(pubID, identity.TokenGrant{
		Subject: subID.PublicKey(),
		Perms:   identity.PermSubscribe,
		Channel: "sensors/",
		Prefix:  true,
		Expiry:  time.Now().Add(time.Hour),
	})
	s, err := sub.e.Subscribe(ctx, pubID.NodeID(), "sensors/temp", tok)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Unsubscribe()

	report, _ := pub.e.Publish(ctx, "sensors/temp", []byte("21.5 C"))
	fmt.Println(report.Attempted, report.Delivered)
	m, _ := s.Recv(ctx)
	fmt.Println(m.Seq, string(m.Payload))
	// Output:
	// true unauthorized: token true
	// 1 1
	// 1 21.5 C
}
