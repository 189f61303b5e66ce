package mesh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/membership"
)

// Membership: closed meshes (docs/SECURITY.md, Membership). The handshake
// side, who is admitted, is admission.go; this file is the node's side:
// its configuration, its own certificate and its renewal, pairing, and
// the membership messages members exchange on their sessions
// (revocations, which are gossiped like capability announcements,
// renewed and issued certificates, renewal requests).

// MembershipConfig configures who may join the mesh through this node.
// The zero value is an open mesh: any node that can reach this one may
// connect (the demo's and the tests' mode).
type MembershipConfig struct {
	// Authorities are the membership authorities' ed25519 keys. With any,
	// the mesh is closed: a peer must present a valid certificate from
	// one of them in its handshake, or it is refused before any state is
	// kept for it (at most membership.MaxAuthorities keys).
	Authorities []ed25519.PublicKey

	// Certificate is this node's own membership certificate, presented
	// in every handshake. Required in a closed mesh (its peers refuse a
	// node without one); SetCertificate replaces it at run time.
	Certificate *identity.Certificate

	// Authority is an authority key this node holds, if any. The node
	// then trusts it (it runs closed), issues itself a certificate if
	// Certificate is nil (named after its NodeID, renewed in time), hands
	// out pairing codes
	// (NewPairingCode) and admits nodes that prove they know one, renews
	// the certificates it issued when their holders ask (it announces the
	// metadata key "member-issuer" so they find it), and signs
	// revocations (Revoke). An authority key is the key to the whole
	// mesh: see docs/OPERATIONS.md before putting one on a node.
	Authority *identity.Identity

	// Revocations are revocations known at start (a node keeps the ones
	// it learns across restarts; see OnRevocation). Those of authorities
	// not trusted are ignored.
	Revocations []*identity.Revocation

	// OnRevocation is called with every new revocation the node accepts,
	// from gossip or Revoke, so it can be kept across restarts. It runs
	// on the goroutine that received it and must not block.
	OnRevocation func(*identity.Revocation)

	// OnCertificate is called when the node's certificate is renewed
	// online, so it can be kept. It must not block.
	OnCertificate func(*identity.Certificate)

	// DisableRenewal turns off online renewal: the node does not ask an
	// issuer for a new certificate when two thirds of its own have
	// passed (renew offline and SetCertificate instead).
	DisableRenewal bool

	// PairingBurst and PairingInterval are the budget of pairing attempts
	// per source of a node with an Authority: PairingBurst at once, then
	// one per PairingInterval. Zero means membership's defaults (5, 10 s).
	PairingBurst    int
	PairingInterval time.Duration
}

// The membership protocols. Named, so that they take no fixed number.
var (
	// protoMember carries membership messages (engine messages).
	protoMember = MustProtocol("netmesh/member")
	// protoRefuse carries a refusal on a session this node never
	// confirms (admission.go); on any other session it is ignored.
	protoRefuse = MustProtocol("netmesh/refuse")
)

// issuerKey is the metadata key under which a node holding an authority
// key announces it (hex), so members find it to renew.
const issuerKey = "member-issuer"

// ErrNotMember matches every MembershipError.
var ErrNotMember = errors.New("mesh: membership refused")

// memberState is the Mesh's membership bookkeeping beside the transport's
// admission.
type memberState struct {
	renewing  atomic.Bool  // a renewal request is in flight
	lastRenew atomic.Int64 // unix ns of the last renewal request
	renewals  atomic.Uint64
	issued    atomic.Uint64
}

// newMembership sets up membership from m.cfg.Membership.
func (m *Mesh) newMembership() error {
	cfg := &m.cfg.Membership
	if err := m.tr.adm.init(cfg); err != nil {
		return err
	}
	c := cfg.Certificate
	if is := m.tr.adm.issuer; c == nil && is != nil {
		var err error
		if c, err = is.Issue(m.id.PublicKey(), m.ID().Short(), nil, membership.DefaultCertValidity, time.Now()); err != nil {
			return err
		}
	}
	if c != nil {
		if err := m.checkOwn(c); err != nil {
			return err
		}
		if err := m.tr.adm.setOwn(c); err != nil {
			return err
		}
	}
	if err := m.handleMessages(protoMember, m.memberMessage); err != nil {
		return err
	}
	if err := m.Handle(protoRefuse, func(*Peer, []byte) {}); err != nil {
		return err
	}
	if is := m.tr.adm.issuer; is != nil {
		s := capability.Set{Metadata: map[string]string{issuerKey: hex.EncodeToString(is.Key())}}
		if err := m.AnnounceLayerCapabilities("membership", s); err != nil {
			return err
		}
	}
	return nil
}

