package noise

import (
	"bytes"
	"crypto/ecdh"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/wirevec"
)

// wireDoc is the document that lists the wire test vectors.
const wireDoc = "../docs/WIRE.md"

// vectorParty is one side of the vectors' handshakes.
type vectorParty struct {
	id          *identity.Identity
	incarnation uint64
}

// vectorParties returns the initiator and responder of docs/WIRE.md's
// test vectors, after checking what is derived from their seeds.
func vectorParties(t *testing.T, doc *wirevec.Doc) (initiator, responder vectorParty) {
	t.Helper()
	party := func(role string) vectorParty {
		id, err := identity.FromSeed(doc.Bytes(role + ".seed"))
		if err != nil {
			t.Fatal(err)
		}
		static, err := identity.X25519PublicKey(id.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		doc.Check(role+".public", id.PublicKey())
		nodeID := id.NodeID()
		doc.Check(role+".node_id", nodeID[:])
		doc.Check(role+".static", static)
		return vectorParty{id: id, incarnation: doc.Uint(role + ".incarnation")}
	}
	return party("initiator"), party("responder")
}

// The Noise messages of an IK and an XX handshake, the session keys and
// the handshake hashes are exactly the bytes docs/WIRE.md lists for its
// keys, ephemeral keys, incarnations and timestamp.
func TestWireVectors(t *testing.T) {
	doc := wirevec.Load(t, wireDoc)
	in, re := vectorParties(t, doc)
	// Every pattern with ChaChaPoly, and IK with AESGCM (the same inputs;
	// its outputs are named with the prefix "aesgcm.").
	for _, tc := range []struct {
		name, pattern string
		suite         Suite
	}{
		{"ik", "ik", SuiteChaChaPoly},
		{"xx", "xx", SuiteChaChaPoly},
		{"aesgcm.ik", "ik", SuiteAESGCM},
	} {
		pattern, out := tc.pattern, tc.name
		cfg := Config{Identity: in.id, Incarnation: in.incarnation, Suite: tc.suite}
		p := PatternXX
		if pattern == "ik" {
			cfg.PeerKey, p = re.id.PublicKey(), PatternIK
		}
		ini, err := NewInitiator(cfg, time.Unix(0, int64(doc.Uint("ik.timestamp"))))
		if err != nil {
			t.Fatal(err)
		}
		res, err := NewResponder(re.id, p, tc.suite, re.incarnation)
		if err != nil {
			t.Fatal(err)
		}
		ini.dh.testEphemeral = bytes.NewReader(doc.Bytes(pattern + ".initiator.ephemeral"))
		res.dh.testEphemeral = bytes.NewReader(doc.Bytes(pattern + ".responder.ephemeral"))
		var iKeys, rKeys [2][]byte // send, receive
		ini.testSplit = func(send, recv []byte) { iKeys = [2][]byte{bytes.Clone(send), bytes.Clone(recv)} }
		res.testSplit = func(send, recv []byte) { rKeys = [2][]byte{bytes.Clone(send), bytes.Clone(recv)} }

		from, to := ini, res
		for i := 1; !ini.Complete() || !res.Complete(); i++ {
			msg, err := from.WriteMessage(nil)
			if err != nil {
				t.Fatalf("%s message %d: %v", pattern, i, err)
			}
			doc.Check(out+".msg"+string(rune('0'+i))+".noise", msg)
			if i <= 2 { // e comes first, in clear: the drawn key's public half
				who := map[int]string{1: ".initiator", 2: ".responder"}[i]
				eph, err := ecdh.X25519().NewPrivateKey(doc.Bytes(pattern + who + ".ephemeral"))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(msg[:keySize], eph.PublicKey().Bytes()) {
					t.Fatalf("%s message %d does not start with the ephemeral key the vectors give", pattern, i)
				}
			}
			if err := to.ReadMessage(msg); err != nil {
				t.Fatalf("%s message %d: %v", pattern, i, err)
			}
			from, to = to, from
		}
		if !bytes.Equal(iKeys[0], rKeys[1]) || !bytes.Equal(iKeys[1], rKeys[0]) {
			t.Fatalf("%s: the two sides' keys do not pair up", out)
		}
		doc.Check(out+".key.initiator_send", iKeys[0])
		doc.Check(out+".key.responder_send", rKeys[0])
		ik, _ := ini.Keys()
		rk, _ := res.Keys()
		if !bytes.Equal(ik.Hash, rk.Hash) {
			t.Fatalf("%s: the handshake hashes differ", out)
		}
		doc.Check(out+".hash", ik.Hash)
		if rk.Peer.Incarnation != in.incarnation || ik.Peer.Incarnation != re.incarnation {
			t.Fatalf("%s: incarnations %d and %d, want %d and %d", pattern, rk.Peer.Incarnation, ik.Peer.Incarnation, in.incarnation, re.incarnation)
		}
	}
}
