package mesh

import (
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// Capabilities: every node runs a capability.Engine. Its messages travel on
// the capability protocol's reliable streams (an announcement can exceed
// one datagram); every accepted announcement also teaches the routing
// table how to reach its origin (routes.go).

// newCapabilities creates the node's engine from cfg.
func (m *Mesh) newCapabilities(cfg capability.Config) error {
	user := cfg.OnRoute
	cfg.OnRoute = func(origin, via identity.NodeID, hops int, expires time.Time) {
		m.learnAnnouncedRoute(origin, via, hops, expires)
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
	if err := m.handleMessages(protoCapability, func(p *Peer, msg []byte) { e.HandleMessage(p.id, msg) }); err != nil {
		return err
	}
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
	return t.m.sendMessage(p, protoCapability, msg)
}

// learnAnnouncedRoute learns that origin is reachable through neighbour
// via at hops links until expires, as its announcement taught.
func (m *Mesh) learnAnnouncedRoute(origin, via identity.NodeID, hops int, expires time.Time) {
	m.tr.learnRoute(origin, route{via: via, hops: hops, kind: routeAnnounced, expires: m.tr.now() + int64(time.Until(expires))})
}

// AnnounceCapabilities sets the application's part of what this node
// announces and gossips the result to every peer (coalesced to one
// broadcast per MinAnnounceInterval; the local index shows the new set at
// once). It replaces only what the application announced before: the
// parts that layers own survive it (see AnnounceLayerCapabilities), among
// them the mesh's own, under layer "mesh": the tag of a subnet pinned in
// Config.Channels, and under metadata key "reflex" the address peers
// outside its NAT can reach it at (a reflex override, or the discovered
// reflex; build tag nat).
func (m *Mesh) AnnounceCapabilities(s capability.Set) error {
	if err := m.caps.Announce(s); err != nil {
		return err
	}
	return m.refreshSelf()
}

// UpdateCapabilities changes the application's part of what this node
// announces in one step: f gets the part last announced and returns the
// new one, so the read-modify-write cannot race another announcement. f
// must not announce itself.
func (m *Mesh) UpdateCapabilities(f func(capability.Set) capability.Set) error {
	if err := m.caps.Update("", f); err != nil {
		return err
	}
	return m.refreshSelf()
}

// AnnounceLayerCapabilities sets the part of what this node announces that
// layer owns (package rpc owns layer "rpc" and its "rpc:<service>" tags),
// and announces the result. The application's AnnounceCapabilities does not
// touch it; an empty set removes it. Tags of all parts are announced
// together; for a metadata key in several parts a layer's value replaces
// the application's (see capability.Engine.AnnounceLayer).
func (m *Mesh) AnnounceLayerCapabilities(layer string, s capability.Set) error {
	return m.caps.AnnounceLayer(layer, s)
}

// meshLayer is the layer that holds what the mesh announces about itself.
const meshLayer = "mesh"

// reannounce announces the mesh's own part again, after what the mesh
// knows about itself changed.
func (m *Mesh) reannounce() error { return m.caps.AnnounceLayer(meshLayer, m.selfCapabilities()) }

// refreshSelf announces the mesh's own part again if it changed since it
// was last announced (a reflex address measured since), so an explicit
// announcement carries what the mesh knows now.
func (m *Mesh) refreshSelf() error {
	if cur := m.selfCapabilities(); !cur.Equal(m.caps.Announced(meshLayer)) {
		return m.caps.AnnounceLayer(meshLayer, cur)
	}
	return nil
}

// selfCapabilities is what the mesh announces about itself.
func (m *Mesh) selfCapabilities() capability.Set {
	var s capability.Set
	if m.subnetTag != "" {
		s.Tags = []string{m.subnetTag}
	}
	if r := m.ReflexAddr(); r.IsValid() {
		s.Metadata = map[string]string{reflexKey: r.String()}
	}
	return s
}

// reflexKey is the metadata key of a node's reflexive address.
const reflexKey = "reflex"

// FindNodes returns the known nodes, this one included, that match f.
// WatchNodes yields them and then their changes, to wait for a node.
func (m *Mesh) FindNodes(f capability.Filter) []*capability.Node {
	return m.caps.Index().FindNodes(f)
}

// FindNodesScoped is FindNodes restricted to nodes whose announced scope
// admits a querier in scope s.
func (m *Mesh) FindNodesScoped(f capability.Filter, s capability.Scope) []*capability.Node {
	return m.caps.Index().FindNodesScoped(f, s)
}

// LookupName returns the known nodes, this one included, that claim name
// (Config.Capabilities.Name of each node; case does not matter). A name is
// a label, not an identity: more than one node may claim it, and a caller
// that needs one node must refuse an ambiguous name.
func (m *Mesh) LookupName(name string) []*capability.Node {
	return m.caps.Index().LookupName(name)
}

// FindBestNode returns the matching node with the highest score.
func (m *Mesh) FindBestNode(f capability.Filter, score func(capability.Node) float64) (capability.Node, bool) {
	return m.caps.Index().FindBestNode(f, score)
}

// SubscribeNodes returns a subscription to node events (registered,
// updated, degraded, recovered, offline, left, and heartbeats if
// Config.Capabilities.HeartbeatEvents is set) with room for buffer pending
// events; a slow reader loses events, counted, rather than stalling the
// node.
func (m *Mesh) SubscribeNodes(buffer int) *capability.Subscription { return m.caps.Subscribe(buffer) }

// WithdrawCapabilities withdraws this node's announcement: a signed
// withdrawal goes to every peer at once and on through the mesh, and every
// node drops this one from its index with a NodeLeft event instead of
// waiting for its announcement to run out. A graceful leave calls it
// before saying goodbye to its peers; announcing again undoes it.
func (m *Mesh) WithdrawCapabilities() { m.caps.Withdraw() }

// Capabilities returns the node's capability engine, for Health, Stats and
// the full index.
func (m *Mesh) Capabilities() *capability.Engine { return m.caps }
