package noise

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

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
		other, err := (&x25519{}).DH(b.Private, a.Public)
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

// Only an IK initiator's DH between its static key and the peer's goes to
// the identity's cache. Not an ephemeral key on either side (the cache
// would fill with one-time values and evict the peers it serves), and
// nothing on a responder (the peer's static key comes from an
// unauthenticated initiation: a cache hit's speed would be an oracle).
func TestStaticStaticOnly(t *testing.T) {
	a, b := testIdentity(t, 1), testIdentity(t, 2)
	ini, err := NewInitiator(Config{Identity: a, PeerKey: b.PublicKey()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := NewResponder(b, PatternIK, PreferredSuite(), 0)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ini.WriteMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.ReadMessage(msg); err != nil { // res now knows a's static key
		t.Fatal(err)
	}
	e, err := ini.dh.GenerateKeypair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	aStatic, bStatic := a.ECDH().PublicKey().Bytes(), b.ECDH().PublicKey().Bytes()
	for _, c := range []struct {
		name      string
		h         *Handshake
		priv, pub []byte
		want      bool
	}{
		{"initiator static-static", ini, a.X25519(), bStatic, true},
		{"initiator static-ephemeral", ini, a.X25519(), e.Public, false},
		{"initiator ephemeral-static", ini, e.Private, bStatic, false},
		{"responder static-static", res, b.X25519(), aStatic, false},
	} {
		if got := c.h.dh.staticStatic(c.priv, c.pub); got != c.want {
			t.Errorf("%s: staticStatic = %v, want %v", c.name, got, c.want)
		}
	}
	// And the cached answer is the DH itself.
	got, err := ini.dh.DH(a.X25519(), bStatic)
	if err != nil {
		t.Fatal(err)
	}
	want, err := a.ECDH().ECDH(b.ECDH().PublicKey())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("static-static DH differs: %v", err)
	}
}

// FuzzScalarMult checks scalarMult against crypto/ecdh on any scalar and
// u-coordinate: the peer chooses u, so every 32-byte value must give
// X25519's answer (or its low-order error), never a different secret.
func FuzzScalarMult(f *testing.F) {
	f.Add(bytes.Repeat([]byte{1}, 32), append([]byte{9}, make([]byte, 31)...))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32))
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Fuzz(func(t *testing.T, scalar, u []byte) {
		if len(scalar) != 32 || len(u) != 32 {
			if _, err := scalarMult(scalar, u); err == nil {
				t.Fatal("accepted a key that is not 32 bytes")
			}
			return
		}
		matchECDH(t, scalar, u)
	})
}

// matchECDH fails t unless scalarMult(scalar, u) gives crypto/ecdh's
// answer: the same secret, or an error where ecdh has one.
func matchECDH(t testing.TB, scalar, u []byte) {
	t.Helper()
	got, err := scalarMult(scalar, u)
	priv, _ := ecdh.X25519().NewPrivateKey(scalar)
	pub, _ := ecdh.X25519().NewPublicKey(u)
	want, wantErr := priv.ECDH(pub)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("X25519(%x, %x) = %x, %v; crypto/ecdh: %x, %v", scalar, u, got, err, want, wantErr)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 7748, sections 5.2 and 6.1.
func TestScalarMultVectors(t *testing.T) {
	for _, v := range []struct{ k, u, want string }{
		{"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
		{"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
			"de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
			"4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"},
	} {
		got, err := scalarMult(unhex(t, v.k), unhex(t, v.u))
		if err != nil || hex.EncodeToString(got) != v.want {
			t.Errorf("X25519(%s, %s) = %x, %v; want %s", v.k, v.u, got, err, v.want)
		}
	}
	// The iterated test: k, u = X25519(k, u), k, starting from k = u = 9.
	k, u := make([]byte, 32), make([]byte, 32)
	k[0], u[0] = 9, 9
	for i := 1; i <= 1000; i++ {
		r, err := scalarMult(k, u)
		if err != nil {
			t.Fatal(err)
		}
		k, u = r, k
		want := map[int]string{
			1:    "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
			1000: "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51",
		}[i]
		if want != "" && hex.EncodeToString(k) != want {
			t.Fatalf("after %d iterations: %x, want %s", i, k, want)
		}
	}
}

// scalarMult and GenerateKeypair must agree with crypto/ecdh on every
// input: random scalars with random u-coordinates (top bit set or not,
// values at or above 2^255-19 included) and the low-order points.
func TestScalarMultMatchesECDH(t *testing.T) {
	var x x25519
	for range 500 {
		scalar, u := make([]byte, 32), make([]byte, 32)
		rand.Read(scalar)
		rand.Read(u)
		matchECDH(t, scalar, u)
		kp, err := x.GenerateKeypair(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, _ := ecdh.X25519().NewPrivateKey(kp.Private)
		if !bytes.Equal(kp.Public, priv.PublicKey().Bytes()) {
			t.Fatalf("GenerateKeypair: public %x, crypto/ecdh %x", kp.Public, priv.PublicKey().Bytes())
		}
	}
	scalar := make([]byte, 32)
	rand.Read(scalar)
	for _, u := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000", // 0
		"0100000000000000000000000000000000000000000000000000000000000000", // 1
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", // order 8
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p - 1
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p + 1
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // 2^256 - 1
	} {
		matchECDH(t, scalar, unhex(t, u))
	}
	if _, err := scalarMult(scalar[:31], scalar); err == nil {
		t.Fatal("accepted a 31-byte scalar")
	}
}

// BenchmarkScalarMult and BenchmarkGenerateKeypair price a DH and an
// ephemeral key, next to crypto/ecdh doing the same.
func BenchmarkScalarMult(b *testing.B) {
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	p, _ := ecdh.X25519().GenerateKey(rand.Reader)
	b.Run("netmesh", func(b *testing.B) {
		for b.Loop() {
			scalarMult(k.Bytes(), p.PublicKey().Bytes())
		}
	})
	b.Run("ecdh", func(b *testing.B) {
		for b.Loop() {
			k.ECDH(p.PublicKey())
		}
	})
}

func BenchmarkGenerateKeypair(b *testing.B) {
	b.Run("netmesh", func(b *testing.B) {
		var x x25519
		for b.Loop() {
			x.GenerateKeypair(rand.Reader)
		}
	})
	b.Run("ecdh", func(b *testing.B) {
		for b.Loop() {
			ecdh.X25519().GenerateKey(rand.Reader)
		}
	})
}
