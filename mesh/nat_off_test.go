//go:build !nat

package mesh_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/netmesh/netmesh/mesh"
)

// Without the nat build tag the NAT methods exist, report
// ErrUnsupported, and sessions work as usual.
func TestNATUnsupportedWithoutTag(t *testing.T) {
	a, b := newNode(t), newNode(t)
	pb := connect(t, a, b, mesh.Pin{})
	ctx := context.Background()
	if _, err := a.ReclassifyNAT(ctx); !errors.Is(err, mesh.ErrUnsupported) {
		t.Errorf("ReclassifyNAT: %v", err)
	}
	if _, err := a.ProbeReflex(ctx, pb); !errors.Is(err, mesh.ErrUnsupported) {
		t.Errorf("ProbeReflex: %v", err)
	}
	if err := a.ConnectDirect(ctx, pb, pb); !errors.Is(err, mesh.ErrUnsupported) {
		t.Errorf("ConnectDirect: %v", err)
	}
	if err := a.SetReflexOverride(netip.MustParseAddrPort("192.0.2.1:1")); !errors.Is(err, mesh.ErrUnsupported) {
		t.Errorf("SetReflexOverride: %v", err)
	}
	if err := a.ClearReflexOverride(); !errors.Is(err, mesh.ErrUnsupported) {
		t.Errorf("ClearReflexOverride: %v", err)
	}
	if a.NATType() != mesh.NATUnknown || a.ReflexAddr().IsValid() || a.TraversalStats().Enabled {
		t.Error("NAT state reported without the engine")
	}
	exchange(t, a, pb, b, []byte("still works"))
}
