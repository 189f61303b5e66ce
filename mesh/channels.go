package mesh

import (
	"context"
	"crypto/ed25519"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
)

// Channels: every node runs a channel.Engine. Subscribe requests, acks and
// publishes travel on the channel protocol's reliable streams, which
// keep each subscriber's messages in order and carry publishes larger than
// a datagram.

func (m *Mesh) newChannels(opt channel.Options) error {
	if opt.Logger == nil {
		opt.Logger = m.log
	}
	if opt.InGroup == nil {
		opt.InGroup = m.InGroup // certificate groups (membership.go)
	}
	e, err := channel.New(m.id, chanTransport{m}, opt)
	if err != nil {
		return err
	}
	m.chans = e
	if !opt.Subnet.IsZero() {
		// Others derive this node's subnet from its announcement.
		m.subnetTag = channel.SubnetTag(opt.Subnet)
		if err := m.reannounce(); err != nil {
			return err
		}
	}
	if err := m.handleMessagesInline(protoChannel, func(p *Peer, msg []byte) { e.HandleMessage(p.id, msg) }); err != nil {
		return err
	}
	return nil
}

// chanTransport is the channel engine's view of the mesh.
type chanTransport struct{ m *Mesh }

func (t chanTransport) Send(to identity.NodeID, msg []byte) error {
	p := t.m.Peer(to)
	if p == nil {
		return ErrUnknownPeer
	}
	return t.m.sendMessage(p, protoChannel, msg)
}

// SendWait is Send waiting, until ctx ends, while the peer's stream
// window is full (channel.Waiter): Publish waits for a subscriber node
// slower than this one as a TCP sender waits for its window.
func (t chanTransport) SendWait(ctx context.Context, to identity.NodeID, msg []byte) error {
	p := t.m.Peer(to)
	if p == nil {
		return ErrUnknownPeer
	}
	out, err := t.m.engineStream(p, protoChannel)
	if err != nil {
		return err
	}
	return out.SendBlocking(ctx, msg)
}

// Reach dials the node id in the background unless a session with it is
// up or such a dial runs: the engine asks it when it subscribes again to
// a publisher it lost, from the engine loop (which Close waits for, so
// the dial is counted before Close waits for it).
func (t chanTransport) Reach(id identity.NodeID) {
	m := t.m
	if p := m.Peer(id); p != nil && p.IsUp() || m.tr.closed.Load() {
		return
	}
	if _, busy := m.reaching.LoadOrStore(id, struct{}{}); busy {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.reaching.Delete(id)
		ctx, cancel := context.WithTimeout(m.tr.ctx, m.tr.t.giveUp)
		defer cancel()
		if _, err := m.ConnectNode(ctx, id, nil); err != nil {
			m.log.Debug("channel publisher unreachable", "publisher", id.Short(), "err", err)
		}
	}()
}

func (t chanTransport) PeerInfo(id identity.NodeID) (capability.Node, ed25519.PublicKey, bool) {
	m := t.m
	node, ok := m.caps.Index().Lookup(id)
	if !ok {
		node = capability.Node{ID: id}
	}
	switch p := m.Peer(id); {
	case id == m.ID():
		return node, m.id.PublicKey(), true
	case p != nil:
		return node, p.key, true
	case ok:
		return node, node.Key, true
	}
	return node, nil, false
}

// RegisterChannel publishes channel name from this node with cfg, or
// replaces its config (current subscribers are checked again at once).
func (m *Mesh) RegisterChannel(name string, cfg channel.Config) error {
	return m.chans.Register(name, cfg)
}

// UnregisterChannel stops publishing channel name; its subscribers are
// told the channel ended.
func (m *Mesh) UnregisterChannel(name string) { m.chans.Unregister(name) }

// SubscribeChannel asks publisher for channel name and waits for its
// answer: a subscription, or a *channel.RejectError saying why not. token
// may be nil for channels that do not require one.
func (m *Mesh) SubscribeChannel(ctx context.Context, publisher identity.NodeID, name string, token *identity.PermissionToken) (*channel.Subscription, error) {
	return m.chans.Subscribe(ctx, publisher, name, token)
}

// Publish sends payload to every current authorised subscriber of channel
// name and reports who got it. It waits up to the channel's
// Config.PublishWait for subscribers whose stream window is full.
func (m *Mesh) Publish(ctx context.Context, name string, payload []byte) (channel.PublishReport, error) {
	return m.chans.Publish(ctx, name, payload)
}

// PublishMany publishes several payloads in order.
func (m *Mesh) PublishMany(ctx context.Context, name string, payloads [][]byte) ([]channel.PublishReport, error) {
	return m.chans.PublishMany(ctx, name, payloads)
}

// Channels returns the node's channel engine, for Stats, Revoke and
// Subscribers.
func (m *Mesh) Channels() *channel.Engine { return m.chans }
