package noise

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"golang.org/x/crypto/curve25519"
)

// testIdentity returns a deterministic identity numbered n.
func testIdentity(t testing.TB, n byte) *identity.Identity {
	t.Helper()
	id, err := identity.FromSeed(bytes.Repeat([]byte{n}, identity.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// run drives a handshake to completion, checking each message's size.
func run(t testing.TB, ini, res *Handshake, sizes ...int) {
	t.Helper()
	from, to := ini, res
	for i, size := range sizes {
		msg, err := from.WriteMessage(nil)
		if err != nil {
			t.Fatalf("message %d: write: %v", i+1, err)
		}
		if len(msg) != size {
			t.Fatalf("message %d is %d bytes, want %d", i+1, len(msg), size)
		}
		if err := to.ReadMessage(msg); err != nil {
			t.Fatalf("message %d: read: %v", i+1, err)
		}
		from, to = to, from
	}
	if !ini.Complete() || !res.Complete() {
		t.Fatalf("complete: initiator %v, responder %v", ini.Complete(), res.Complete())
	}
}

// checkKeys checks that each side's Send opens with the other's Recv.
func checkKeys(t *testing.T, a, b *Keys) {
	t.Helper()
	if !bytes.Equal(a.Hash, b.Hash) || len(a.Hash) != 32 {
		t.Fatalf("handshake hashes differ: %x %x", a.Hash, b.Hash)
	}
	for _, dir := range []struct{ send, recv *Cipher }{{a.Send, b.Recv}, {b.Send, a.Recv}} {
		var n Nonce
		ct := dir.send.Seal(nil, &n, 7, []byte("hello"), []byte("ad"))
		pt, err := dir.recv.Open(nil, &n, 7, ct, []byte("ad"))
		if err != nil || string(pt) != "hello" {
			t.Fatalf("open = %q, %v", pt, err)
		}
		if _, err := dir.recv.Open(nil, &n, 8, ct, []byte("ad")); !errors.Is(err, ErrBadMessage) {
			t.Fatalf("open with wrong counter: %v, want ErrBadMessage", err)
		}
	}
	var n Nonce
	ct := a.Send.Seal(nil, &n, 1, []byte("x"), nil)
	if _, err := a.Recv.Open(nil, &n, 1, ct, nil); err == nil {
		t.Fatal("send and receive keys are the same")
	}
}

func TestStaticKeyDerivation(t *testing.T) {
	id := testIdentity(t, 1)
	fromScalar, err := curve25519.X25519(id.X25519(), curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	fromEd, err := identity.X25519PublicKey(id.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromScalar, fromEd) {
		t.Fatalf("X25519(priv, base) = %x, X25519PublicKey(ed) = %x", fromScalar, fromEd)
	}
}

func TestHandshakeIK(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	now := time.Unix(1700000000, 123456789)
	ini, err := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey(), PeerID: b.NodeID(), Incarnation: 0xA1}, now)
	if err != nil {
		t.Fatal(err)
	}
	res, err := NewResponder(b, PatternIK, PreferredSuite(), 0xB2)
	if err != nil {
		t.Fatal(err)
	}
	if ini.Pattern() != PatternIK || res.Pattern() != PatternIK {
		t.Fatalf("patterns %v %v", ini.Pattern(), res.Pattern())
	}

	msg1, err := ini.WriteMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.ReadMessage(msg1); err != nil {
		t.Fatal(err)
	}
	// The responder knows who is calling, and when, before it answers.
	if p := res.Peer(); p.ID != a.NodeID() || !p.Key.Equal(a.PublicKey()) || !p.InitiationTime.Equal(now) {
		t.Fatalf("responder sees peer %+v before answering", p)
	}
	if ini.Peer().ID != (identity.NodeID{}) {
		t.Fatal("initiator reports a peer before the responder proved its key")
	}
	msg2, err := res.WriteMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ini.ReadMessage(msg2); err != nil {
		t.Fatal(err)
	}
	if len(msg1) != IKInitiationSize || len(msg2) != IKResponseSize {
		t.Fatalf("sizes %d %d", len(msg1), len(msg2))
	}

	ik, _ := ini.Keys()
	rk, _ := res.Keys()
	checkKeys(t, ik, rk)
	if ik.Peer.ID != b.NodeID() || !ik.Peer.Key.Equal(b.PublicKey()) || !ik.Peer.InitiationTime.IsZero() || ik.Peer.Incarnation != 0xB2 {
		t.Fatalf("initiator's peer %+v", ik.Peer)
	}
	if rk.Peer.ID != a.NodeID() || !rk.Peer.InitiationTime.Equal(now) || rk.Peer.Incarnation != 0xA1 {
		t.Fatalf("responder's peer %+v", rk.Peer)
	}
}

func TestHandshakeXX(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	for _, pin := range []identity.NodeID{{}, b.NodeID()} {
		ini, err := NewInitiator(Config{Identity: a, PeerID: pin, Incarnation: 0xA1}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		res, err := NewResponder(b, PatternXX, PreferredSuite(), 0xB2)
		if err != nil {
			t.Fatal(err)
		}
		if ini.Pattern() != PatternXX {
			t.Fatalf("pattern %v, want XX", ini.Pattern())
		}
		run(t, ini, res, XXInitiationSize, XXResponseSize, XXFinalSize)
		ik, _ := ini.Keys()
		rk, _ := res.Keys()
		checkKeys(t, ik, rk)
		if ik.Peer.ID != b.NodeID() || rk.Peer.ID != a.NodeID() || !rk.Peer.Key.Equal(a.PublicKey()) ||
			ik.Peer.Incarnation != 0xB2 || rk.Peer.Incarnation != 0xA1 {
			t.Fatalf("peers %+v %+v", ik.Peer, rk.Peer)
		}
		if !rk.Peer.InitiationTime.IsZero() {
			t.Fatal("XX responder reports an initiation time")
		}
	}
}

func TestPinnedNodeIDMismatch(t *testing.T) {
	a, b, c := testIdentity(t, 1), testIdentity(t, 2), testIdentity(t, 3)

	// XX: the responder turns out to be b, not the pinned c.
	ini, _ := NewInitiator(Config{Identity: a, PeerID: c.NodeID()}, time.Now())
	res, _ := NewResponder(b, PatternXX, PreferredSuite(), 0)
	msg1, _ := ini.WriteMessage(nil)
	if err := res.ReadMessage(msg1); err != nil {
		t.Fatal(err)
	}
	msg2, _ := res.WriteMessage(nil)
	if err := ini.ReadMessage(msg2); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("XX read with wrong pin: %v, want ErrKeyMismatch", err)
	}
	if _, err := ini.WriteMessage(nil); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("write after failure: %v, want ErrHandshakeState", err)
	}

	// IK: a pinned NodeID that is not PeerKey's.
	if _, err := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey(), PeerID: c.NodeID()}, time.Now()); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("IK with PeerID of another key: %v, want ErrKeyMismatch", err)
	}
}

