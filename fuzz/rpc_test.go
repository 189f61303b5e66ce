package fuzz

import (
	"bytes"
	"testing"
	"time"

	"github.com/netmesh/netmesh/rpc"
)

// FuzzRPCFrame: every rpc message arrives from a peer with an
// authenticated session, but authenticated is not trusted: any node of the
// mesh can open an rpc stream to a server (or answer a call) with
// arbitrary bytes. ParseFrame must never panic, must bound what it accepts
// (service name, error message), and must accept only canonical
// encodings: what it accepts re-encodes to the same bytes and parses to
// the same frame.
func FuzzRPCFrame(f *testing.F) {
	for _, fr := range []rpc.Frame{
		{Type: rpc.FrameRequest, Service: "echo", Body: []byte("hi")},
		{Type: rpc.FrameRequest, Stream: true, Credit: 16, Timeout: 250 * time.Millisecond, Service: "svc/v2:x"},
		{Type: rpc.FrameCredit, Credit: 8},
		{Type: rpc.FrameResponse, Body: []byte("reply")},
		{Type: rpc.FrameChunk, Body: []byte{0}},
		{Type: rpc.FrameEnd},
		{Type: rpc.FrameError, Status: rpc.StatusBadRequest, Message: "decode request"},
	} {
		f.Add(rpc.AppendFrame(nil, &fr))
	}
	f.Add([]byte{})
	f.Add([]byte{byte(rpc.FrameRequest), 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := rpc.ParseFrame(b)
		if err != nil {
			return
		}
		if len(fr.Service) > rpc.MaxServiceLen || len(fr.Message) > rpc.MaxErrorMessage {
			t.Fatalf("accepted a %d-byte service or a %d-byte message", len(fr.Service), len(fr.Message))
		}
		if fr.Type == rpc.FrameRequest && rpc.ValidService(fr.Service) != nil {
			t.Fatalf("accepted service %q", fr.Service)
		}
		out := rpc.AppendFrame(nil, &fr)
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed the frame:\n in %x\nout %x", b, out)
		}
		fr2, err := rpc.ParseFrame(out)
		if err != nil || fr2.Type != fr.Type || fr2.Stream != fr.Stream || fr2.Timeout != fr.Timeout ||
			fr2.Credit != fr.Credit || fr2.Service != fr.Service || fr2.Status != fr.Status ||
			fr2.Message != fr.Message || !bytes.Equal(fr2.Body, fr.Body) {
			t.Fatalf("re-parse: %+v -> %+v, %v", fr, fr2, err)
		}
	})
}
