package fuzz

import (
	"bytes"
	"testing"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
)

// FuzzDataHeader: any host on the path, or anyone who can send UDP to a
// node, can put arbitrary bytes where a data header is expected. Parsing
// must never panic, must reject anything shorter than header plus tag, and
// what it accepts must encode back to the same header bytes.
func FuzzDataHeader(f *testing.F) {
	f.Add(wire.PutDataHeader(make([]byte, wire.DataOverhead), wire.DataHeader{Receiver: 7, Counter: 1 << 40}))
	f.Add([]byte{byte(wire.TypeData)})
	f.Add(make([]byte, wire.DataOverhead))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := wire.ParseDataHeader(b)
		if err != nil {
			return
		}
		if len(b) < wire.DataOverhead {
			t.Fatalf("accepted %d bytes, below the %d-byte minimum", len(b), wire.DataOverhead)
		}
		out := wire.PutDataHeader(make([]byte, wire.DataHeaderSize), h)
		h2, err := wire.ParseDataHeader(append(out, make([]byte, wire.TagSize)...))
		if err != nil || h2 != h {
			t.Fatalf("round trip: %+v -> %+v, %v", h, h2, err)
		}
		if !bytes.Equal(out[4:], b[4:wire.DataHeaderSize]) {
			t.Fatalf("re-encoded header %x differs from input %x", out, b[:wire.DataHeaderSize])
		}
	})
}

// FuzzHandshake: handshake messages arrive from anyone, before any
// authentication. Parsing must never panic, must bound the Noise message,
// and must split the packet so that re-encoding it gives the same bytes.
func FuzzHandshake(f *testing.F) {
	for _, typ := range []wire.Type{wire.TypeInitIK, wire.TypeInitXX, wire.TypeResponse, wire.TypeFinal} {
		f.Add(wire.AppendHandshake(nil, wire.Handshake{Type: typ, Sender: 1, Receiver: 2, Noise: make([]byte, 48)}))
		f.Add(wire.AppendHandshake(nil, wire.Handshake{Type: typ, Suite: wire.SuiteAESGCM, Sender: 1, Noise: make([]byte, 48)}))
	}
	f.Add([]byte{byte(wire.TypeInitIK), 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := wire.ParseHandshake(b)
		if err != nil {
			return
		}
		if len(h.Noise) == 0 || len(h.Noise) > wire.MaxNoiseMessage {
			t.Fatalf("accepted a %d-byte Noise message", len(h.Noise))
		}
		out := wire.AppendHandshake(nil, h)
		copy(out[len(out)-2*wire.MACSize:], h.MAC1)
		copy(out[len(out)-wire.MACSize:], h.MAC2)
		if b[2] == 0 && b[3] == 0 && !bytes.Equal(out, b) {
			t.Fatalf("round trip changed the packet:\n in %x\nout %x", b, out)
		}
		h2, err := wire.ParseHandshake(out)
		if err != nil || h2.Suite != h.Suite || h2.Suite != b[1] || h2.Sender != h.Sender || h2.Receiver != h.Receiver || !bytes.Equal(h2.Noise, h.Noise) {
			t.Fatalf("re-parse: %+v, %v", h2, err)
		}
	})
}

// FuzzCookieReply: a cookie reply is unauthenticated until its AEAD opens;
// parsing arbitrary bytes must not panic and must accept only the exact size.
func FuzzCookieReply(f *testing.F) {
	f.Add(wire.AppendCookieReply(nil, wire.CookieReply{Receiver: 9, Nonce: make([]byte, wire.CookieNonceSize), Sealed: make([]byte, wire.CookieSize+wire.TagSize)}))
	f.Add([]byte{byte(wire.TypeCookie)})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := wire.ParseCookieReply(b)
		if err != nil {
			return
		}
		out := wire.AppendCookieReply(nil, c)
		if len(out) != wire.CookieReplySize || !bytes.Equal(out[4:], b[4:]) {
			t.Fatalf("round trip changed the reply:\n in %x\nout %x", b, out)
		}
	})
}

// FuzzFrame: the inner frame header is authenticated, but a malicious peer
// chooses its bytes freely. Parsing must not panic and must round-trip.
func FuzzFrame(f *testing.F) {
	f.Add([]byte{1, 0, 'h', 'i'})  // a datagram
	f.Add([]byte{0xAC, 0x96, 'r'}) // a named protocol's number
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, body, err := wire.ParseFrame(b)
		if err != nil {
			if len(b) >= wire.FrameHeaderSize {
				t.Fatalf("rejected %d bytes: %v", len(b), err)
			}
			return
		}
		out := make([]byte, wire.FrameHeaderSize, wire.FrameHeaderSize+len(body))
		wire.PutFrameHeader(out, p)
		if out = append(out, body...); !bytes.Equal(out, b) {
			t.Fatalf("round trip: %x -> %x", b, out)
		}
	})
}

// FuzzRoute: a routed frame's header is chosen by the neighbour that sent
// it, honest relay or not. Parsing must not panic, must require a non-empty
// inner packet, and must round-trip.
func FuzzRoute(f *testing.F) {
	b := make([]byte, wire.RouteHeaderSize+1)
	wire.PutRouteHeader(b, wire.RouteHeader{Hops: 3, Src: identity.NodeID{1}, Dst: identity.NodeID{2}})
	f.Add(b)
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, inner, err := wire.ParseRoute(b)
		if err != nil {
			return
		}
		if len(inner) == 0 {
			t.Fatal("accepted a route frame without an inner packet")
		}
		out := make([]byte, wire.RouteHeaderSize)
		wire.PutRouteHeader(out, h)
		if !bytes.Equal(append(out, inner...), b) {
			t.Fatalf("round trip changed the frame")
		}
	})
}

// FuzzExtensions: the extension block of a handshake payload is chosen by
// the peer (and read before its certificate is checked). Splitting it must
// never panic or read past the block, and the extensions split off must
// append back to exactly the input.
func FuzzExtensions(f *testing.F) {
	f.Add(wire.AppendExtension(wire.AppendExtension(nil, wire.ExtCertificate, make([]byte, 200)), wire.ExtPadding, make([]byte, 40)))
	f.Add([]byte{byte(wire.ExtRefusal), 1, 0, 5})
	f.Add([]byte{9, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out []byte
		rest := b
		for len(rest) > 0 {
			typ, v, r, err := wire.ParseExtension(rest)
			if err != nil {
				return
			}
			if len(r) >= len(rest) {
				t.Fatal("no progress")
			}
			out = wire.AppendExtension(out, typ, v)
			rest = r
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip:\n in %x\nout %x", b, out)
		}
	})
}
