package noise

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// packet is a caller-owned packet buffer, as the mesh pools them: the nonce
// lives next to the data, on the heap.
type packet struct {
	nonce Nonce
	buf   [2048]byte
}

// suites is every Suite, for the tests that run once per suite.
var suites = []Suite{SuiteChaChaPoly, SuiteAESGCM}

var testKey = bytes.Repeat([]byte{7}, 32)

func testCipher(t testing.TB, s Suite) *Cipher {
	t.Helper()
	c, err := NewCipher(s, testKey)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawAEAD is suite s's AEAD under testKey, used directly.
func rawAEAD(t testing.TB, s Suite) cipher.AEAD {
	t.Helper()
	if s == SuiteChaChaPoly {
		a, _ := chacha20poly1305.New(testKey)
		return a
	}
	block, _ := aes.NewCipher(testKey)
	a, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The nonce is 4 zero bytes and the counter, little-endian for
// ChaChaPoly and big-endian for AESGCM (the Noise specification's
// conventions), and AESGCM is AES-256.
func TestCipherNonceLayout(t *testing.T) {
	counter := uint64(0x0102030405060708)
	want := map[Suite][]byte{
		SuiteChaChaPoly: {0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1},
		SuiteAESGCM:     {0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8},
	}
	for _, s := range suites {
		n := Nonce{1, 2, 3, 4} // stale bytes must not leak into the nonce
		got := testCipher(t, s).Seal(nil, &n, counter, []byte("payload"), []byte("ad"))
		if !bytes.Equal(got, rawAEAD(t, s).Seal(nil, want[s], []byte("payload"), []byte("ad"))) {
			t.Errorf("%v: the nonce is not %x", s, want[s])
		}
	}
	if _, err := NewCipher(SuiteAESGCM, testKey[:16]); err == nil {
		t.Error("NewCipher took a 16-byte AES key")
	}
	if _, err := NewCipher(0, testKey); !errors.Is(err, ErrBadConfig) {
		t.Errorf("NewCipher of suite 0: %v, want ErrBadConfig", err)
	}
}

func TestCipherInPlace(t *testing.T) {
	for _, s := range suites {
		c := testCipher(t, s)
		p := new(packet)
		const headroom, size = 16, 1200
		for i := range size {
			p.buf[headroom+i] = byte(i)
		}
		header := p.buf[:headroom]
		plain := p.buf[headroom : headroom+size]
		sealed := c.Seal(plain[:0], &p.nonce, 42, plain, header)
		if len(sealed) != size+TagSize || &sealed[0] != &p.buf[headroom] {
			t.Fatalf("%v: Seal did not encrypt in place", s)
		}
		opened, err := c.Open(sealed[:0], &p.nonce, 42, sealed, header)
		if err != nil || len(opened) != size || opened[size-1] != byte((size-1)%256) {
			t.Fatalf("%v: Open in place: %v", s, err)
		}
		sealed = c.Seal(plain[:0], &p.nonce, 43, plain, header)
		header[0] ^= 1
		if _, err := c.Open(sealed[:0], &p.nonce, 43, sealed, header); !errors.Is(err, ErrBadMessage) {
			t.Fatalf("%v: Open with tampered ad: %v", s, err)
		}
		if _, err := c.Open(nil, &p.nonce, 0, make([]byte, TagSize-1), nil); !errors.Is(err, ErrBadMessage) {
			t.Fatalf("%v: Open of a short message: %v", s, err)
		}
	}
}

func TestCipherAllocs(t *testing.T) {
	for _, s := range suites {
		c := testCipher(t, s)
		p := new(packet)
		var counter uint64
		allocs := testing.AllocsPerRun(1000, func() {
			counter++
			plain := p.buf[32 : 32+1200]
			sealed := c.Seal(plain[:0], &p.nonce, counter, plain, p.buf[:32])
			if _, err := c.Open(sealed[:0], &p.nonce, counter, sealed, p.buf[:32]); err != nil {
				t.Fatal(err)
			}
			c.Open(sealed[:0], &p.nonce, counter+1, sealed, p.buf[:32]) // a failure allocates nothing either
		})
		if allocs != 0 {
			t.Fatalf("%v: Seal+Open allocate %v times per packet, want 0", s, allocs)
		}
	}
	var w ReplayWindow
	var counter uint64
	if allocs := testing.AllocsPerRun(1000, func() { counter++; w.Check(counter); w.Accept(counter) }); allocs != 0 {
		t.Fatalf("ReplayWindow allocates %v times per packet, want 0", allocs)
	}
}

func TestRetransmitDelay(t *testing.T) {
	for _, tc := range []struct {
		attempt  int
		rnd      float64
		min, max time.Duration
	}{
		{-1, 0, time.Second, time.Second},
		{0, 0, time.Second, time.Second},
		{0, 0.999, time.Second, 4 * time.Second / 3},
		{1, 0.5, 2 * time.Second, 2 * time.Second * 4 / 3},
		{2, 0, 4 * time.Second, 4 * time.Second},
		{1000, 0.999, 4 * time.Second, 16 * time.Second / 3},
	} {
		got := RetransmitDelay(HandshakeRetransmit, tc.attempt, func() float64 { return tc.rnd })
		if got < tc.min || got > tc.max {
			t.Errorf("RetransmitDelay(%d, %v) = %v, want in [%v, %v]", tc.attempt, tc.rnd, got, tc.min, tc.max)
		}
	}
	if d := RetransmitDelay(HandshakeRetransmit, 0, nil); d < HandshakeRetransmit || d > HandshakeRetransmit*4/3 {
		t.Errorf("RetransmitDelay(HandshakeRetransmit, 0, nil) = %v", d)
	}
	// The retries before giving up.
	var total time.Duration
	var retries int
	for total = RetransmitDelay(HandshakeRetransmit, 0, func() float64 { return 0 }); total < HandshakeGiveUp; retries++ {
		total += RetransmitDelay(HandshakeRetransmit, retries+1, func() float64 { return 0 })
	}
	if retries < 3 {
		t.Errorf("only %d retransmits before HandshakeGiveUp", retries)
	}
}

var sizes = []int{64, 1200, 1400}

// BenchmarkSeal compares Cipher.Seal with its suite's AEAD used directly
// (raw); noise should reach at least 90% of raw throughput.
func BenchmarkSeal(b *testing.B) {
	for _, s := range suites {
		c, raw := testCipher(b, s), rawAEAD(b, s)
		for _, size := range sizes {
			b.Run(fmt.Sprintf("suite=%v/%d/raw", s, size), func(b *testing.B) {
				p := new(packet)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for i := range uint64(b.N) {
					raw.Seal(p.buf[:0], p.nonce.set(i, c.bigEndian), p.buf[:size], nil)
				}
			})
			b.Run(fmt.Sprintf("suite=%v/%d/noise", s, size), func(b *testing.B) {
				p := new(packet)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for i := range uint64(b.N) {
					c.Seal(p.buf[:0], &p.nonce, i, p.buf[:size], nil)
				}
			})
		}
	}
}

// BenchmarkOpen compares Cipher.Open with its suite's AEAD used directly.
// Each packet is opened into a second buffer so the ciphertext survives.
func BenchmarkOpen(b *testing.B) {
	for _, s := range suites {
		c, raw := testCipher(b, s), rawAEAD(b, s)
		for _, size := range sizes {
			sealed := func() (*packet, []byte) {
				p := new(packet)
				return p, c.Seal(p.buf[:0], &p.nonce, 1, p.buf[:size], nil)
			}
			b.Run(fmt.Sprintf("suite=%v/%d/raw", s, size), func(b *testing.B) {
				p, ct := sealed()
				out := new(packet)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for range b.N {
					if _, err := raw.Open(out.buf[:0], p.nonce.set(1, c.bigEndian), ct, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("suite=%v/%d/noise", s, size), func(b *testing.B) {
				p, ct := sealed()
				out := new(packet)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for range b.N {
					if _, err := c.Open(out.buf[:0], &p.nonce, 1, ct, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
