package daemon

import (
	"context"

	"github.com/netmesh/netmesh/identity"
)

// Side of a failure injected with SetHook.
const (
	SideSource = sideSource
	SideTarget = sideTarget
)

// ErrLostReply, returned by a target's hook at PhaseCutover, has the
// target commit and then fail the call, as if its reply had been lost.
var ErrLostReply = errLostReply

// SetHook has rt call f at the start of each migration phase on either
// side; an error f returns fails the phase there. Set it before any
// migration starts.
func SetHook(rt *Runtime, f func(s side, p Phase) error) { rt.hook = f }

// PrepareSealedFor opens a transfer of the daemon of key on target with
// the key sealed for node sealedFor (an attacker's, or a confused
// source's, transfer), and returns the target's verdict.
func PrepareSealedFor(ctx context.Context, rt *Runtime, target, sealedFor identity.NodeID, kind string, key *identity.Identity) error {
	xfer := newXferID()
	id := idOf(key)
	sealed, err := rt.sealFor(sealedFor, key, sealTransfer, id, xfer)
	if err != nil {
		return err
	}
	_, err = rt.prepare(ctx, target, &prepareReq{Xfer: xfer, Mode: modeMigrate, Daemon: id, Kind: kind, Owner: rt.self, Key: sealed, Size: 1})
	return err
}

// Waiting returns the number of events for id waiting at rt to be sent.
func Waiting(rt *Runtime, id ID) int {
	r := rt.routes.get(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}
