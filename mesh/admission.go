package mesh

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/membership"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// Admission: who the handshake lets in (docs/SECURITY.md, Membership).
//
// A node that trusts membership authorities (Config.Membership) runs a
// closed mesh: a peer is admitted only with a valid certificate, carried
// in the handshake's extensions (wire.ExtCertificate) and checked by
// membership.Verifier on the handshake worker, once per certificate,
// before any peer or session is made for it. A refused initiator learns
// why, and only it: an IK initiator from a refusal in the (encrypted)
// response, an XX initiator from one data packet sealed with the keys of
// the handshake it just completed, which the responder then forgets.
// Neither is larger than the message it answers. Both sides check: an
// initiator refuses a responder without a valid certificate too.
//
// A peer's verified certificate stays with the Peer (Peer.Certificate)
// for the policies above (groups). The engine loop expels a peer whose
// certificate expires or is revoked; engine messages and routed packets
// from a peer that is no longer a member are dropped meanwhile.
//
// Pairing: a node that holds an authority key admits a node without a
// certificate that proves, in its XX final message, that it knows a
// one-time pairing code (wire.ExtPairingProof: a MAC of the handshake
// hash keyed by the code); it issues the certificate there and then and
// hands it over on the membership protocol (membership.go).

// maxCertExt is the largest certificate extension.
const maxCertExt = wire.ExtHeaderSize + identity.MaxCertificateSize

// admission is the transport's membership state.
type admission struct {
	v      *membership.Verifier // no authorities: an open mesh
	issuer *membership.Issuer   // nil unless the node holds an authority key
	own    atomic.Pointer[ownCert]
	// pairs are the pairing dials that wait for their certificate, by
	// the issuer's NodeID. Guarded by hs.mu.
	pairs map[identity.NodeID]*pairing
}

// ownCert is this node's certificate and the extension that carries it.
type ownCert struct {
	cert *identity.Certificate
	ext  []byte
}

// memberCert is a peer's verified certificate.
type memberCert struct {
	cert  *identity.Certificate
	until int64 // mono ns of cert.NotAfter
}

// pairing is a pairing dial's state: its code, and once the issuer
// answered, the handshake hash its proof was bound to.
type pairing struct {
	code    membership.Code
	binding []byte
	result  chan *identity.Certificate // 1 slot: the verified certificate
}

func (a *admission) init(cfg *MembershipConfig) error {
	trusted := slices.Clone(cfg.Authorities)
	if cfg.Authority != nil {
		// A node that issues certificates trusts them: it runs closed.
		trusted = append(trusted, cfg.Authority.PublicKey())
		a.issuer = membership.NewIssuer(cfg.Authority, membership.IssuerOptions{
			PairingBurst: cfg.PairingBurst, PairingInterval: cfg.PairingInterval,
		})
	}
	v, err := membership.NewVerifier(trusted)
	if err != nil {
		return err
	}
	for _, r := range cfg.Revocations {
		if _, err := v.AddRevocation(r, time.Now()); err != nil && !errors.Is(err, membership.ErrUntrustedRevocation) {
			return fmt.Errorf("mesh: revocation %v: %w", r, err)
		}
	}
	a.v = v
	a.pairs = make(map[identity.NodeID]*pairing)
	return nil
}

// setOwn makes c the certificate this node presents.
func (a *admission) setOwn(c *identity.Certificate) error {
	b, err := c.MarshalBinary()
	if err != nil {
		return err
	}
	a.own.Store(&ownCert{cert: c, ext: wire.AppendExtension(nil, wire.ExtCertificate, b)})
	return nil
}

// closed reports whether peers must be members.
func (t *transport) closedMesh() bool { return t.adm.v.Closed() }

// isMember reports whether p counts as a member: in an open mesh every
// peer, in a closed one a peer whose verified certificate has not expired
// (revocations expel it, see expel). It costs two atomic loads and a
// clock read.
func (t *transport) isMember(p *Peer) bool {
	if !t.adm.v.Closed() {
		return true
	}
	mc := p.member.Load()
	return mc != nil && t.now() < mc.until
}

// peerExt is what a peer's handshake extensions hold.
type peerExt struct {
	cert    []byte
	proof   []byte
	refusal membership.Reason
}

// parsePeerExt reads an extension block, skipping types it does not know.
func parsePeerExt(b []byte) (peerExt, error) {
	var e peerExt
	for len(b) > 0 {
		t, v, rest, err := wire.ParseExtension(b)
		if err != nil {
			return e, err
		}
		switch t {
		case wire.ExtCertificate:
			e.cert = v
		case wire.ExtPairingProof:
			e.proof = v
		case wire.ExtRefusal:
			if len(v) != 1 || !membership.Reason(v[0]).Valid() {
				return e, wire.ErrShort
			}
			e.refusal = membership.Reason(v[0])
		}
		b = rest
	}
	return e, nil
}