func TestPinnedKeyMismatch(t *testing.T) {
	a, b, c := testIdentity(t, 1), testIdentity(t, 2), testIdentity(t, 3)
	// The initiator pins b's key but reaches c: c cannot decrypt the
	// initiation, which is encrypted to b's static key.
	ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
	res, _ := NewResponder(c, PatternIK, PreferredSuite(), 0)
	msg1, _ := ini.WriteMessage(nil)
	if err := res.ReadMessage(msg1); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("IK initiation to another key: %v, want ErrBadMessage", err)
	}
	if res.Complete() || res.Peer().Key != nil {
		t.Fatal("responder accepted an initiation for another key")
	}
}

// forge makes ini write its next message with payload instead of its own
// identity payload.
func forge(t *testing.T, ini *Handshake, payload []byte) []byte {
	t.Helper()
	msg, _, _, err := ini.hs.WriteMessage(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestTamperedIdentity(t *testing.T) {
	a, b, c := testIdentity(t, 1), testIdentity(t, 2), testIdentity(t, 3)
	aStatic, _ := identity.X25519PublicKey(a.PublicKey())
	cStatic, _ := identity.X25519PublicKey(c.PublicKey())
	incarnation := binary.BigEndian.AppendUint64(nil, 7)
	ts := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
	payload := func(key ed25519.PublicKey, sig []byte) []byte {
		return slices.Concat(key, sig, incarnation, ts)
	}
	badPoint := bytes.Repeat([]byte{0xff}, 32) // not a valid encoding
	for _, tc := range []struct {
		name    string
		payload []byte
		want    error
	}{
		{"valid", payload(a.PublicKey(), a.Sign(signedStatic(aStatic))), nil},
		{"signature by another key", payload(a.PublicKey(), c.Sign(signedStatic(aStatic))), ErrBadSignature},
		{"signature over another static", payload(a.PublicKey(), a.Sign(signedStatic(cStatic))), ErrBadSignature},
		{"signature without context", payload(a.PublicKey(), a.Sign(aStatic)), ErrBadSignature},
		{"another node's identity", payload(c.PublicKey(), c.Sign(signedStatic(cStatic))), ErrBadIdentity},
		{"invalid ed25519 key", payload(badPoint, a.Sign(signedStatic(aStatic))), ErrBadIdentity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
			res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
			err := res.ReadMessage(forge(t, ini, tc.payload))
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadMessage = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTamperedCiphertext(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	for i := range IKInitiationSize {
		ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
		res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
		msg, _ := ini.WriteMessage(nil)
		msg[i] ^= 1
		if err := res.ReadMessage(msg); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	// The response, and the second and third XX messages.
	ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
	res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
	msg1, _ := ini.WriteMessage(nil)
	_ = res.ReadMessage(msg1)
	msg2, _ := res.WriteMessage(nil)
	msg2[len(msg2)-1] ^= 1
	if err := ini.ReadMessage(msg2); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("tampered IK response: %v", err)
	}
	for last := 1; last <= 2; last++ {
		ini, _ := NewInitiator(Config{Identity: a}, time.Now())
		res, _ := NewResponder(b, PatternXX, PreferredSuite(), 0)
		from, to := ini, res
		for i := 0; i <= last; i++ {
			msg, _ := from.WriteMessage(nil)
			if i == last {
				msg[len(msg)/2] ^= 1
				if err := to.ReadMessage(msg); !errors.Is(err, ErrBadMessage) {
					t.Fatalf("tampered XX message %d: %v", i+1, err)
				}
				break
			}
			if err := to.ReadMessage(msg); err != nil {
				t.Fatal(err)
			}
			from, to = to, from
		}
	}
}

func TestHandshakeOrder(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
	res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
	if err := ini.ReadMessage(make([]byte, IKResponseSize)); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("initiator read first: %v", err)
	}
	if _, err := res.WriteMessage(nil); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("responder wrote first: %v", err)
	}
	if _, err := ini.Keys(); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("keys before completion: %v", err)
	}
	msg1, _ := ini.WriteMessage(nil)
	if _, err := ini.WriteMessage(nil); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("initiator wrote twice: %v", err)
	}
	// A message of the wrong size is dropped without failing the handshake.
	if err := res.ReadMessage(msg1[:len(msg1)-1]); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("short message: %v", err)
	}
	var zero Handshake
	if _, err := zero.WriteMessage(nil); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("zero Handshake write: %v", err)
	}
	if err := zero.ReadMessage(msg1); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("zero Handshake read: %v", err)
	}
	if err := res.ReadMessage(msg1); err != nil {
		t.Fatalf("read after a wrong-size message: %v", err)
	}
	msg2, _ := res.WriteMessage(nil)
	if err := ini.ReadMessage(msg2); err != nil {
		t.Fatal(err)
	}
	if err := ini.ReadMessage(msg2); !errors.Is(err, ErrHandshakeState) {
		t.Fatalf("read after completion: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	a := testIdentity(t, 1)
	for name, err := range map[string]error{
		"nil identity": func() error { _, err := NewInitiator(Config{}, time.Now()); return err }(),
		"short key": func() error {
			_, err := NewInitiator(Config{Identity: a, PeerKey: make([]byte, 31)}, time.Now())
			return err
		}(),
		"responder pattern 0": func() error { _, err := NewResponder(a, 0, PreferredSuite(), 0); return err }(),
		"responder nil id":    func() error { _, err := NewResponder(nil, PatternXX, PreferredSuite(), 0); return err }(),
	} {
		if !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
}

func TestReadMessageGarbage(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	inputs := [][]byte{nil, {}, {0}, make([]byte, 32), make([]byte, IKInitiationSize),
		bytes.Repeat([]byte{0xff}, IKInitiationSize), make([]byte, 1<<16+1)}
	for _, in := range inputs {
		for _, p := range []Pattern{PatternIK, PatternXX} {
			res, _ := NewResponder(b, p, PreferredSuite(), 0)
			if err := res.ReadMessage(in); err == nil && p == PatternIK {
				t.Errorf("IK responder accepted %d garbage bytes", len(in))
			}
		}
		for _, cfg := range []Config{{Identity: a, PeerKey: b.PublicKey()}, {Identity: a}} {
			ini, _ := NewInitiator(cfg, time.Now())
			if _, err := ini.WriteMessage(nil); err != nil {
				t.Fatal(err)
			}
			if err := ini.ReadMessage(in); err == nil {
				t.Errorf("%v initiator accepted %d garbage bytes", ini.Pattern(), len(in))
			}
		}
	}
}

func FuzzReadMessage(f *testing.F) {
	a, b := testIdentity(f, 1), testIdentity(f, 2)
	ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
	ik, _ := ini.WriteMessage(nil)
	ini, _ = NewInitiator(Config{Identity: a}, time.Now())
	xx, _ := ini.WriteMessage(nil)
	f.Add(ik)
	f.Add(xx)
	f.Add([]byte{})
	f.Add(make([]byte, IKInitiationSize))
	f.Add(make([]byte, XXInitiationSize)) // a low-order ephemeral key
	f.Fuzz(func(t *testing.T, msg []byte) {
		// Threat model: anyone can send a responder any bytes. It must
		// reject them with an error, never panic, and never complete an IK
		// handshake without the initiator's identity.
		for _, p := range []Pattern{PatternIK, PatternXX} {
			res, err := NewResponder(b, p, PreferredSuite(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if res.ReadMessage(msg) != nil {
				continue
			}
			if p == PatternIK && res.Peer().Key == nil {
				t.Fatal("IK initiation accepted without an identity")
			}
			// An XX ephemeral key of low order is caught here.
			res.WriteMessage(nil)
		}
	})
}

// BenchmarkHandshakeIK measures a full IK handshake, both sides.
func BenchmarkHandshakeIK(b *testing.B) {
	a, r := testIdentity(b, 1), testIdentity(b, 2)
	b.ReportAllocs()
	for range b.N {
		ini, err := NewInitiator(Config{Identity: a, PeerKey: r.PublicKey()}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		res, err := NewResponder(r, PatternIK, PreferredSuite(), 0)
		if err != nil {
			b.Fatal(err)
		}
		run(b, ini, res, IKInitiationSize, IKResponseSize)
	}
}

// BenchmarkHandshakeIKNewPeers is BenchmarkHandshakeIK between two nodes
// that have never met: every handshake is between a new pair of
// identities (made, untimed, in batches), so nothing about the peer is
// cached, and neither is either side's own identity signature.
func BenchmarkHandshakeIKNewPeers(b *testing.B) {
	const batch = 64
	b.ReportAllocs()
	pairs := make([][2]*identity.Identity, 0, batch)
	for done := 0; done < b.N; {
		b.StopTimer()
		pairs = pairs[:0]
		for range min(batch, b.N-done) {
			a, err := identity.Generate()
			if err != nil {
				b.Fatal(err)
			}
			r, err := identity.Generate()
			if err != nil {
				b.Fatal(err)
			}
			a.ECDH() // once per identity, for any number of peers
			r.ECDH()
			pairs = append(pairs, [2]*identity.Identity{a, r})
		}
		b.StartTimer()
		for _, p := range pairs {
			ini, err := NewInitiator(Config{Identity: p[0], PeerKey: p[1].PublicKey()}, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			res, err := NewResponder(p[1], PatternIK, PreferredSuite(), 0)
			if err != nil {
				b.Fatal(err)
			}
			run(b, ini, res, IKInitiationSize, IKResponseSize)
		}
		done += len(pairs)
	}
}

// TestExtensions carries extensions in every message that can hold them
// and checks that the peer reads exactly them, that both sides agree on
// the handshake hash after every message, and that a message's
// extensions do not leak into the next one.
func TestExtensions(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	for _, tc := range []struct {
		name     string
		cfg      Config
		pattern  Pattern
		messages int
	}{
		{"IK", Config{Identity: a, PeerKey: b.PublicKey()}, PatternIK, 2},
		{"XX", Config{Identity: a}, PatternXX, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ini, err := NewInitiator(tc.cfg, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			res, err := NewResponder(b, tc.pattern, PreferredSuite(), 7)
			if err != nil {
				t.Fatal(err)
			}
			from, to := ini, res
			for i := range tc.messages {
				ext := bytes.Repeat([]byte{byte(i + 1)}, 10*(i+1))
				if tc.pattern == PatternXX && i == 0 {
					ext = make([]byte, MaxExtensions) // clear text: padding only
				}
				if i == 1 {
					ext = nil // a message without extensions
				}
				if err := from.SetExtensions(ext); err != nil {
					t.Fatal(err)
				}
				msg, err := from.WriteMessage(nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := to.ReadMessage(msg); err != nil {
					t.Fatalf("message %d: %v", i+1, err)
				}
				if got := to.PeerExtensions(); !bytes.Equal(got, ext) {
					t.Fatalf("message %d carried %x, want %x", i+1, got, ext)
				}
				if !bytes.Equal(from.Hash(), to.Hash()) || len(from.Hash()) != 32 {
					t.Fatalf("hashes differ after message %d", i+1)
				}
				from, to = to, from
			}
			ki, _ := ini.Keys()
			kr, _ := res.Keys()
			if ki == nil || kr == nil || !bytes.Equal(ki.Hash, kr.Hash) || !bytes.Equal(ini.Hash(), ki.Hash) {
				t.Fatal("handshake did not complete with one hash")
			}
			if ki.Peer.Incarnation != 7 {
				t.Fatalf("incarnation %d with extensions", ki.Peer.Incarnation)
			}
		})
	}
}

// TestExtensionLimits refuses extensions beyond MaxExtensions on both
// ends, without failing the handshake on the reading end.
func TestExtensionLimits(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
	if err := ini.SetExtensions(make([]byte, MaxExtensions+1)); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("oversized extensions set: %v", err)
	}
	if err := ini.SetExtensions(make([]byte, MaxExtensions)); err != nil {
		t.Fatal(err)
	}
	msg, err := ini.WriteMessage(nil)
	if err != nil || len(msg) != MaxHandshakeSize {
		t.Fatalf("%d bytes, %v", len(msg), err)
	}
	res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
	if err := res.ReadMessage(append(bytes.Clone(msg), 0)); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("message past MaxHandshakeSize: %v", err)
	}
	if err := res.ReadMessage(msg); err != nil {
		t.Fatalf("read after an oversized message: %v", err)
	}
}

// TestVouch: a voucher is asked about the peer's key and extensions, and
// stands in for the identity signature only when it vouches: a payload
// with a wrong signature is refused without it.
func TestVouch(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
	ini.SetExtensions([]byte("certificate"))
	msg, _ := ini.WriteMessage(nil)
	res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
	res.SetVouch(func(key ed25519.PublicKey, ext []byte) bool {
		if !bytes.Equal(key, a.PublicKey()) || string(ext) != "certificate" {
			t.Fatalf("vouch asked about %x, %q", key, ext)
		}
		return false
	})
	if err := res.ReadMessage(msg); err != nil {
		t.Fatal(err)
	}
	for _, vouch := range []bool{true, false} {
		res, _ := NewResponder(b, PatternIK, PreferredSuite(), 0)
		res.SetVouch(func(ed25519.PublicKey, []byte) bool { return vouch })
		err := res.ReadMessage(ikWithBadSignature(t, a, b))
		if vouch != (err == nil) || !vouch && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("vouch %v: %v", vouch, err)
		}
	}
}

// ikWithBadSignature is an IK initiation from a to b whose identity
// payload carries a's signature of another message than its static key.
func ikWithBadSignature(t *testing.T, a, b *identity.Identity) []byte {
	t.Helper()
	ini, _ := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
	payload := append(append([]byte{}, a.PublicKey()...), a.Sign([]byte("not the static key"))...)
	payload = append(payload, make([]byte, incarnationSize+timestampSize)...)
	out, _, _, err := ini.hs.WriteMessage(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Both suites complete both patterns with keys of their own AEAD, an
// initiator's zero Suite is PreferredSuite, and two sides that disagree
// on the suite fail at the first encrypted payload and make no session.
func TestSuites(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	sizes := map[Pattern][]int{
		PatternIK: {IKInitiationSize, IKResponseSize},
		PatternXX: {XXInitiationSize, XXResponseSize, XXFinalSize},
	}
	for _, p := range []Pattern{PatternIK, PatternXX} {
		cfg := Config{Identity: a}
		if p == PatternIK {
			cfg.PeerKey = b.PublicKey()
		}
		for _, s := range suites {
			cfg.Suite = s
			ini, err := NewInitiator(cfg, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			res, err := NewResponder(b, p, s, 0)
			if err != nil {
				t.Fatal(err)
			}
			run(t, ini, res, sizes[p]...)
			ik, _ := ini.Keys()
			rk, _ := res.Keys()
			checkKeys(t, ik, rk)
			if ik.Suite != s || rk.Suite != s || ini.Suite() != s || res.Suite() != s {
				t.Fatalf("%v %v: keys of suites %v and %v", p, s, ik.Suite, rk.Suite)
			}
			if ik.Send.bigEndian != (s == SuiteAESGCM) {
				t.Fatalf("%v %v: the session's cipher has the other suite's nonce", p, s)
			}

			// The other side expects the other suite.
			other := SuiteAESGCM
			if s == SuiteAESGCM {
				other = SuiteChaChaPoly
			}
			ini, _ = NewInitiator(cfg, time.Now())
			res, _ = NewResponder(b, p, other, 0)
			from, to := ini, res
			var failed error
			for i := 0; failed == nil && i < len(sizes[p]); i++ {
				msg, err := from.WriteMessage(nil)
				if err != nil {
					t.Fatal(err)
				}
				failed = to.ReadMessage(msg)
				from, to = to, from
			}
			if !errors.Is(failed, ErrBadMessage) || ini.Complete() || res.Complete() {
				t.Fatalf("%v, initiator %v, responder %v: %v, complete %v %v", p, s, other, failed, ini.Complete(), res.Complete())
			}
		}
		cfg.Suite = 0
		if ini, _ := NewInitiator(cfg, time.Now()); ini.Suite() != PreferredSuite() {
			t.Fatalf("zero Suite: %v, want %v", ini.Suite(), PreferredSuite())
		}
	}
	if _, err := NewResponder(b, PatternIK, 0, 0); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("responder of suite 0: %v, want ErrBadConfig", err)
	}
	if _, err := NewInitiator(Config{Identity: a, Suite: 9}, time.Now()); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("initiator of suite 9: %v, want ErrBadConfig", err)
	}
}
