package mesh

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/netmesh/netmesh/mesh/wire"
)

// Guards the pooled hashers against drifting from the constructions they
// replace: derivations equal blake3.DeriveKey, and MACs equal a fresh
// keyed hasher's, on first use and on every reuse of a pooled hasher.
func TestMACKeysMatchBLAKE3(t *testing.T) {
	pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
	for i := range pub {
		pub[i] = byte(i)
	}
	for _, c := range []struct {
		context string
		got     func(ed25519.PublicKey) [32]byte
	}{{"netmesh v1 mac1", mac1Key}, {"netmesh v1 cookie", cookieKey}} {
		for _, p := range []ed25519.PublicKey{pub, nil, pub} {
			var want [32]byte
			blake3.DeriveKey(c.context, keyMaterial(p), want[:])
			if got := c.got(p); got != want {
				t.Fatalf("%q of %x: %x, blake3.DeriveKey gives %x", c.context, p, got, want)
			}
		}
	}
	key := mac1Key(pub)
	pooled, oneOff := pooledMACKey(key), macKey{key: key}
	for i, msg := range [][]byte{[]byte("one"), bytes.Repeat([]byte{7}, 300), nil, []byte("one")} {
		h, _ := blake3.NewKeyed(key[:])
		h.Write(msg)
		want := h.Sum(nil)[:wire.MACSize]
		for _, k := range []*macKey{&pooled, &oneOff} {
			if got := k.sum(msg); !bytes.Equal(got[:], want) {
				t.Fatalf("message %d, pooled=%v: MAC %x, want %x", i, k.pool != nil, got, want)
			}
		}
	}
}

// Guards the flood path: checking MAC1 of an initiation, valid or junk,
// allocates nothing.
func TestMAC1CheckAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	var k floodGuard
	k.init(make(ed25519.PublicKey, ed25519.PublicKeySize), 1)
	pkt := make([]byte, 200)
	setMAC1(pkt, &k.mac1Own)
	if !validMAC1(pkt, &k.mac1Own) {
		t.Fatal("MAC1 does not verify")
	}
	junk := bytes.Repeat([]byte{0xAA}, 200)
	if n := testing.AllocsPerRun(100, func() {
		validMAC1(pkt, &k.mac1Own)
		validMAC1(junk, &k.mac1Anon)
		mac1Key(pkt[:32])
	}); n != 0 {
		t.Fatalf("%v allocations per MAC1 check and key derivation, want 0", n)
	}
}