// initiationExt returns the extensions of an initiation: this node's
// certificate (in an IK initiation; an XX initiation is clear text), and
// in a closed mesh room for the responder's: the responder never answers
// with more bytes than the initiation had.
func (t *transport) initiationExt(pattern noise.Pattern) []byte {
	closed := t.adm.v.Closed()
	if pattern == noise.PatternXX {
		if closed {
			return make([]byte, maxCertExt) // padding: room for the response's certificate
		}
		return nil
	}
	var ext []byte
	if own := t.adm.own.Load(); own != nil {
		ext = slices.Clip(own.ext)
	}
	if room := maxCertExt - (noise.IKInitiationSize - noise.IKResponseSize) - len(ext); closed && room > 0 {
		ext = wire.AppendExtension(ext, wire.ExtPadding, make([]byte, max(0, room-wire.ExtHeaderSize)))
	}
	return ext
}

// replyExt returns the extensions of the answer to an initiation of n
// Noise bytes whose answer without extensions has base bytes: this node's
// certificate, if it fits in what the initiation allows.
func (t *transport) replyExt(n, base int) []byte {
	if own := t.adm.own.Load(); own != nil && base+len(own.ext) <= n {
		return own.ext
	}
	return nil
}

// checkPeer decides whether the peer that authenticated with key, and
// whose handshake carried e, is admitted: in an open mesh always (its
// certificate is neither checked nor kept), in a closed one with a
// certificate that verifies.
func (t *transport) checkPeer(key ed25519.PublicKey, e peerExt) (*memberCert, membership.Reason) {
	if !t.adm.v.Closed() {
		return nil, membership.ReasonNone
	}
	c, r := t.adm.v.Check(e.cert, key, time.Now())
	if r != membership.ReasonNone {
		return nil, r
	}
	return t.memberCertOf(c), membership.ReasonNone
}

// vouchFor makes a closed node's handshake hs skip the identity
// signature of a peer whose certificate verifies (noise.SetVouch): the
// certificate check is the one signature a member pays for, and the
// verified certificate is remembered, so checkPeer finds it again.
func (t *transport) vouchFor(hs *noise.Handshake) {
	if !t.adm.v.Closed() {
		return
	}
	hs.SetVouch(func(key ed25519.PublicKey, ext []byte) bool {
		e, err := parsePeerExt(ext)
		if err != nil || e.cert == nil {
			return false
		}
		_, r := t.adm.v.Check(e.cert, key, time.Now())
		return r == membership.ReasonNone
	})
}

func (t *transport) memberCertOf(c *identity.Certificate) *memberCert {
	return &memberCert{cert: c, until: t.now() + int64(time.Until(c.NotAfter))}
}

// redeem checks the pairing proof a node without a certificate sent from
// src, bound to the handshake hash binding, and issues its certificate.
func (t *transport) redeem(proof, binding []byte, key ed25519.PublicKey, src *endpoint) (*memberCert, []byte, membership.Reason) {
	if t.adm.issuer == nil {
		return nil, nil, membership.ReasonNotIssuer
	}
	source := sourceKey(src.addr.Addr()).String()
	if src.relay != nil {
		source = "via " + src.relay.id.String()
	}
	c, confirm, r := t.adm.issuer.Redeem(proof, binding, key, source, time.Now())
	if r != membership.ReasonNone {
		return nil, nil, r
	}
	t.log.Info("paired a new node", "node", identity.NodeIDFromKey(key).Short(), "certificate", c)
	return t.memberCertOf(c), confirm, membership.ReasonNone
}

// reasonDrops counts each refusal under its own drop reason.
var reasonDrops = [...]DropReason{
	membership.ReasonNoCertificate:      DropNoCertificate,
	membership.ReasonInvalid:            DropCertInvalid,
	membership.ReasonUntrusted:          DropCertUntrusted,
	membership.ReasonKeyMismatch:        DropCertKeyMismatch,
	membership.ReasonExpired:            DropCertExpired,
	membership.ReasonNotYetValid:        DropCertNotYetValid,
	membership.ReasonRevoked:            DropCertRevoked,
	membership.ReasonPairingCode:        DropPairingCode,
	membership.ReasonPairingExpired:     DropPairingExpired,
	membership.ReasonPairingReused:      DropPairingReused,
	membership.ReasonPairingRateLimited: DropPairingLimited,
	membership.ReasonNotIssuer:          DropNotIssuer,
}

// refuse counts a refusal of a peer's membership.
func (t *transport) refuse(r membership.Reason, key ed25519.PublicKey) {
	if int(r) < len(reasonDrops) {
		t.stats.drop(reasonDrops[r])
	}
	t.log.Debug("membership refused", "peer", identity.NodeIDFromKey(key).Short(), "reason", r.String())
}

// refusalExt is the extension that tells an IK initiator why it is
// refused.
func refusalExt(r membership.Reason) []byte {
	return wire.AppendExtension(nil, wire.ExtRefusal, []byte{byte(r)})
}

