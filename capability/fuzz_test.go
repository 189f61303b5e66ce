package capability

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeAnnouncement feeds DecodeAnnouncement arbitrary bytes.
//
// Threat: any peer with a session (or anyone who compromised one) can send a
// capability message of its choosing, and every forwarder hands it on, so
// DecodeAnnouncement sees attacker-controlled bytes before any signature
// check. It must never panic, never allocate beyond the bounded sizes, and
// only accept canonical encodings: decode, encode and decode again must give
// the same announcement, and the encoding must equal the input byte for byte
// (so a signature covers exactly one meaning). HandleMessage is fuzzed the
// same way to cover the checks that follow decoding.
func FuzzDecodeAnnouncement(f *testing.F) {
	id := testID(f, 1)
	f.Add(signedWire(f, id, 1, Set{}))
	f.Add(signedWire(f, id, 1<<40, Set{Tags: []string{"gpu", "scope:tenant:acme"}, Metadata: map[string]string{"gpu_mem_gb": "24", "name": "A100 «80»"}}))
	f.Add(signedWire(f, id, 2, Set{Metadata: map[string]string{NameKey: "gpu-box-3"}}))
	f.Add(remainingWire(f, id, 2, 17*time.Second)) // relayed late
	f.Add(remainingWire(f, id, 3, 0))              // expired
	f.Add(withdrawalWire(f, id, 4))
	f.Add([]byte{msgAnnouncement, formatV2, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeAnnouncement(b)
		if err != nil {
			return
		}
		enc, err := a.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded announcement does not encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("non-canonical input accepted:\n in %x\nout %x", b, enc)
		}
		a2, err := DecodeAnnouncement(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(a, a2) {
			t.Fatalf("round trip changed the announcement:\n%+v\n%+v", a, a2)
		}
		s := newSimNet(t, 2, Config{AllowUnsigned: true})
		s.link(0, 1)
		s.order[0].e.HandleMessage(s.order[1].id.NodeID(), b)
	})
}

// FuzzParseFilter feeds ParseFilter arbitrary text (a CLI argument or an
// RPC field): it must not panic or recurse without bound, and what it
// accepts must print back to text that parses to the same filter.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"gpu && gpu_mem_gb>=24", "!(a1 || b1) && k==\"x y\"", "*", "t<=-1e+09"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			return
		}
		again, err := ParseFilter(flt.String())
		if err != nil || again.String() != flt.String() {
			t.Fatalf("%q printed as %q, which reparses as %q, %v", s, flt.String(), again.String(), err)
		}
	})
}

// TestDecodeAnnouncementCorpus keeps the committed seed corpus in step with
// the wire format: the well-formed entries must still decode (a format
// change must regenerate them, or they stop exercising anything past the
// header checks) and the broken ones must fail for their own reason.
func TestDecodeAnnouncementCorpus(t *testing.T) {
	want := map[string]error{
		"empty-set":           nil,
		"typical":             nil,
		"unsigned":            nil,
		"degraded-max-hops":   nil, // decodes; its signature is wrong
		"expired":             nil, // decodes; the engine rejects it
		"late-relay":          nil,
		"truncated":           ErrMalformed,
		"remaining-over-ttl":  ErrMalformed,
		"format-v1":           ErrMalformed, // the layout without a remaining lifetime
		"withdrawal":          nil,
		"withdrawal-with-set": ErrMalformed, // a withdrawal has an empty set
		"withdrawal-degraded": ErrMalformed, // and no degraded flag
		"named":               nil,
		"named-invalid":       ErrMalformed, // node:name must be a valid name
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeAnnouncement")
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d corpus entries, want %d: update this test with the corpus", len(files), len(want))
	}
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
			t.Errorf("%s: not a one-value fuzz corpus file", f.Name())
			continue
		}
		b, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Errorf("%s: %v", f.Name(), err)
			continue
		}
		exp, ok := want[f.Name()]
		if !ok {
			t.Errorf("%s: unexpected corpus entry", f.Name())
			continue
		}
		if _, err := DecodeAnnouncement([]byte(b)); !errors.Is(err, exp) {
			t.Errorf("%s: DecodeAnnouncement = %v, want %v", f.Name(), err, exp)
		}
	}
}
