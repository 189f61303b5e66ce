package noise

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/flynn/noise"
	"github.com/netmesh/netmesh/identity"
)

// Errors returned by this package. Handshake errors wrap one of them.
var (
	// ErrBadConfig reports a Config or Pattern that cannot start a handshake.
	ErrBadConfig = errors.New("noise: bad handshake config")
	// ErrHandshakeState reports a call out of order: writing when it is the
	// peer's turn, reading when it is ours, Keys before completion, or any
	// call after the handshake failed.
	ErrHandshakeState = errors.New("noise: handshake call out of order")
	// ErrBadMessage reports a message of the wrong size, or one that fails
	// to decrypt or authenticate.
	ErrBadMessage = errors.New("noise: bad message")
	// ErrBadIdentity reports an identity payload whose ed25519 key is
	// invalid or does not match the Noise static key of the handshake.
	ErrBadIdentity = errors.New("noise: identity does not match static key")
	// ErrBadSignature reports an identity payload whose signature does not
	// verify.
	ErrBadSignature = errors.New("noise: bad identity signature")
	// ErrKeyMismatch reports a peer other than the one the initiator pinned
	// by NodeID or key.
	ErrKeyMismatch = errors.New("noise: peer is not the pinned node")
)

// Pattern is a Noise handshake pattern.
type Pattern uint8

// The supported patterns.
const (
	// PatternIK is used when the initiator knows the responder's ed25519
	// key: two messages, one round trip, and the initiator's identity is
	// encrypted to the responder's static key.
	PatternIK Pattern = iota + 1
	// PatternXX is used when the initiator knows only an address: three
	// messages, and each side learns the other's identity in the handshake.
	PatternXX
)

// String returns "IK", "XX" or "Pattern(n)".
func (p Pattern) String() string {
	switch p {
	case PatternIK:
		return "IK"
	case PatternXX:
		return "XX"
	}
	return fmt.Sprintf("Pattern(%d)", uint8(p))
}

// Protocol strings. Changing any of them changes the protocol.
const (
	// prologue binds every handshake to the protocol version.
	prologue = "netmesh v1"
	// staticContext prefixes the Noise static key in the identity signature.
	staticContext = "netmesh static v1"
)

// Config configures an initiator.
type Config struct {
	// Identity is this node's identity. Required.
	Identity *identity.Identity
	// PeerKey is the responder's ed25519 key, if known: then the handshake
	// uses PatternIK and completes only with that key's owner. Nil means
	// PatternXX.
	PeerKey ed25519.PublicKey
	// PeerID, if not zero, pins the responder's NodeID: the handshake fails
	// with ErrKeyMismatch if the responder turns out to be another node.
	PeerID identity.NodeID
	// Incarnation is sent to the peer: see Peer.Incarnation.
	Incarnation uint64
	// Suite is the cipher suite of the handshake and its session. The
	// responder must be told it before it reads the initiation (package
	// mesh carries it in the packet header). Zero means PreferredSuite.
	Suite Suite
}

// Peer is what a handshake authenticated about the remote node.
type Peer struct {
	// Key is the peer's ed25519 public key.
	Key ed25519.PublicKey
	// ID is the peer's NodeID, derived from Key.
	ID identity.NodeID
	// InitiationTime is the time the initiator put in an IK initiation;
	// zero for XX and on the initiator. The mesh keeps the latest one per
	// peer and drops initiations that are not newer, so a replayed
	// initiation cannot make the responder reset a session.
	InitiationTime time.Time
	// Incarnation is the number the peer sent to tell one run of it from
	// the next: a node picks one at random when it starts, so a peer whose
	// incarnation changed between two handshakes has restarted, and state
	// kept for its previous run (streams, say) is gone on its side. Every
	// handshake message but the XX initiation carries its sender's.
	Incarnation uint64
}

// Keys is the result of a completed handshake.
type Keys struct {
	// Send seals messages to the peer; Recv opens messages from it.
	Send, Recv *Cipher
	// Suite is the suite of Send and Recv.
	Suite Suite
	// Peer is the authenticated remote node.
	Peer Peer
	// Hash is the final handshake hash, the same on both sides and unique
	// to this session: a channel binding for higher-layer signatures.
	Hash []byte
}

