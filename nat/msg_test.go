//go:build nat

package nat

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"

	"github.com/netmesh/netmesh/identity"
)

func TestMessageRoundTrip(t *testing.T) {
	peer := identity.NodeID{1, 2, 3}
	for _, m := range []Message{
		{Type: MsgReflexRequest, TxID: 7},
		{Type: MsgReflexResponse, TxID: 7, Candidates: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:4000")}},
		{Type: MsgIntroduce, TxID: 1 << 60, Peer: peer, NAT: Cone, Candidates: []netip.AddrPort{
			netip.MustParseAddrPort("198.51.100.7:4000"), netip.MustParseAddrPort("[2001:db8::1]:443")}},
		{Type: MsgPunch, TxID: 9, Peer: peer, Status: StatusNoRelay},
	} {
		b, err := m.Append(nil)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		got, err := ParseMessage(b)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %+v: got %+v, %v", m, got, err)
		}
	}
}

func TestMessageRejects(t *testing.T) {
	good, _ := (&Message{Type: MsgAccept, Candidates: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:1")}}).Append(nil)
	for name, b := range map[string][]byte{
		"empty":      nil,
		"short":      good[:msgHeaderSize-1],
		"type 0":     append([]byte{0}, good[1:]...),
		"type 99":    append([]byte{99}, good[1:]...),
		"truncated":  good[:len(good)-1],
		"trailing":   append(append([]byte(nil), good...), 0),
		"bad family": func() []byte { b := bytes.Clone(good); b[msgHeaderSize] = 5; return b }(),
		"port 0":     func() []byte { b := bytes.Clone(good); b[len(b)-1] = 0; return b }(),
		"too many":   func() []byte { b := bytes.Clone(good); b[msgHeaderSize-1] = MaxCandidates + 1; return b }(),
		"bad nat":    func() []byte { b := bytes.Clone(good); b[msgHeaderSize-2] = byte(numTypes); return b }(),
		"bad status": func() []byte { b := bytes.Clone(good); b[msgHeaderSize-3] = byte(numStatuses); return b }(),
	} {
		if _, err := ParseMessage(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	for _, bad := range []string{"0.0.0.0:1", "[::ffff:1.2.3.4]:5", "[fe80::1%eth0]:5"} {
		m := Message{Type: MsgAccept, Candidates: []netip.AddrPort{netip.MustParseAddrPort(bad)}}
		if _, err := m.Append(nil); err == nil {
			t.Errorf("encoded candidate %s", bad)
		}
	}
}

// FuzzMessage feeds arbitrary bytes to ParseMessage. Threat: NAT frames
// arrive from any peer with a session (authenticated, but not trusted),
// including a malicious coordinator; a frame must never panic the node's
// reader goroutine, make it allocate beyond MaxCandidates addresses, or
// parse into a message that encodes differently (which would let two
// nodes disagree about what was said). Property: anything that parses
// re-encodes to the same bytes and parses again to the same message.
func FuzzMessage(f *testing.F) {
	for _, m := range []Message{
		{Type: MsgReflexRequest, TxID: 1},
		{Type: MsgReflexResponse, TxID: 2, Candidates: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:4000")}},
		{Type: MsgIntroduce, TxID: 3, Peer: identity.NodeID{9}, NAT: Symmetric, Candidates: []netip.AddrPort{
			netip.MustParseAddrPort("10.0.0.2:4000"), netip.MustParseAddrPort("[2001:db8::1]:443")}},
		{Type: MsgPunch, TxID: 4, Status: StatusTimeout},
	} {
		b, _ := m.Append(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		out, err := m.Append(nil)
		if err != nil {
			t.Fatalf("parsed %+v does not encode: %v", m, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
		again, err := ParseMessage(out)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("second parse: %+v, %v; want %+v", again, err, m)
		}
	})
}
