package mesh

import (
	"maps"
	"slices"
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
		m.tr.learnRoute(origin, route{via: via, hops: hops, kind: routeAnnounced, expires: m.tr.now() + int64(time.Until(expires))})
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

// AnnounceCapabilities sets what this node announces and gossips it to
// every peer (coalesced to one broadcast per MinAnnounceInterval; the local
// index shows the new set at once). The mesh adds what it knows about
// itself: the tag of a subnet pinned in Config.Channels, and under
// metadata key "reflex" the address peers outside its NAT can reach it at
// (a reflex override, or the discovered reflex; build tag nat).
func (m *Mesh) AnnounceCapabilities(s capability.Set) error {
	m.announceMu.Lock()
	defer m.announceMu.Unlock()
	if err := m.caps.Announce(m.withExtras(s)); err != nil {
		return err
	}
	m.announced = s
	return nil
}

// UpdateCapabilities changes what this node announces in one step: f gets
// the set last announced (without the mesh's additions) and returns the
// new one. Layers that own part of the set (package rpc owns the rpc:
// tags) use it so their read-modify-write cannot race the application's.
func (m *Mesh) UpdateCapabilities(f func(capability.Set) capability.Set) error {
	m.announceMu.Lock()
	defer m.announceMu.Unlock()
	s := f(capability.Set{Tags: slices.Clone(m.announced.Tags), Metadata: maps.Clone(m.announced.Metadata)})
	if err := m.caps.Announce(m.withExtras(s)); err != nil {
		return err
	}
	m.announced = s
	return nil
}

// reannounce announces the last set again with fresh extras, after what
// the mesh knows about itself changed.
func (m *Mesh) reannounce() error {
	m.announceMu.Lock()
	defer m.announceMu.Unlock()
	return m.caps.Announce(m.withExtras(m.announced))
}

// withExtras returns s with the mesh's own additions.
func (m *Mesh) withExtras(s capability.Set) capability.Set {
	if m.subnetTag != "" && !slices.Contains(s.Tags, m.subnetTag) {
		s.Tags = append(slices.Clip(s.Tags), m.subnetTag)
	}
	if r := m.ReflexAddr(); r.IsValid() {
		md := maps.Clone(s.Metadata)
		if md == nil {
			md = make(map[string]string, 1)
		}
		md[reflexKey] = r.String()
		s.Metadata = md
	}
	return s
}

// reflexKey is the metadata key of a node's reflexive address.
const reflexKey = "reflex"

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
