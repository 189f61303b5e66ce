package noise

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"
	"github.com/netmesh/netmesh/identity"
)

// refHandshake is the handshake as netmesh did it before the caches, on
// flynn/noise's own DH25519: it signs and verifies
// on every handshake. The tests run it against Handshake, whose caches
// are warm, to show that both sides of a mixed pair agree.
type refHandshake struct {
	hs        *noise.HandshakeState
	id        *identity.Identity
	pattern   Pattern
	initiator bool
	peer      ed25519.PublicKey
	cs1, cs2  *noise.CipherState
}

func newRef(t *testing.T, id *identity.Identity, p Pattern, initiator bool, peerKey ed25519.PublicKey) *refHandshake {
	t.Helper()
	static, err := identity.X25519PublicKey(id.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	var peerStatic []byte
	if peerKey != nil {
		if peerStatic, err = identity.X25519PublicKey(peerKey); err != nil {
			t.Fatal(err)
		}
	}
	pattern := noise.HandshakeXX
	if p == PatternIK {
		pattern = noise.HandshakeIK
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   noise.NewCipherSuite(noise.DH25519, PreferredSuite().cipherFunc(), noise.HashBLAKE2s),
		Pattern:       pattern,
		Initiator:     initiator,
		Prologue:      []byte(prologue),
		StaticKeypair: noise.DHKey{Private: id.X25519(), Public: static},
		PeerStatic:    peerStatic,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &refHandshake{hs: hs, id: id, pattern: p, initiator: initiator}
}

func (r *refHandshake) carriesID(i int) bool {
	if r.pattern == PatternIK {
		return i == 0
	}
	return i > 0
}

func (r *refHandshake) write(t *testing.T) []byte {
	t.Helper()
	var payload []byte
	if r.carriesID(r.hs.MessageIndex()) {
		static, _ := identity.X25519PublicKey(r.id.PublicKey())
		payload = append(bytes.Clone(r.id.PublicKey()), r.id.Sign(signedStatic(static))...)
		payload = binary.BigEndian.AppendUint64(payload, 0) // incarnation
		if r.pattern == PatternIK {
			payload = binary.BigEndian.AppendUint64(payload, uint64(time.Now().UnixNano()))
		}
	} else if r.pattern == PatternIK {
		payload = binary.BigEndian.AppendUint64(nil, 0) // the response's incarnation
	} else {
		payload = make([]byte, xxPadding) // XX message 1's padding
	}
	msg, cs1, cs2, err := r.hs.WriteMessage(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	r.done(cs1, cs2)
	return msg
}

func (r *refHandshake) read(t *testing.T, msg []byte) {
	t.Helper()
	carries := r.carriesID(r.hs.MessageIndex())
	p, cs1, cs2, err := r.hs.ReadMessage(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	if carries {
		key := ed25519.PublicKey(p[:keySize])
		static, err := identity.X25519PublicKey(key)
		if err != nil || !bytes.Equal(static, r.hs.PeerStatic()) ||
			!identity.Verify(key, signedStatic(static), p[keySize:identityPayloadSize]) {
			t.Fatal("reference rejected the identity payload")
		}
		r.peer = key
	}
	r.done(cs1, cs2)
}

func (r *refHandshake) done(cs1, cs2 *noise.CipherState) {
	if cs1 == nil {
		return
	}
	if !r.initiator {
		cs1, cs2 = cs2, cs1
	}
	r.cs1, r.cs2 = cs1, cs2
}

func (r *refHandshake) keys() *Keys {
	ref := &Handshake{suite: PreferredSuite()}
	return &Keys{Send: ref.cipherFromState(r.cs1), Recv: ref.cipherFromState(r.cs2), Suite: ref.suite, Hash: r.hs.ChannelBinding()}
}

// A node with this package's caches and X25519 and a node without them
// complete every handshake both ways, with the same session keys, however
// warm the caches are.
func TestInteropWithReference(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	for round := range 3 {
		for _, p := range []Pattern{PatternIK, PatternXX} {
			n := 2
			if p == PatternXX {
				n = 3
			}
			t.Run(fmt.Sprintf("%v/round%d/ours-initiates", p, round), func(t *testing.T) {
				var peerKey ed25519.PublicKey
				if p == PatternIK {
					peerKey = b.PublicKey()
				}
				ours, err := NewInitiator(Config{Identity: a, PeerKey: peerKey}, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				ref := newRef(t, b, p, false, nil)
				for i := range n {
					if i%2 == 0 {
						msg, err := ours.WriteMessage(nil)
						if err != nil {
							t.Fatal(err)
						}
						ref.read(t, msg)
					} else if err := ours.ReadMessage(ref.write(t)); err != nil {
						t.Fatal(err)
					}
				}
				k, err := ours.Keys()
				if err != nil {
					t.Fatal(err)
				}
				checkKeys(t, k, ref.keys())
				if k.Peer.ID != b.NodeID() || !ref.peer.Equal(a.PublicKey()) {
					t.Fatal("wrong peers")
				}
			})
			t.Run(fmt.Sprintf("%v/round%d/reference-initiates", p, round), func(t *testing.T) {
				var peerKey ed25519.PublicKey
				if p == PatternIK {
					peerKey = b.PublicKey()
				}
				ref := newRef(t, a, p, true, peerKey)
				ours, err := NewResponder(b, p, PreferredSuite(), 0)
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					if i%2 == 0 {
						if err := ours.ReadMessage(ref.write(t)); err != nil {
							t.Fatal(err)
						}
					} else {
						msg, err := ours.WriteMessage(nil)
						if err != nil {
							t.Fatal(err)
						}
						ref.read(t, msg)
					}
				}
				k, err := ours.Keys()
				if err != nil {
					t.Fatal(err)
				}
				checkKeys(t, k, ref.keys())
				if k.Peer.ID != a.NodeID() {
					t.Fatal("wrong peer")
				}
			})
		}
	}
}

// After a peer's identity and signature are cached,
// anything that differs from them in any byte must still be rejected.
func TestCachedIdentityStillChecked(t *testing.T) {
	a, b, c := testIdentity(t, 1), testIdentity(t, 2), testIdentity(t, 3)
	aStatic, _ := identity.X25519PublicKey(a.PublicKey())
	cStatic, _ := identity.X25519PublicKey(c.PublicKey())
	aSig := a.Sign(signedStatic(aStatic))
	incarnation := binary.BigEndian.AppendUint64(nil, 7)
	ts := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
	payload := func(key ed25519.PublicKey, sig []byte) []byte {
		return slices.Concat(key, sig, incarnation, ts)
	}
	warm := func() {
		t.Helper()
		for range 2 {
			ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
			res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
			run(t, ini, res, IKInitiationSize, IKResponseSize)
		}
	}
	tampered := bytes.Clone(aSig)
	tampered[10] ^= 0x20
	for _, tc := range []struct {
		name    string
		from    *identity.Identity // whose static key the initiation uses
		payload []byte
		want    error
	}{
		// c replays a's identity and a's (cached) signature over a's
		// static key, from a handshake with c's own static key.
		{"cached identity, another static key", c, payload(a.PublicKey(), aSig), ErrBadIdentity},
		// a's cached identity with one bit of the signature flipped.
		{"cached identity, tampered signature", a, payload(a.PublicKey(), tampered), ErrBadSignature},
		// a's key and static key, signed by someone else.
		{"cached identity, another key's signature", a, payload(a.PublicKey(), c.Sign(signedStatic(aStatic))), ErrBadSignature},
		// a vouching for c's static key: a's key does not convert to it.
		{"cached key, signature over another static", c, payload(a.PublicKey(), a.Sign(signedStatic(cStatic))), ErrBadIdentity},
		// c's genuine identity still works next to a's cached one.
		{"another node, genuine", c, payload(c.PublicKey(), c.Sign(signedStatic(cStatic))), nil},
		{"cached identity, genuine", a, payload(a.PublicKey(), aSig), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warm()
			ini, _ := NewInitiator(Config{Identity: tc.from, PeerKey: b.PublicKey()}, time.Now())
			res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
			err := res.ReadMessage(forge(t, ini, tc.payload))
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadMessage = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if res.Peer().Key != nil {
					t.Fatal("a rejected initiation set Peer")
				}
				return
			}
			// A genuine one completes, as the node it really is.
			msg, err := res.WriteMessage(nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := ini.ReadMessage(msg); err != nil {
				t.Fatal(err)
			}
			ik, _ := ini.Keys()
			rk, _ := res.Keys()
			checkKeys(t, ik, rk)
			if rk.Peer.ID != tc.from.NodeID() {
				t.Fatalf("responder sees %v, want %v", rk.Peer.ID, tc.from.NodeID())
			}
		})
	}
}

// Handshakes of one node run concurrently and share its identity's
// caches (meaningful under -race).
func TestConcurrentHandshakes(t *testing.T) {
	ids := []*identity.Identity{testIdentity(t, 1), testIdentity(t, 2), testIdentity(t, 3)}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 10 {
				a, b := ids[(g+i)%3], ids[(g+i+1)%3]
				ini, err := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
				msg1, _ := ini.WriteMessage(nil)
				if err := res.ReadMessage(msg1); err != nil {
					t.Error(err)
					return
				}
				msg2, _ := res.WriteMessage(nil)
				if err := ini.ReadMessage(msg2); err != nil {
					t.Error(err)
					return
				}
				ik, _ := ini.Keys()
				rk, _ := res.Keys()
				if !bytes.Equal(ik.Hash, rk.Hash) || rk.Peer.ID != a.NodeID() || ik.Peer.ID != b.NodeID() {
					t.Error("sides disagree")
				}
			}
		})
	}
	wg.Wait()
}
