package capability

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// testID returns a deterministic identity.
func testID(tb testing.TB, n int) *identity.Identity {
	tb.Helper()
	seed := make([]byte, identity.SeedSize)
	binary.BigEndian.PutUint64(seed, uint64(n)+1)
	id, err := identity.FromSeed(seed)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// signedWire returns a signed announcement of set by id, as the origin sends it.
func signedWire(tb testing.TB, id *identity.Identity, version uint64, set Set) []byte {
	tb.Helper()
	return originWire(tb, id, Announcement{Version: version, Set: set})
}

// withdrawalWire returns a signed withdrawal by id, as the origin sends it.
func withdrawalWire(tb testing.TB, id *identity.Identity, version uint64) []byte {
	tb.Helper()
	return originWire(tb, id, Announcement{Version: version, Withdrawn: true})
}

// originWire signs a and encodes it as its origin id sends it: hop count 1,
// the default TTL, all of it left.
func originWire(tb testing.TB, id *identity.Identity, a Announcement) []byte {
	tb.Helper()
	a.TTL, a.Hops, a.Remaining = DefaultTTL, 1, DefaultTTL
	if err := a.Sign(id); err != nil {
		tb.Fatal(err)
	}
	b, err := a.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestAnnouncementRoundTrip(t *testing.T) {
	id := testID(t, 1)
	sets := []Set{
		{},
		{Tags: []string{"zz", "gpu", "cuda"}, Metadata: map[string]string{"gpu_mem_gb": "24", "name": "A100 «80GB»", "empty": ""}},
	}
	for _, set := range sets {
		a := Announcement{Version: 42, TTL: time.Hour, Degraded: true, Set: set, Hops: 3, Remaining: 1234 * time.Second}
		if err := a.Sign(id); err != nil {
			t.Fatal(err)
		}
		b, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != headerLen+set.encodedLen()+signatureLen {
			t.Fatalf("encoded %d bytes, want %d", len(b), headerLen+set.encodedLen()+signatureLen)
		}
		got, err := DecodeAnnouncement(b)
		if err != nil {
			t.Fatal(err)
		}
		if !verifyEncoded(got.Key, b) || got.Origin != id.NodeID() || !got.Signed() {
			t.Fatal("decoded announcement does not verify")
		}
		want := a
		want.Set.Tags = slices.Sorted(slices.Values(set.Tags))
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, &want)
		}
		// The hop count and the remaining lifetime are outside the
		// signature and the digest that tells copies from tampered ones.
		e := &Engine{seed: maphash.MakeSeed()}
		sameSigned := func(b, c []byte) bool { return e.digest(b) == e.digest(c) }
		b[offHops] = 9
		if !verifyEncoded(got.Key, b) {
			t.Fatal("changing the hop count broke the signature")
		}
		for i := offRemaining; i < offFlags; i++ {
			c := bytes.Clone(b)
			c[i] ^= 0x5a
			if !verifyEncoded(got.Key, c) || !sameSigned(b, c) {
				t.Fatalf("changing remaining-lifetime byte %d broke the signature", i)
			}
		}
		// Every other byte is covered.
		for i := range len(b) - signatureLen {
			if i == offHops || i >= offRemaining && i < offFlags {
				continue
			}
			c := bytes.Clone(b)
			c[i] ^= 0x01
			if verifyEncoded(got.Key, c) || sameSigned(b, c) {
				t.Fatalf("changing byte %d kept the signature valid", i)
			}
		}
		b[offFlags] ^= flagDegraded
		if verifyEncoded(got.Key, b) {
			t.Fatal("changing the flags kept the signature valid")
		}
	}
}