// sendRefusal tells an XX initiator, whose final message this node just
// read, why it is refused: one data packet sealed with the keys of the
// handshake (counter 0), on no session. Only the initiator can open it,
// it is smaller than the final message, and nothing of the handshake is
// kept.
func (t *transport) sendRefusal(k *noise.Keys, remote uint32, src *endpoint, r membership.Reason) {
	s := &session{send: k.Send, remote: remote}
	pkt := getOut(wire.DataOverhead + wire.FrameHeaderSize + 1)
	defer putOut(pkt)
	n, err := sealFrame(s, pkt, 0, protoRefuse.id, []byte{byte(r)}, nil)
	if err == nil {
		t.sendTo(src, pkt.buf[:n])
	}
}

// refused handles a refusal on s, a session this node's XX dial made and
// whose confirmation it awaits: the dial fails with the responder's
// reason and the session is forgotten. It reports whether body was such
// a refusal.
func (t *transport) refused(s *session, body []byte) bool {
	if !s.initiator || len(body) != 1 || !membership.Reason(body[0]).Valid() {
		return false
	}
	t.hs.mu.Lock()
	defer t.hs.mu.Unlock()
	d := s.dial
	if d == nil || d.closed || d.session != s || s.confirmed.Load() {
		return false
	}
	r := membership.Reason(body[0])
	t.log.Info("peer refused this node", "peer", s.peer.id.Short(), "reason", r.String())
	d.session = nil
	t.index.remove(s)
	t.finishDialLocked(d, nil, &MembershipError{Peer: s.peer.id, Reason: r, Remote: true})
	return true
}

// expel ends every session with p, a peer that is no longer a member.
func (t *transport) expel(p *Peer, r membership.Reason) {
	t.hs.mu.Lock()
	defer t.hs.mu.Unlock()
	p.member.Store(nil)
	if p.current == nil && p.next == nil {
		return
	}
	t.log.Warn("peer is no longer a member; its sessions end", "peer", p.id.Short(), "reason", r.String())
	t.downLocked(p, "membership: "+r.String())
}

// sweepMembers expels the peers whose certificate expired or was revoked.
// The engine loop calls it every second.
func (t *transport) sweepMembers() {
	if !t.adm.v.Closed() {
		return
	}
	now := t.now()
	for _, p := range t.peers.all() {
		if p.cur.Load() == nil {
			continue
		}
		switch mc := p.member.Load(); {
		case mc == nil:
			t.expel(p, membership.ReasonNoCertificate)
		case now >= mc.until:
			t.expel(p, membership.ReasonExpired)
		case t.adm.v.Revoked(mc.cert):
			t.expel(p, membership.ReasonRevoked)
		}
	}
}

// MembershipError is a handshake refused for membership: by the peer
// (Remote), which said why, or by this node, which found the peer's
// certificate wanting. It matches ErrNotMember and the sentinel of its
// reason (identity.ErrCertExpired, membership.ErrRevoked, ...) with
// errors.Is.
type MembershipError struct {
	// Peer is the node refused or refusing.
	Peer identity.NodeID
	// Reason says why.
	Reason membership.Reason
	// Remote: the peer refused this node; else this node refused the
	// peer.
	Remote bool
}

// Error implements error.
func (e *MembershipError) Error() string {
	if e.Remote {
		return fmt.Sprintf("mesh: %s refused this node's membership: %s", e.Peer.Short(), e.Reason)
	}
	return fmt.Sprintf("mesh: %s is not a member: %s", e.Peer.Short(), e.Reason)
}

// Unwrap returns ErrNotMember and the reason's sentinel.
func (e *MembershipError) Unwrap() []error {
	if err := e.Reason.Err(); err != nil {
		return []error{ErrNotMember, err}
	}
	return []error{ErrNotMember}
}

// finalExt returns the extensions of an XX final message: this node's
// certificate, and for a pairing dial the proof that it knows the code,
// bound to binding, the handshake hash before the final message.
func (t *transport) finalExt(d *dial, binding []byte) []byte {
	var ext []byte
	if own := t.adm.own.Load(); own != nil {
		ext = slices.Clip(own.ext)
	}
	if d.pair != nil {
		d.pair.binding = binding // published to the message handler under hs.mu (handleResponse)
		ext = wire.AppendExtension(ext, wire.ExtPairingProof, d.pair.code.Proof(binding))
	}
	return ext
}

// refuseIK answers an IK initiation from the peer with key, read into hs,
// with a response that carries the refusal r and leads to no session.
func (t *transport) refuseIK(hs *noise.Handshake, h wire.Handshake, key ed25519.PublicKey, src *endpoint, r membership.Reason) {
	if err := hs.SetExtensions(refusalExt(r)); err != nil {
		return
	}
	msg, err := hs.WriteMessage(nil)
	if err != nil {
		t.dropNoise(err)
		return
	}
	out := wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeResponse, Suite: h.Suite, Receiver: h.Sender, Noise: msg})
	setMAC1(out, &macKey{key: mac1Key(key)})
	t.sendTo(src, out)
}

// takePairing returns and forgets the pairing dial that waits for a
// certificate from the node id.
func (t *transport) takePairing(id identity.NodeID) *pairing {
	t.hs.mu.Lock()
	defer t.hs.mu.Unlock()
	pr := t.adm.pairs[id]
	delete(t.adm.pairs, id)
	return pr
}
