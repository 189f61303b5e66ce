package noise

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/flynn/noise"
)

// x25519 must compute exactly what flynn/noise's DH25519 does: the
// protocol name stays Noise_*_25519_*, so both must agree bit for bit.
func TestX25519MatchesDH25519(t *testing.T) {
	var x x25519
	for range 20 {
		a, err := x.GenerateKeypair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err := noise.DH25519.GenerateKeypair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ours, err := x.DH(a.Private, b.Public)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := noise.DH25519.DH(a.Private, b.Public)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatal("DH results differ")
		}
		other, err := (&x25519{}).DH(b.Private, a.Public) // a fresh cache
		if err != nil || !bytes.Equal(other, ours) {
			t.Fatalf("the two sides disagree: %v", err)
		}
	}
	// A low-order point gives an all-zero secret: both refuse it.
	zero := make([]byte, 32)
	k, _ := x.GenerateKeypair(rand.Reader)
	if _, err := x.DH(k.Private, zero); err == nil {
		t.Fatal("accepted a low-order public key")
	}
	if x.DHLen() != noise.DH25519.DHLen() || x.DHName() != noise.DH25519.DHName() {
		t.Fatal("DH name or length differ from DH25519")
	}
}