// checkOwn checks a certificate this node is to present.
func (m *Mesh) checkOwn(c *identity.Certificate) error {
	if err := c.Verify(time.Now(), m.id.PublicKey(), []ed25519.PublicKey{c.Authority}); err != nil {
		return fmt.Errorf("mesh: own certificate: %w", err)
	}
	if v := m.tr.adm.v; v.Closed() && !v.Trusts(c.Authority) {
		return fmt.Errorf("mesh: own certificate: %w: its authority %s is not among the trusted ones",
			identity.ErrCertUntrusted, identity.KeyFingerprint(c.Authority))
	}
	return nil
}

// Certificate returns the node's membership certificate, or nil.
func (m *Mesh) Certificate() *identity.Certificate {
	if own := m.tr.adm.own.Load(); own != nil {
		return own.cert
	}
	return nil
}

// SetCertificate makes c the node's certificate (a renewal, or a new
// file read without a restart): it must be for this node's key, correctly
// signed, valid now and, in a closed mesh, from a trusted authority. The
// node presents it from its next handshake on and sends it at once to
// every peer, so no session drops when the old one expires.
func (m *Mesh) SetCertificate(c *identity.Certificate) error {
	if err := m.checkOwn(c); err != nil {
		return err
	}
	if err := m.tr.adm.setOwn(c); err != nil {
		return err
	}
	b, err := (&membership.Message{Type: membership.MsgCertificate, Certificate: c}).MarshalBinary()
	if err != nil {
		return err
	}
	for _, p := range m.memberPeers(nil) {
		m.sendMember(p, b)
	}
	m.log.Info("membership certificate replaced", "certificate", c)
	return nil
}

// Certificate returns the peer's verified membership certificate: nil in
// an open mesh, or before the peer's first handshake.
func (p *Peer) Certificate() *identity.Certificate {
	if mc := p.member.Load(); mc != nil {
		return mc.cert
	}
	return nil
}

// PeerCertificate returns the verified certificate of node id: this
// node's own for its own id, a peer's (Peer.Certificate), or nil.
func (m *Mesh) PeerCertificate(id identity.NodeID) *identity.Certificate {
	if id == m.ID() {
		return m.Certificate()
	}
	if p := m.Peer(id); p != nil {
		return p.Certificate()
	}
	return nil
}

// InGroup reports whether node id holds a certificate naming any of
// groups (identity.Certificate.InGroup): the check behind the group
// policies of channels, rpc and tasks. Without a certificate, or with no
// groups asked for, it is false.
func (m *Mesh) InGroup(id identity.NodeID, groups ...string) bool {
	return m.PeerCertificate(id).InGroup(groups...)
}

// ClosedMesh reports whether this node admits members only.
func (m *Mesh) ClosedMesh() bool { return m.tr.closedMesh() }

// MembershipStats is a snapshot of the node's membership counters.
type MembershipStats struct {
	// Closed: the node admits members only.
	Closed bool
	// Revocations is the number of revocations held.
	Revocations int
	// Signatures counts certificate signatures checked; CacheHits the
	// certificates checked again without one (the same peer
	// re-handshaking).
	Signatures, CacheHits uint64
	// Renewals counts this node's certificate renewed online; Issued the
	// certificates it issued (pairings and renewals of others).
	Renewals, Issued uint64
}

// MembershipStats returns the node's membership counters.
func (m *Mesh) MembershipStats() MembershipStats {
	vs := m.tr.adm.v.Stats()
	return MembershipStats{
		Closed: m.tr.closedMesh(), Revocations: vs.Revocations,
		Signatures: vs.Signatures, CacheHits: vs.CacheHits,
		Renewals: m.mem.renewals.Load(), Issued: m.mem.issued.Load(),
	}
}