// Handshake is one side of a Noise handshake. Its states:
//
//   - in progress: the sides alternate; the initiator writes first. Each
//     WriteMessage produces the next message to send, each ReadMessage
//     consumes the peer's. IK takes 2 messages, XX takes 3.
//   - complete: Complete reports true and Keys returns the session keys.
//     For IK the initiator completes on ReadMessage, the responder on
//     WriteMessage; for XX the other way round. An IK responder knows Peer
//     once it has read the initiation, so it can drop a replayed
//     InitiationTime or an unwelcome peer before the DH work of a response.
//   - failed: a message failed to decrypt or authenticate, and every later
//     call returns ErrHandshakeState. Start a new handshake. A message of
//     the wrong size and an out-of-order call do not fail the handshake.
//
// A Handshake is not safe for concurrent use.
type Handshake struct {
	hs              *noise.HandshakeState // nil once complete or failed
	dh              *x25519               // hs's DH function
	pattern         Pattern
	suite           Suite
	initiator       bool
	id              *identity.Identity
	static          []byte    // this node's Noise static public key
	now             time.Time // IK initiation timestamp
	pinKey          ed25519.PublicKey
	pinID           identity.NodeID
	peer            Peer
	keys            *Keys
	incarnation     uint64 // ours
	peerIncarnation uint64 // the peer's, once read
	ext             []byte // extensions for the next message this side writes
	peerExt         []byte // extensions of the last message read
	vouch           func(key ed25519.PublicKey, ext []byte) bool

	// testSplit, set only by tests, sees the transport keys (this side's
	// send key, then its receive key) when the handshake completes: the
	// wire test vectors list them.
	testSplit func(send, recv []byte)
}

// NewInitiator starts a handshake as initiator: PatternIK if cfg.PeerKey is
// set, else PatternXX. now is the IK initiation timestamp.
func NewInitiator(cfg Config, now time.Time) (*Handshake, error) {
	h := &Handshake{pattern: PatternXX, suite: cfg.Suite, initiator: true, now: now, pinID: cfg.PeerID, incarnation: cfg.Incarnation}
	if h.suite == 0 {
		h.suite = PreferredSuite()
	}
	var peerStatic []byte
	if cfg.PeerKey != nil {
		var err error
		if peerStatic, err = identity.X25519PublicKey(cfg.PeerKey); err != nil {
			return nil, fmt.Errorf("%w: PeerKey: %w", ErrBadConfig, err)
		}
		h.pattern = PatternIK
		h.pinKey = bytes.Clone(cfg.PeerKey)
		if !cfg.PeerID.IsZero() && cfg.PeerID != identity.NodeIDFromKey(cfg.PeerKey) {
			return nil, fmt.Errorf("%w: PeerID is not the NodeID of PeerKey", ErrKeyMismatch)
		}
	}
	if err := h.start(cfg.Identity, peerStatic); err != nil {
		return nil, err
	}
	return h, nil
}

// NewResponder starts a handshake as responder for pattern p and suite s,
// which the caller knows from the first message's header. incarnation is
// sent to the initiator: see Peer.Incarnation.
func NewResponder(id *identity.Identity, p Pattern, s Suite, incarnation uint64) (*Handshake, error) {
	if p != PatternIK && p != PatternXX {
		return nil, fmt.Errorf("%w: unknown pattern %v", ErrBadConfig, p)
	}
	h := &Handshake{pattern: p, suite: s, incarnation: incarnation}
	if err := h.start(id, nil); err != nil {
		return nil, err
	}
	return h, nil
}

