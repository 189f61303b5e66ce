package rpc_test

import (
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/rpc"
)

// A server's service tags survive the application announcing its own set
// afterwards: AnnounceCapabilities once replaced them, and CallService
// failed with no responders until the application called
// UpdateCapabilities instead.
func TestServiceTagsSurviveAnnounce(t *testing.T) {
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{})
	if err := s.srv.Handle("echo", echo); err != nil {
		t.Fatal(err)
	}
	if err := s.sm.AnnounceCapabilities(capability.Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the client to see the application's set", func() bool {
		n, ok := s.cm.Capabilities().Index().Lookup(s.sm.ID())
		return ok && n.Set.HasTag("gpu")
	})
	resp, err := s.c.CallService(ctxT(t), "echo", []byte("x"))
	if err != nil || string(resp) != "echo:x" {
		t.Fatalf("CallService after the application announced: %q, %v", resp, err)
	}
}
