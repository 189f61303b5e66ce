//go:build !nat

package mesh

import (
	"context"
	"net/netip"
)

// natState is empty without the nat build tag.
//
//lint:ignore U1000 the field that holds it is used only with the tag
type natState struct{}

func (m *Mesh) startNAT() {}
func (m *Mesh) stopNAT()  {}

// NATType returns NATUnknown: NAT traversal is not compiled in.
func (m *Mesh) NATType() NATType { return NATUnknown }

// ReflexAddr returns the zero AddrPort: NAT traversal is not compiled in.
func (m *Mesh) ReflexAddr() netip.AddrPort { return netip.AddrPort{} }

// ReclassifyNAT returns ErrUnsupported: build with -tags nat.
func (m *Mesh) ReclassifyNAT(ctx context.Context) (NATType, error) {
	return NATUnknown, ErrUnsupported
}

// ProbeReflex returns ErrUnsupported: build with -tags nat.
func (m *Mesh) ProbeReflex(ctx context.Context, p *Peer) (netip.AddrPort, error) {
	return netip.AddrPort{}, ErrUnsupported
}

// ConnectDirect returns ErrUnsupported: build with -tags nat. The session
// with p stays on its current path.
func (m *Mesh) ConnectDirect(ctx context.Context, p, coordinator *Peer) error {
	return ErrUnsupported
}

// SetReflexOverride returns ErrUnsupported: build with -tags nat.
func (m *Mesh) SetReflexOverride(addr netip.AddrPort) error { return ErrUnsupported }

// ClearReflexOverride returns ErrUnsupported: build with -tags nat.
func (m *Mesh) ClearReflexOverride() error { return ErrUnsupported }

// TraversalStats returns stats with Enabled false: NAT traversal is not
// compiled in.
func (m *Mesh) TraversalStats() TraversalStats { return TraversalStats{} }