// start derives the static key pair from id and creates the Noise state.
// The static public key is the public half of id.ECDH(), which id computes
// once; it equals identity.X25519PublicKey(id.PublicKey()).
func (h *Handshake) start(id *identity.Identity, peerStatic []byte) error {
	if id == nil {
		return fmt.Errorf("%w: no Identity", ErrBadConfig)
	}
	aead := h.suite.cipherFunc()
	if aead == nil {
		return fmt.Errorf("%w: unknown suite %v", ErrBadConfig, h.suite)
	}
	pattern := noise.HandshakeXX
	if h.pattern == PatternIK {
		pattern = noise.HandshakeIK
	}
	sk := id.ECDH()
	static := sk.PublicKey().Bytes()
	// An initiator's DH function takes the static-static DH from id's
	// cache (see x25519).
	dh := &x25519{id: id, initiator: h.initiator}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   noise.NewCipherSuite(dh, aead, noise.HashBLAKE2s),
		Pattern:       pattern,
		Initiator:     h.initiator,
		Prologue:      []byte(prologue),
		StaticKeypair: noise.DHKey{Private: sk.Bytes(), Public: static},
		PeerStatic:    peerStatic,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	dh.hs = hs
	h.hs, h.dh, h.id, h.static = hs, dh, id, static
	return nil
}

// Pattern returns the handshake pattern.
func (h *Handshake) Pattern() Pattern { return h.pattern }

// Suite returns the handshake's cipher suite.
func (h *Handshake) Suite() Suite { return h.suite }

// Complete reports whether the handshake has completed and Keys is ready.
func (h *Handshake) Complete() bool { return h.keys != nil }

// Peer returns the remote node as far as the handshake has authenticated
// it: the zero Peer until the message carrying its identity has been read
// and verified (for an IK initiator, until completion).
func (h *Handshake) Peer() Peer { return h.peer }

// Keys returns the session keys of a complete handshake, or
// ErrHandshakeState.
func (h *Handshake) Keys() (*Keys, error) {
	if h.keys == nil {
		return nil, ErrHandshakeState
	}
	return h.keys, nil
}

// SetExtensions sets the extensions of the next message this side
// writes: at most MaxExtensions bytes appended to the message's payload
// (after the identity payload, the IK response's incarnation, or the XX
// initiation's padding), which the peer reads with PeerExtensions. Their
// format is the caller's (package mesh puts typed fields there). Every
// message but the XX initiation encrypts them; the XX initiation is sent
// before any key exists, so its extensions are clear text, fit only for
// more padding. The message after the next one carries none unless set
// again. ext is not copied before WriteMessage.
func (h *Handshake) SetExtensions(ext []byte) error {
	if len(ext) > MaxExtensions {
		return fmt.Errorf("%w: %d bytes of extensions, at most %d", ErrBadConfig, len(ext), MaxExtensions)
	}
	h.ext = ext
	return nil
}

// SetVouch sets a check that stands in for the peer's identity signature:
// when vouch(key, ext) reports true for the ed25519 key and the
// extensions of an identity payload, the payload's signature over the
// static key is not verified (everything else is). The caller vouches
// when the extensions carry a statement about key that it has verified
// itself (package mesh: a membership certificate from a trusted
// authority). The signature proves nothing the handshake does not: by the
// time the payload decrypts, the peer has shown it holds the private
// scalar of the static key, which must be the X25519 form of key, and
// with it the peer could sign as key anyway. Skipping it saves a
// signature check per new peer that the certificate's own check would
// otherwise add.
func (h *Handshake) SetVouch(vouch func(key ed25519.PublicKey, ext []byte) bool) { h.vouch = vouch }

// PeerExtensions returns the extensions of the last message read (see
// SetExtensions): empty if it carried none. The caller must not modify
// them.
func (h *Handshake) PeerExtensions() []byte { return h.peerExt }

// Hash returns the handshake hash so far: after a message has been written
// or read, both sides hold the same value, and it covers every message up
// to there, ephemeral keys included, so it is unique to this handshake.
// Once the handshake is complete it is Keys.Hash. A value taken before the
// last message binds a statement inside that message to this handshake
// (package mesh binds a pairing proof to it); nil after a failure.
func (h *Handshake) Hash() []byte {
	switch {
	case h.hs != nil:
		return bytes.Clone(h.hs.ChannelBinding())
	case h.keys != nil:
		return bytes.Clone(h.keys.Hash)
	}
	return nil
}

