package rpc_test

import (
	"testing"
	"time"

	"github.com/netmesh/netmesh/internal/wirevec"
	"github.com/netmesh/netmesh/rpc"
)

// The request and response frames of docs/WIRE.md's test vectors are the
// bytes AppendFrame makes, and parse back to what made them.
func TestWireVectors(t *testing.T) {
	doc := wirevec.Load(t, "../docs/WIRE.md")
	req := rpc.Frame{
		Type:    rpc.FrameRequest,
		Timeout: time.Duration(doc.Uint("rpc.timeout_ms")) * time.Millisecond,
		Service: doc.Text("rpc.service"),
		Body:    []byte(doc.Text("rpc.body")),
	}
	resp := rpc.Frame{Type: rpc.FrameResponse, Body: req.Body}
	for name, f := range map[string]*rpc.Frame{"rpc.request": &req, "rpc.response": &resp} {
		b := rpc.AppendFrame(nil, f)
		doc.Check(name, b)
		back, err := rpc.ParseFrame(b)
		if err != nil || back.Type != f.Type || back.Service != f.Service || back.Timeout != f.Timeout || string(back.Body) != string(f.Body) {
			t.Errorf("%s parses back to %+v, %v; want %+v", name, back, err, *f)
		}
	}
}
