package rpc_test

import (
	"context"
	"crypto/ed25519"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/rpc"
)

// member makes a node a member of ca's closed mesh, in groups.
func member(t testing.TB, ca *identity.Identity, groups ...string) func(*mesh.Config) {
	return func(c *mesh.Config) {
		c.Identity, _ = identity.Generate()
		cert, err := identity.IssueCertificate(ca, identity.CertificateTemplate{
			NodeKey: c.Identity.PublicKey(), Name: "n", Groups: groups, NotAfter: time.Now().Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Membership.Authorities = []ed25519.PublicKey{ca.PublicKey()}
		c.Membership.Certificate = cert
	}
}

// TestRequireGroups: a handler wrapped with RequireGroups runs for a
// caller whose certificate names one of the groups and answers the others
// StatusPermissionDenied; the handler sees the caller's certificate.
func TestRequireGroups(t *testing.T) {
	ca, _ := identity.Generate()
	sm := newNode(t, member(t, ca, "svc"))
	ops := newNode(t, member(t, ca, "ops"))
	dev := newNode(t, member(t, ca, "dev"))
	srv := newServer(t, sm, rpc.ServerOptions{})
	var ran atomic.Int32
	if err := srv.Handle("restart", rpc.RequireGroups([]string{"ops", "admin"}, func(ctx context.Context, req []byte) ([]byte, error) {
		ran.Add(1)
		c, _ := rpc.CallerInfo(ctx)
		return []byte(c.Certificate.Groups[0]), nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := srv.HandleStream("tail", rpc.RequireGroupsStream([]string{"ops"}, func(ctx context.Context, req []byte, w *rpc.ResponseWriter) error {
		return w.Send(ctx, []byte("line"))
	})); err != nil {
		t.Fatal(err)
	}
	connect(t, ops, sm)
	connect(t, dev, sm)
	cops, cdev := rpc.NewClient(ops, rpc.ClientOptions{}), rpc.NewClient(dev, rpc.ClientOptions{})
	if resp, err := cops.Call(ctxT(t), sm.ID(), "restart", nil); err != nil || string(resp) != "ops" {
		t.Fatalf("a caller in the group: %q %v", resp, err)
	}
	_, err := cdev.Call(ctxT(t), sm.ID(), "restart", nil)
	serverErr(t, err, rpc.StatusPermissionDenied)
	st, err := cdev.Stream(ctxT(t), sm.ID(), "tail", nil)
	if err == nil {
		_, err = st.Recv()
	}
	serverErr(t, err, rpc.StatusPermissionDenied)
	if ran.Load() != 1 {
		t.Fatalf("the handler ran %d times", ran.Load())
	}
}
