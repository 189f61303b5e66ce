//go:build nat

package mesh

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/nat"
)

// natState holds the NAT traversal engine, set by Start.
type natState struct {
	e atomic.Pointer[nat.Engine]
}

// startNAT creates the engine, routes NAT frames (and STUN messages, with
// STUN servers configured) to it and starts it. Start calls it once the sockets are open.
func (m *Mesh) startNAT() {
	c := m.cfg.NAT
	if c.Logger == nil {
		c.Logger = m.log
	}
	user := c.OnReflexChange
	c.OnReflexChange = func(a netip.AddrPort) {
		m.reflexChanged()
		if user != nil {
			user(a)
		}
	}
	e := nat.New(natTransport{m}, c)
	if err := m.Handle(protoNAT, func(from *Peer, body []byte) { e.HandleFrame(from.id, body) }); err != nil {
		m.log.Error("NAT frames already handled; NAT traversal off", "err", err)
		return
	}
	if len(c.STUNServers) > 0 {
		// Without servers every STUN message is unsolicited: leave them to
		// the reader, which drops and counts them.
		stun := func(b []byte, from netip.AddrPort) { e.HandleSTUN(b, from) }
		m.tr.stun.Store(&stun)
	}
	m.nat.e.Store(e)
	e.Start()
}

// reflexChanged announces the mesh's part again when the node's reflex
// address changed on its own (STUN measured another, a port mapping came
// or went): peers outside the NAT learn where to reach it without waiting
// for the application to announce. A node that announces nothing (it
// never announced, withdrew, or is leaving) only keeps the new part for
// its next announcement; an operator's SetReflexOverride announces in any
// case.
func (m *Mesh) reflexChanged() {
	cur := m.selfCapabilities()
	if cur.Equal(m.caps.Announced(meshLayer)) {
		return
	}
	if err := m.caps.RefreshLayer(meshLayer, cur); err != nil {
		m.log.Warn("announcing the new reflex address failed", "err", err)
	}
}

// stopNAT stops the engine. Close calls it.
func (m *Mesh) stopNAT() {
	if e := m.nat.e.Load(); e != nil {
		e.Close()
	}
}

// engine returns the NAT engine, or an error before Start.
func (m *Mesh) engine() (*nat.Engine, error) {
	if m.tr.closed.Load() {
		return nil, ErrClosed
	}
	if e := m.nat.e.Load(); e != nil {
		return e, nil
	}
	return nil, ErrNotStarted
}

// NATType returns the node's NAT classification: NATUnknown until two
// destinations (STUN servers or directly connected peers) reported the
// node's reflexive address.
func (m *Mesh) NATType() NATType {
	if e, err := m.engine(); err == nil {
		return e.Type()
	}
	return NATUnknown
}

// ReflexAddr returns the address peers can reach this node at: the
// reflex override if set, else the measured reflexive address; the zero
// AddrPort until measured.
func (m *Mesh) ReflexAddr() netip.AddrPort {
	if e, err := m.engine(); err == nil {
		return e.ReflexAddr()
	}
	return netip.AddrPort{}
}

// ReclassifyNAT measures the reflexive address with every configured STUN
// server and up to three directly connected peers, and classifies the
// NAT. The node also does this on its own: at Start with STUN servers,
// when its local address changes, and every NATConfig.ReclassifyInterval.
func (m *Mesh) ReclassifyNAT(ctx context.Context) (NATType, error) {
	e, err := m.engine()
	if err != nil {
		return NATUnknown, err
	}
	return e.Reclassify(ctx)
}

// ProbeReflex asks p, a peer with a direct session, what address it sees
// this node at.
func (m *Mesh) ProbeReflex(ctx context.Context, p *Peer) (netip.AddrPort, error) {
	e, err := m.engine()
	if err != nil {
		return netip.AddrPort{}, err
	}
	return e.ProbeReflex(ctx, p.id)
}

