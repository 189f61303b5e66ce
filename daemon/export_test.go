package daemon

import (
	"context"
	"sync/atomic"

	"github.com/netmesh/netmesh/identity"
)

// Side is the side of a migration a hook runs on.
type Side = side

// Side of a failure injected with SetHook.
const (
	SideSource = sideSource
	SideTarget = sideTarget
)

// SetHook has rt call f at the start of each migration phase on either
// side; an error f returns fails the phase there. Set it before any
// migration starts.
func SetHook(rt *Runtime, f func(s Side, p Phase) error) {
	if f == nil {
		rt.hook.Store(nil)
		return
	}
	rt.hook.Store(&f)
}

// LoseCutoverReply has rt, as a migration's source, take the outcome of
// its next cutover call as unknown, as if the reply had been lost.
func LoseCutoverReply(rt *Runtime) {
	var once atomic.Bool
	f := func() bool { return once.CompareAndSwap(false, true) }
	rt.loseReply.Store(&f)
}

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

// CallHost sends req to node's HostService as rt's node would: an
// attacker's message.
func CallHost(ctx context.Context, rt *Runtime, node identity.NodeID, req []byte) error {
	_, err := rt.call(ctx, node, req)
	return err
}

// ForgedForward is a forward of one event for transfer xfer.
func ForgedForward(xfer ID) []byte {
	return appendEntries(nil, opForward, xfer, []entry{{Origin: identity.NodeID{1}, Inc: 1, Ctr: 1, Data: []byte("forged")}}, 0)
}

// ForgedStandby is a shipment of event seq for the standby of id.
func ForgedStandby(id ID, seq uint64) []byte {
	return appendEntries(nil, opStandby, id, []entry{{Seq: seq, Origin: identity.NodeID{1}, Inc: 1, Ctr: 1, Data: []byte("forged")}}, 0)
}

// ForgedSpawn opens a spawn of kind owned by owner with an image of size
// bytes to come.
func ForgedSpawn(kind string, owner identity.NodeID, size uint64) []byte {
	return appendPrepare(nil, &prepareReq{Xfer: newXferID(), Mode: modeSpawn, Kind: kind, Owner: owner, Size: size})
}

// ForkTriggers returns the forks that wait at rt, which hosts id, for id
// to reach their sequence number; -1 when rt does not host it.
func ForkTriggers(rt *Runtime, id ID) int {
	in := rt.hosted(id)
	if in == nil {
		return -1
	}
	n := -1
	in.do(func() { n = len(in.triggers) })
	return n
}