func TestWithdrawalEncoding(t *testing.T) {
	id := testID(t, 1)
	b := withdrawalWire(t, id, 9)
	if len(b) != headerLen+2+signatureLen || b[offFlags] != flagWithdrawn {
		t.Fatalf("withdrawal encodes as %d bytes with flags %#x", len(b), b[offFlags])
	}
	got, err := DecodeAnnouncement(b)
	if err != nil || !got.Withdrawn || !verifyEncoded(id.PublicKey(), b) {
		t.Fatalf("decode: %+v, %v", got, err)
	}
	for _, bad := range []Announcement{
		{Version: 9, TTL: DefaultTTL, Withdrawn: true, Degraded: true, Hops: 1, Remaining: DefaultTTL},
		{Version: 9, TTL: DefaultTTL, Withdrawn: true, Set: Set{Tags: []string{"gpu"}}, Hops: 1, Remaining: DefaultTTL},
	} {
		bad.Key = id.PublicKey()
		if _, err := bad.MarshalBinary(); !errors.Is(err, ErrMalformed) {
			t.Errorf("MarshalBinary(%+v) = %v, want ErrMalformed", bad, err)
		}
	}
	b[offFlags] |= flagDegraded
	if _, err := DecodeAnnouncement(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("withdrawn and degraded: %v, want ErrMalformed", err)
	}
}

func TestDecodeAnnouncementErrors(t *testing.T) {
	good := signedWire(t, testID(t, 1), 7, Set{Tags: []string{"bb", "cc"}, Metadata: map[string]string{"k": "v"}})
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	setAt := headerLen
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"short", good[:headerLen], ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing", append(bytes.Clone(good), 0), ErrMalformed},
		{"type", mutate(func(b []byte) []byte { b[0] = 2; return b }), ErrMalformed},
		{"format", mutate(func(b []byte) []byte { b[1] = 3; return b }), ErrMalformed},
		{"flags", mutate(func(b []byte) []byte { b[offFlags] = 4; return b }), ErrMalformed},
		{"withdrawal with a set", mutate(func(b []byte) []byte { b[offFlags] = flagWithdrawn; return b }), ErrMalformed},
		{"ttl zero", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offTTL:], 0); return b }), ErrMalformed},
		{"ttl huge", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offTTL:], 1<<31); return b }), ErrMalformed},
		{"remaining over ttl", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offRemaining:], 91); return b }), ErrMalformed},
		{"remaining huge", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b[offRemaining:], 1<<32-1); return b }), ErrMalformed},
		{"format 1", mutate(func(b []byte) []byte { b[1] = 1; return b }), ErrMalformed},
		{"unsorted tags", mutate(func(b []byte) []byte { b[setAt+2], b[setAt+5] = 'c', 'b'; b[setAt+3], b[setAt+6] = 'c', 'b'; return b }), ErrMalformed},
		{"duplicate tags", mutate(func(b []byte) []byte { b[setAt+5], b[setAt+6] = 'b', 'b'; return b }), ErrMalformed},
		{"bad tag char", mutate(func(b []byte) []byte { b[setAt+2] = 'B'; return b }), ErrMalformed},
		{"set length lies", mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[offSetLen:], 3); return b }), ErrMalformed},
		{"set length too big", mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[offSetLen:], MaxSetSize+1); return b }), ErrOversized},
		{"too long", make([]byte, MaxAnnouncementSize+1), ErrOversized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeAnnouncement(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("DecodeAnnouncement = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := DecodeAnnouncement(good); err != nil {
		t.Fatalf("good announcement: %v", err)
	}
}

func TestMarshalBinaryErrors(t *testing.T) {
	key := testID(t, 1).PublicKey()
	tests := []struct {
		name string
		a    Announcement
		want error
	}{
		{"no key", Announcement{TTL: DefaultTTL}, ErrMalformed},
		{"short ttl", Announcement{Key: key, TTL: time.Second}, ErrMalformed},
		{"fractional ttl", Announcement{Key: key, TTL: 4500 * time.Millisecond}, ErrMalformed},
		{"signature size", Announcement{Key: key, TTL: DefaultTTL, Signature: []byte{1}}, ErrMalformed},
		{"invalid set", Announcement{Key: key, TTL: DefaultTTL, Set: Set{Tags: []string{"X"}}}, ErrInvalidSet},
		{"remaining over ttl", Announcement{Key: key, TTL: DefaultTTL, Remaining: DefaultTTL + time.Second}, ErrMalformed},
		{"negative remaining", Announcement{Key: key, TTL: DefaultTTL, Remaining: -time.Second}, ErrMalformed},
		{"fractional remaining", Announcement{Key: key, TTL: DefaultTTL, Remaining: 1500 * time.Millisecond}, ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := tt.a.MarshalBinary(); !errors.Is(err, tt.want) {
			t.Errorf("%s: MarshalBinary = %v, want %v", tt.name, err, tt.want)
		}
	}
}
