package channel

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/netmesh/netmesh/identity"
)

func codecSamples(t testing.TB) []message {
	iss, _ := identity.FromSeed(bytes.Repeat([]byte{1}, identity.SeedSize))
	tok, err := identity.IssueToken(iss, identity.TokenGrant{Subject: iss.PublicKey(), Perms: identity.PermSubscribe, Channel: "a/b", Expiry: tokenTestExpiry})
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := tok.MarshalBinary()
	long := []byte(strings.Repeat("z", MaxNameLen))
	return []message{
		{typ: msgSubscribe, reqID: 7, name: []byte("a/b")},
		{typ: msgSubscribe, reqID: 1 << 63, name: long, token: tb},
		{typ: msgAck, reqID: 7, pending: 1024},
		{typ: msgReject, reqID: 7, reason: ReasonToken, problem: TokenExpired},
		{typ: msgReject, reqID: 8, reason: ReasonRateLimited},
		{typ: msgPublish, name: []byte("a/b"), seq: 1, payload: []byte("hello")},
		{typ: msgPublish, name: long, seq: 99, payload: []byte{}},
		{typ: msgUnsubscribe, name: []byte("x")},
		{typ: msgEnd, name: []byte("x"), reason: ReasonSubnet},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, m := range codecSamples(t) {
		b := m.appendTo(nil)
		if len(b) != m.encodedLen() {
			t.Errorf("type %d: encodedLen %d, encoded %d", m.typ, m.encodedLen(), len(b))
		}
		got, err := decode(b)
		if err != nil {
			t.Fatalf("type %d: %v", m.typ, err)
		}
		if !bytes.Equal(got.appendTo(nil), b) {
			t.Errorf("type %d: round trip differs", m.typ)
		}
		if m.typ != msgPublish && len(b) > MaxControlMessageSize {
			t.Errorf("control message of %d bytes", len(b))
		}
		// Every truncation and every extension fails.
		for n := range len(b) {
			if _, err := decode(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Errorf("type %d truncated to %d: %v", m.typ, n, err)
			}
		}
		if _, err := decode(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
			t.Errorf("type %d extended: %v", m.typ, err)
		}
	}
	if MaxControlMessageSize != 433 {
		t.Errorf("MaxControlMessageSize %d; update docs/CHANNELS.md", MaxControlMessageSize)
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"version":         {byte(msgAck), 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
		"type":            {0, formatV1},
		"pending 0":       (&message{typ: msgAck}).appendTo(nil),
		"pending huge":    (&message{typ: msgAck, pending: MaxPendingLimit + 1}).appendTo(nil),
		"reason 0":        (&message{typ: msgReject}).appendTo(nil),
		"reason 8":        (&message{typ: msgReject, reason: reasonMax + 1}).appendTo(nil),
		"token w/o token": (&message{typ: msgReject, reason: ReasonToken}).appendTo(nil),
		"problem w/o tok": (&message{typ: msgEnd, name: []byte("a"), reason: ReasonSubnet, problem: TokenExpired}).appendTo(nil),
		"problem huge":    (&message{typ: msgReject, reason: ReasonToken, problem: tokenProblemMax + 1}).appendTo(nil),
		"empty name":      (&message{typ: msgUnsubscribe}).appendTo(nil),
		"upper name":      (&message{typ: msgUnsubscribe, name: []byte("A")}).appendTo(nil),
		"long name":       (&message{typ: msgUnsubscribe, name: bytes.Repeat([]byte("a"), MaxNameLen+1)}).appendTo(nil),
		"short token":     (&message{typ: msgSubscribe, name: []byte("a"), token: []byte{1}}).appendTo(nil),
		"huge payload":    (&message{typ: msgPublish, name: []byte("a"), payload: make([]byte, MaxPayloadSize+1)}).appendTo(nil),
	} {
		if _, err := decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzDecode feeds the channel message decoder arbitrary bytes.
//
// Threat: any peer with a session (a malicious subscriber, publisher, or a
// node that compromised one) can send channel messages of its choosing, and
// HandleMessage decodes them before anything else. decode must never panic
// or allocate beyond the message, and must accept only canonical
// encodings: decode, encode and decode again must give the same message,
// and the encoding must equal the input byte for byte. HandleMessage runs
// on the input too, to cover what follows decoding.
func FuzzDecode(f *testing.F) {
	for _, m := range codecSamples(f) {
		f.Add(m.appendTo(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err == nil {
			enc := m.appendTo(nil)
			if !bytes.Equal(enc, b) {
				t.Fatalf("non-canonical input accepted:\n in %x\nout %x", b, enc)
			}
			again, err := decode(enc)
			if err != nil || !reflect.DeepEqual(m, again) {
				t.Fatalf("round trip: %v\n%+v\n%+v", err, m, again)
			}
		}
		net := newFakeNet(t)
		a, p := net.add(Options{}), net.add(Options{})
		if err := p.e.Register("a/b", Config{RequireToken: len(b)%2 == 0}); err != nil {
			t.Fatal(err)
		}
		_ = p.e.HandleMessage(a.ID(), b)
		_ = a.e.HandleMessage(p.ID(), b)
	})
}