// NewPairingCode hands out a one-time code that admits one new node with
// the certificate g describes (see Pair). It fails with
// membership.ErrNotIssuer unless the node holds an authority key.
func (m *Mesh) NewPairingCode(g membership.Grant) (membership.Code, error) {
	is := m.tr.adm.issuer
	if is == nil {
		return membership.Code{}, membership.ErrNotIssuer
	}
	return is.NewPairingCode(g, time.Now())
}

// Pair joins a mesh with a pairing code: it handshakes (XX, so the node
// must not run IKOnly) with the node that handed the code out, at addr
// (pinned to id unless zero), proving
// that it knows the code in a way bound to that handshake, and returns
// the certificate the node issued it once the node proved it knows the
// code too. The certificate becomes this node's (SetCertificate is not
// needed); keep it (identity.SaveCertificate) and trust its authority on
// the next start. The session with the issuer stays up.
func (m *Mesh) Pair(ctx context.Context, addr netip.AddrPort, id identity.NodeID, code membership.Code) (*identity.Certificate, error) {
	if !m.tr.started.Load() {
		return nil, ErrNotStarted
	}
	p, pr, err := m.tr.pair(ctx, addr, id, code)
	if err != nil {
		return nil, err
	}
	defer m.tr.takePairing(p.id)
	select {
	case c := <-pr.result:
		if c == nil {
			return nil, fmt.Errorf("mesh: pairing: %s did not prove it knows the code", p.id.Short())
		}
		if err := m.tr.adm.setOwn(c); err != nil {
			return nil, err
		}
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pair runs a pairing dial to addr (see Mesh.Pair).
func (t *transport) pair(ctx context.Context, addr netip.AddrPort, id identity.NodeID, code membership.Code) (*Peer, *pairing, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	sock := t.sockFor(addr)
	if !addr.IsValid() || addr.Port() == 0 || sock == nil {
		return nil, nil, fmt.Errorf("mesh: pair: cannot reach %v", addr)
	}
	pr := &pairing{code: code, result: make(chan *identity.Certificate, 1)}
	t.hs.mu.Lock()
	d := &dial{path: &endpoint{addr: addr, sock: sock}, pin: Pin{ID: id}, started: t.now(), done: make(chan struct{}), pair: pr}
	t.attemptLocked(d)
	t.hs.mu.Unlock()
	p, err := t.waitDial(ctx, d)
	if err != nil {
		t.hs.mu.Lock()
		for id, q := range t.adm.pairs {
			if q == pr {
				delete(t.adm.pairs, id) // the issuer answered, then refused
			}
		}
		t.hs.mu.Unlock()
	}
	return p, pr, err
}

// Revoke revokes every certificate this node's authority issued for
// nodeKey until now: the revocation is kept, gossiped to every member,
// and each of them ends its sessions with the node. It fails with
// membership.ErrNotIssuer unless the node holds an authority key.
func (m *Mesh) Revoke(nodeKey ed25519.PublicKey) (*identity.Revocation, error) {
	is := m.tr.adm.issuer
	if is == nil {
		return nil, membership.ErrNotIssuer
	}
	r, err := is.Revoke(nodeKey, time.Now())
	if err != nil {
		return nil, err
	}
	return r, m.AddRevocation(r)
}

// AddRevocation takes a revocation signed elsewhere (an offline
// authority's): it must be from a trusted authority and correctly
// signed. It is kept, gossiped, and ends the sessions with the node it
// revokes, as Revoke's own.
func (m *Mesh) AddRevocation(r *identity.Revocation) error {
	_, err := m.applyRevocations(nil, []*identity.Revocation{r})
	return err
}

// Revocations returns the revocations the node holds, oldest first.
func (m *Mesh) Revocations() []*identity.Revocation { return m.tr.adm.v.Revocations() }

// applyRevocations keeps the new ones of rs (from peer from, or nil for
// this node's own), expels the peers they revoke and gossips them on. It
// returns how many were new, and the first error of a revocation it
// refused.
func (m *Mesh) applyRevocations(from *Peer, rs []*identity.Revocation) (int, error) {
	now := time.Now()
	var fresh []*identity.Revocation
	var first error
	for _, r := range rs {
		ok, err := m.tr.adm.v.AddRevocation(r, now)
		if err != nil {
			m.log.Debug("membership: revocation refused", "revocation", r, "err", err)
			first = cmpErr(first, err)
			continue
		}
		if ok {
			fresh = append(fresh, r)
		}
	}
	if len(fresh) == 0 {
		return 0, first
	}
	for _, r := range fresh {
		m.log.Warn("membership revoked", "revocation", r)
		if cb := m.cfg.Membership.OnRevocation; cb != nil {
			cb(r)
		}
	}
	m.tr.sweepMembers()
	msgs, err := membership.RevocationMessages(fresh)
	if err != nil {
		return len(fresh), err
	}
	for _, p := range m.memberPeers(from) {
		for _, b := range msgs {
			m.sendMember(p, b)
		}
	}
	return len(fresh), first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// memberPeers returns the up peers that are members, but except.
func (m *Mesh) memberPeers(except *Peer) []*Peer {
	var ps []*Peer
	for _, p := range m.tr.peers.all() {
		if p != except && p.IsUp() && m.tr.isMember(p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// sendMember sends a membership message to p. It never blocks: when the
// stream's window is full it hands the message to a goroutine that waits
// for room (memberSendTimeout at most), since a revocation must not be
// lost to back-pressure.
func (m *Mesh) sendMember(p *Peer, b []byte) {
	err := m.sendMessage(p, protoMember, b)
	if !errors.Is(err, ErrBackpressure) {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.tr.ctx, memberSendTimeout)
		defer cancel()
		out, err := m.engineStream(p, protoMember)
		if err == nil {
			err = out.SendBlocking(ctx, b)
		}
		if err != nil {
			m.log.Warn("membership: message to peer lost", "peer", p.id.Short(), "err", err)
		}
	}()
}

// memberMessage handles a membership message from p.
func (m *Mesh) memberMessage(p *Peer, b []byte) {
	msg, err := membership.DecodeMessage(b)
	if err != nil {
		m.log.Debug("membership: malformed message", "peer", p.id.Short(), "err", err)
		return
	}
	switch msg.Type {
	case membership.MsgRevocations:
		m.applyRevocations(p, msg.Revocations)
	case membership.MsgCertificate:
		m.peerRenewed(p, msg.Certificate)
	case membership.MsgRenew:
		m.renewFor(p)
	case membership.MsgIssued:
		m.receiveIssued(p, msg)
	}
}

// peerRenewed takes a peer's renewed certificate.
func (m *Mesh) peerRenewed(p *Peer, c *identity.Certificate) {
	if !m.tr.closedMesh() {
		return
	}
	if r := m.tr.adm.v.CheckCertificate(c, p.key, time.Now()); r != membership.ReasonNone {
		m.log.Debug("membership: renewed certificate refused", "peer", p.id.Short(), "reason", r.String())
		return
	}
	p.member.Store(m.tr.memberCertOf(c))
}

// renewFor answers a member's renewal request, if this node issued its
// certificate and it is due.
func (m *Mesh) renewFor(p *Peer) {
	is := m.tr.adm.issuer
	mc := p.member.Load()
	if is == nil || mc == nil || !m.tr.isMember(p) || m.tr.adm.v.Revoked(mc.cert) {
		return
	}
	c, err := is.Renew(mc.cert, time.Now())
	if err != nil {
		m.log.Debug("membership: renewal refused", "peer", p.id.Short(), "err", err)
		return
	}
	b, err := (&membership.Message{Type: membership.MsgIssued, Certificate: c}).MarshalBinary()
	if err != nil {
		return
	}
	p.member.Store(m.tr.memberCertOf(c))
	m.mem.issued.Add(1)
	m.log.Info("membership: renewed a member's certificate", "peer", p.id.Short(), "certificate", c)
	m.sendMember(p, b)
}

// issued sends p the certificate this node issued it in a pairing
// handshake (the transport calls it).
func (m *Mesh) issued(p *Peer, c *identity.Certificate, confirm []byte) {
	b, err := (&membership.Message{Type: membership.MsgIssued, Certificate: c, Confirmation: confirm}).MarshalBinary()
	if err != nil {
		return
	}
	m.mem.issued.Add(1)
	m.sendMember(p, b)
}

// receiveIssued takes a certificate issued to this node: the end of a
// pairing, or a renewal.
func (m *Mesh) receiveIssued(p *Peer, msg *membership.Message) {
	c, now := msg.Certificate, time.Now()
	if pr := m.tr.takePairing(p.id); pr != nil {
		ok := hmac.Equal(msg.Confirmation, pr.code.Confirmation(pr.binding)) &&
			c.Verify(now, m.id.PublicKey(), []ed25519.PublicKey{c.Authority}) == nil
		if !ok {
			c = nil
		}
		pr.result <- c
		return
	}
	own := m.tr.adm.own.Load()
	if own == nil || !bytes.Equal(c.Authority, own.cert.Authority) || !c.NotAfter.After(own.cert.NotAfter) ||
		c.Verify(now, m.id.PublicKey(), []ed25519.PublicKey{c.Authority}) != nil {
		m.log.Debug("membership: issued certificate refused", "peer", p.id.Short(), "certificate", c)
		return
	}
	m.renewed(c)
}

// renewed installs c, this node's renewed certificate.
func (m *Mesh) renewed(c *identity.Certificate) {
	if err := m.SetCertificate(c); err != nil {
		m.log.Warn("membership: renewed certificate not usable", "err", err)
		return
	}
	m.mem.renewals.Add(1)
	if cb := m.cfg.Membership.OnCertificate; cb != nil {
		cb(c)
	}
}

// memberPeerUp sends a peer that came up every revocation this node
// holds, so a member that was away learns what it missed.
func (m *Mesh) memberPeerUp(id identity.NodeID) {
	p := m.Peer(id)
	rs := m.tr.adm.v.Revocations()
	if p == nil || len(rs) == 0 || !m.tr.isMember(p) {
		return
	}
	msgs, err := membership.RevocationMessages(rs)
	if err != nil {
		return
	}
	for _, b := range msgs {
		m.sendMember(p, b)
	}
}

// memberTick runs every second on the engine loop: it expels peers whose
// certificate expired or was revoked, forgets expired revocations, and
// renews this node's certificate when it is due.
func (m *Mesh) memberTick() {
	m.tr.sweepMembers()
	now := time.Now()
	m.tr.adm.v.Prune(now)
	own := m.tr.adm.own.Load()
	if own == nil || m.cfg.Membership.DisableRenewal || now.Before(membership.RenewAt(own.cert)) {
		return
	}
	if is := m.tr.adm.issuer; is != nil && bytes.Equal(is.Key(), own.cert.Authority) {
		if c, err := is.Renew(own.cert, now); err == nil {
			m.renewed(c)
		}
		return
	}
	if now.UnixNano()-m.mem.lastRenew.Load() < int64(renewRetry) || !m.mem.renewing.CompareAndSwap(false, true) {
		return
	}
	m.mem.lastRenew.Store(now.UnixNano())
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.mem.renewing.Store(false)
		m.askRenewal(own.cert)
	}()
}

// askRenewal asks a node that holds c's authority key (found by its
// announcement) to renew c.
func (m *Mesh) askRenewal(c *identity.Certificate) {
	ctx, cancel := context.WithTimeout(m.tr.ctx, renewTimeout)
	defer cancel()
	f := capability.Equals(issuerKey, hex.EncodeToString(c.Authority))
	for _, n := range m.FindNodes(f) {
		if n.ID == m.ID() {
			continue
		}
		p, err := m.ConnectNode(ctx, n.ID, n.Key)
		if err != nil {
			m.log.Debug("membership: issuer unreachable", "issuer", n.ID.Short(), "err", err)
			continue
		}
		b, _ := (&membership.Message{Type: membership.MsgRenew}).MarshalBinary()
		if err := m.sendMessage(p, protoMember, b); err == nil {
			m.log.Info("membership: asked for a renewed certificate", "issuer", n.ID.Short())
			return
		}
	}
	m.log.Warn("membership: certificate due for renewal, but no issuer answered", "expires", c.NotAfter)
}
