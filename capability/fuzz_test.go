package capability

import (
	"bytes"
	"reflect"
	"testing"
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
	f.Add([]byte{msgAnnouncement, formatV1, 1})
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
