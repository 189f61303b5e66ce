package mesh

import (
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
)

// Capabilities: every node runs a capability.Engine. Its messages travel on
// the capability subprotocol's reliable streams (an announcement can exceed
// one datagram); every accepted announcement also teaches the routing
// table how to reach its origin (routes.go).

// newCapabilities creates the node's engine from cfg.
func (m *Mesh) newCapabilities(cfg capability.Config) error {
	user := cfg.OnRoute
	cfg.OnRoute = func(origin, via identity.NodeID, hops int, expires time.Time) {
		m.learnRoute(origin, route{via: via, hops: hops, kind: routeAnnounced, expires: m.now() + int64(time.Until(expires))})
		if user != nil {
			user(origin, via, hops, expires)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = m.log
	}
	e, err := capability.New(m.id, capTransport{m}, cfg)
	if err != nil {
		return err
	}
	m.caps = e
	m.handleMessages(wire.ProtoCapability, func(p *Peer, msg []byte) { e.HandleMessage(p.id, msg) })
	return nil
}

// capTransport is the engine's view of the mesh.
type capTransport struct{ m *Mesh }

func (t capTransport) Peers() []identity.NodeID {
	var ids []identity.NodeID
	for _, p := range t.m.Peers() {
		if p.IsUp() {
			ids = append(ids, p.id)
		}
	}
	return ids
}

func (t capTransport) Send(to identity.NodeID, msg []byte) error {
	p := t.m.Peer(to)
	if p == nil {
		return ErrUnknownPeer
	}
	return t.m.sendMessage(p, wire.ProtoCapability, msg)
}

// AnnounceCapabilities sets what this node announces and gossips it to
// every peer (coalesced to one broadcast per MinAnnounceInterval; the local
// index shows the new set at once). A subnet pinned in Config.Channels is
// added as its tag.
func (m *Mesh) AnnounceCapabilities(s capability.Set) error {
	return m.caps.Announce(m.withSubnetTag(s))
}

// FindNodes returns the known nodes, this one included, that match f.
func (m *Mesh) FindNodes(f capability.Filter) []*capability.Node {
	return m.caps.Index().FindNodes(f)
}

// FindNodesScoped is FindNodes restricted to nodes whose announced scope
// admits a querier in scope s.
func (m *Mesh) FindNodesScoped(f capability.Filter, s capability.Scope) []*capability.Node {
	return m.caps.Index().FindNodesScoped(f, s)
}

// FindBestNode returns the matching node with the highest score.
func (m *Mesh) FindBestNode(f capability.Filter, score func(capability.Node) float64) (capability.Node, bool) {
	return m.caps.Index().FindBestNode(f, score)
}

// SubscribeNodes returns a subscription to node events (registered, gone,
// status changed, updated) with room for buffer pending events; a slow
// reader loses events, counted, rather than stalling the node.
func (m *Mesh) SubscribeNodes(buffer int) *capability.Subscription { return m.caps.Subscribe(buffer) }

// Capabilities returns the node's capability engine, for Health, Stats and
// the full index.
func (m *Mesh) Capabilities() *capability.Engine { return m.caps }

// peerChange is a peer coming up or going down, for the engines.
type peerChange struct {
	id identity.NodeID
	up bool
}

// peerChangeQueue bounds peer changes waiting for the timer loop.
const peerChangeQueue = 1024

// notifyEnginesLocked queues a peer change for the engines; the timer loop
// delivers it outside m.mu, since engines call back into the mesh.
func (m *Mesh) notifyEnginesLocked(id identity.NodeID, up bool) {
	select {
	case m.peerChanges <- peerChange{id, up}:
	default:
		m.stats.drop(DropQueueFull)
	}
}

// deliverPeerChange tells the engines about one peer change.
func (m *Mesh) deliverPeerChange(c peerChange) {
	if c.up {
		m.caps.PeerUp(c.id)
	} else {
		m.caps.PeerDown(c.id)
	}
}