// WriteMessage appends the next handshake message to out and returns the
// extended slice.
func (h *Handshake) WriteMessage(out []byte) ([]byte, error) {
	i, ok := h.turn(true)
	if !ok {
		return nil, ErrHandshakeState
	}
	var payload []byte
	switch size, carriesID := h.message(i); {
	case carriesID:
		payload = h.identityPayload()
	case h.pattern == PatternXX && i == 0:
		payload = make([]byte, xxPadding, xxPadding+len(h.ext))
	case size > keySize: // the IK response: the incarnation
		payload = binary.BigEndian.AppendUint64(make([]byte, 0, incarnationSize+len(h.ext)), h.incarnation)
	}
	payload = append(payload, h.ext...)
	h.ext = nil
	out, cs1, cs2, err := h.hs.WriteMessage(out, payload)
	if err != nil {
		h.hs = nil
		return nil, fmt.Errorf("noise: writing handshake message: %w", err)
	}
	if cs1 != nil {
		h.finish(cs1, cs2)
	}
	return out, nil
}

// ReadMessage consumes the peer's next handshake message. It returns an
// error wrapping ErrBadMessage, ErrBadIdentity, ErrBadSignature or
// ErrKeyMismatch if the message is rejected; all but a wrong-size
// ErrBadMessage fail the handshake. A message may be up to MaxExtensions
// bytes longer than its base size: the extensions (PeerExtensions).
func (h *Handshake) ReadMessage(msg []byte) error {
	i, ok := h.turn(false)
	if !ok {
		return ErrHandshakeState
	}
	size, carriesID := h.message(i)
	if len(msg) < size || len(msg) > size+MaxExtensions {
		// flynn/noise would mix the bytes into its state before finding
		// the length wrong; checking first keeps the handshake usable.
		return fmt.Errorf("%w: %v message %d is %d bytes, want %d..%d", ErrBadMessage, h.pattern, i+1, len(msg), size, size+MaxExtensions)
	}
	h.peerExt = nil
	payload, cs1, cs2, err := h.hs.ReadMessage(nil, msg)
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %w", ErrBadMessage, err)
	case carriesID:
		err = h.readIdentity(payload)
	case h.pattern == PatternXX: // the initiation: padding
		h.peerExt = payload[xxPadding:]
	case size > keySize: // the IK response: the incarnation
		h.peerIncarnation = binary.BigEndian.Uint64(payload)
		h.peerExt = payload[incarnationSize:]
	}
	if err != nil {
		// flynn/noise does not roll back all of its state on failure.
		h.hs = nil
		return err
	}
	if cs1 != nil {
		h.finish(cs1, cs2)
	}
	return nil
}

// turn returns the index of the next message and whether this side is the
// one to write it (write) or to read it (!write).
func (h *Handshake) turn(write bool) (int, bool) {
	if h.hs == nil {
		return 0, false
	}
	i := h.hs.MessageIndex()
	initiatorWrites := i%2 == 0
	return i, initiatorWrites == (h.initiator == write)
}

// message returns the exact size of message i of the handshake and whether
// it carries its sender's identity payload.
func (h *Handshake) message(i int) (size int, carriesID bool) {
	if h.pattern == PatternIK {
		if i == 0 {
			return IKInitiationSize, true
		}
		return IKResponseSize, false
	}
	switch i {
	case 0:
		return XXInitiationSize, false
	case 1:
		return XXResponseSize, true
	}
	return XXFinalSize, true
}

// identityPayload returns ed25519 key || signature of the static key ||
// incarnation, plus the timestamp in an IK initiation. The signature is
// the same for every handshake (ed25519 is deterministic and the static
// key is fixed), so the identity computes it once (SignCached).
func (h *Handshake) identityPayload() []byte {
	p := make([]byte, 0, identityPayloadSize+incarnationSize+timestampSize+len(h.ext))
	p = append(p, h.id.PublicKey()...)
	p = append(p, h.id.SignCached(signedStatic(h.static))...)
	p = binary.BigEndian.AppendUint64(p, h.incarnation)
	if h.pattern == PatternIK && h.initiator {
		p = binary.BigEndian.AppendUint64(p, uint64(h.now.UnixNano()))
	}
	return p
}

