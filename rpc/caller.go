package rpc

import (
	"context"

	"github.com/netmesh/netmesh/identity"
)

// Caller is what a server knows of the node whose call a handler serves.
type Caller struct {
	// ID is the caller's NodeID, authenticated by the session the
	// request arrived on.
	ID identity.NodeID
	// Certificate is the caller's membership certificate, verified in its
	// handshake (mesh.Peer.Certificate): nil in an open mesh.
	Certificate *identity.Certificate
}

// InGroup reports whether the caller's certificate names any of groups.
func (c Caller) InGroup(groups ...string) bool { return c.Certificate.InGroup(groups...) }

// CallerInfo returns the caller of the call ctx serves, in a handler's
// context.
func CallerInfo(ctx context.Context) (Caller, bool) {
	if c, ok := ctx.Value(callerKey{}).(*Caller); ok {
		return *c, true
	}
	return Caller{}, false
}

// RequireGroups returns a handler that runs h only for callers whose
// membership certificate names at least one of groups, and answers the
// others StatusPermissionDenied. Groups come from a membership authority
// (docs/SECURITY.md), so in a closed mesh they are access control, not a
// claim the caller makes about itself.
func RequireGroups(groups []string, h Handler) Handler {
	return func(ctx context.Context, req []byte) ([]byte, error) {
		if err := checkGroups(ctx, groups); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// RequireGroupsStream is RequireGroups for a streaming handler.
func RequireGroupsStream(groups []string, h StreamHandler) StreamHandler {
	return func(ctx context.Context, req []byte, w *ResponseWriter) error {
		if err := checkGroups(ctx, groups); err != nil {
			return err
		}
		return h(ctx, req, w)
	}
}

func checkGroups(ctx context.Context, groups []string) error {
	if c, ok := CallerInfo(ctx); ok && c.InGroup(groups...) {
		return nil
	}
	return Errorf(StatusPermissionDenied, "the caller is in none of the groups %v", groups)
}