// ConnectDirect tries to make the session with p direct. coordinator, a
// peer both nodes have direct sessions with (typically the relay), tells
// each side the other's NAT type and candidate addresses; unless both NATs
// are symmetric, both sides then probe each other at once, and the first
// authenticated packet that arrives directly switches the path. It returns
// nil when the path is direct. Otherwise it returns a *NATError, the
// session stays relayed and PeerStats.PathReason says why; the node
// retries later with backoff.
func (m *Mesh) ConnectDirect(ctx context.Context, p, coordinator *Peer) error {
	e, err := m.engine()
	if err != nil {
		return err
	}
	return e.ConnectDirect(ctx, p.id, coordinator.id)
}

// SetReflexOverride sets the address peers should use to reach this node,
// for operators with a known public address or port forward. It is the
// first candidate in introductions, and the pair matrix treats the node as
// open. It is announced at once (metadata "reflex"), and the punches that
// failed are tried again.
func (m *Mesh) SetReflexOverride(addr netip.AddrPort) error {
	e, err := m.engine()
	if err != nil {
		return err
	}
	if err := e.SetReflexOverride(addr); err != nil {
		return err
	}
	return m.reannounce() // also for a node that announces nothing yet
}

// ClearReflexOverride removes the reflex override.
func (m *Mesh) ClearReflexOverride() error {
	e, err := m.engine()
	if err != nil {
		return err
	}
	e.ClearReflexOverride()
	return m.reannounce()
}

// TraversalStats returns a snapshot of NAT traversal.
func (m *Mesh) TraversalStats() TraversalStats {
	e := m.nat.e.Load()
	if e == nil {
		return TraversalStats{Enabled: true}
	}
	return e.Stats()
}

// natTransport is the mesh as the NAT engine sees it.
type natTransport struct{ m *Mesh }

func (t natTransport) SendRaw(addr netip.AddrPort, b []byte) error { return t.m.tr.sendRaw(addr, b) }

func (t natTransport) Send(id identity.NodeID, msg []byte) error {
	p := t.m.Peer(id)
	if p == nil {
		return ErrUnknownPeer
	}
	return t.m.SendFrame(p, protoNAT, msg)
}

func (t natTransport) Path(id identity.NodeID) (netip.AddrPort, bool) {
	p := t.m.Peer(id)
	if p == nil || p.cur.Load() == nil {
		return netip.AddrPort{}, false
	}
	if ep := p.ep.Load(); ep != nil && ep.relay == nil {
		return ep.addr, true
	}
	return netip.AddrPort{}, true
}

func (t natTransport) DirectPeers() []identity.NodeID {
	var out []identity.NodeID
	for _, p := range t.m.Peers() {
		if ep := p.ep.Load(); p.cur.Load() != nil && ep != nil && ep.relay == nil {
			out = append(out, p.id)
		}
	}
	return out
}

func (t natTransport) Probe(id identity.NodeID, addr netip.AddrPort) error {
	p := t.m.Peer(id)
	if p == nil {
		return ErrUnknownPeer
	}
	s := t.m.tr.sockFor(addr)
	if s == nil {
		return ErrNoAddress
	}
	return t.m.tr.probeDirect(p, &endpoint{addr: addr, sock: s})
}

func (t natTransport) LocalAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range t.m.ListenAddrs() {
		if !a.Addr().IsUnspecified() {
			out = append(out, a)
			continue
		}
		ifaddrs, err := net.InterfaceAddrs()
		if err != nil {
			continue
		}
		for _, ia := range ifaddrs {
			pfx, err := netip.ParsePrefix(ia.String())
			if err == nil && pfx.Addr().Is4() == a.Addr().Is4() {
				out = append(out, netip.AddrPortFrom(pfx.Addr(), a.Port()))
			}
		}
	}
	return out
}

// SetPathReason replaces a relayed endpoint with a copy carrying why. It
// never changes the path: if the path moved meanwhile, it does nothing.
func (t natTransport) SetPathReason(id identity.NodeID, why string) {
	p := t.m.Peer(id)
	if p == nil {
		return
	}
	ep := p.ep.Load()
	if ep == nil || ep.relay == nil {
		return
	}
	n := *ep
	n.why = why
	p.ep.CompareAndSwap(ep, &n)
}