// readIdentity verifies the peer's identity payload against the static key
// the handshake authenticated, and the initiator's pins.
func (h *Handshake) readIdentity(p []byte) error {
	want := identityPayloadSize + incarnationSize
	withTime := h.pattern == PatternIK && !h.initiator
	if withTime {
		want += timestampSize
	}
	if len(p) < want {
		return fmt.Errorf("%w: identity payload is %d bytes, want at least %d", ErrBadMessage, len(p), want)
	}
	key := ed25519.PublicKey(p[:keySize:keySize])
	static, err := identity.X25519PublicKey(key)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadIdentity, err)
	}
	if !bytes.Equal(static, h.hs.PeerStatic()) {
		return ErrBadIdentity
	}
	// Every check runs on every handshake; only the signature check is
	// remembered, by the exact bytes of key, signature and static key, so
	// a peer that connects again costs a lookup instead of a verification.
	// A caller's voucher may stand in for it (SetVouch).
	vouched := h.vouch != nil && h.vouch(key, p[want:])
	if !vouched && !h.id.VerifyCached(key, signedStatic(static), p[keySize:identityPayloadSize]) {
		return ErrBadSignature
	}
	id := identity.NodeIDFromKey(key)
	if !h.pinID.IsZero() && id != h.pinID {
		return fmt.Errorf("%w: got %v, want %v", ErrKeyMismatch, id, h.pinID)
	}
	h.peerIncarnation = binary.BigEndian.Uint64(p[identityPayloadSize:])
	h.peer = Peer{Key: key, ID: id, Incarnation: h.peerIncarnation}
	if withTime {
		h.peer.InitiationTime = time.Unix(0, int64(binary.BigEndian.Uint64(p[identityPayloadSize+incarnationSize:])))
	}
	h.peerExt = p[want:]
	return nil
}

// PrepareIdentity computes, and keeps in id, what every handshake id makes
// needs from it: the Noise static key (id.ECDH) and the identity's
// signature over it (id.SignCached). The first handshake computes them
// otherwise, which adds to its latency on both sides; a node calls this
// when it starts.
func PrepareIdentity(id *identity.Identity) {
	id.SignCached(signedStatic(id.ECDH().PublicKey().Bytes()))
}

// signedStatic returns the message an identity signs to vouch for its Noise
// static key.
func signedStatic(static []byte) []byte {
	return append([]byte(staticContext), static...)
}

// finish builds the session keys from the split cipher states.
func (h *Handshake) finish(cs1, cs2 *noise.CipherState) {
	if !h.initiator {
		cs1, cs2 = cs2, cs1
	}
	if h.testSplit != nil {
		send, recv := cs1.UnsafeKey(), cs2.UnsafeKey()
		h.testSplit(send[:], recv[:])
	}
	if h.pinKey != nil {
		// IK initiator: completing proves the responder holds the static
		// key of pinKey.
		h.peer = Peer{Key: h.pinKey, ID: identity.NodeIDFromKey(h.pinKey), Incarnation: h.peerIncarnation}
	}
	h.keys = &Keys{
		Send:  h.cipherFromState(cs1),
		Recv:  h.cipherFromState(cs2),
		Suite: h.suite,
		Peer:  h.peer,
		Hash:  bytes.Clone(h.hs.ChannelBinding()),
	}
	h.hs = nil
}

// cipherFromState builds a Cipher of the handshake's suite from the key
// of a split CipherState.
func (h *Handshake) cipherFromState(cs *noise.CipherState) *Cipher {
	k := cs.UnsafeKey()
	defer clear(k[:])
	c, err := NewCipher(h.suite, k[:])
	if err != nil {
		panic(err) // unreachable: a CipherState key is always 32 bytes, the suite checked at start
	}
	return c
}
