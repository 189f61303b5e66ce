package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// Location says where a daemon runs.
type Location struct {
	Daemon ID              `json:"daemon"`
	Node   identity.NodeID `json:"node"`
}

// maxCandidates bounds the nodes one placement tries.
const maxCandidates = 8

// Spawn starts a new daemon of kind, with a fresh identity, on the node
// opts names or on one placement chooses (see SpawnOptions), and returns
// where it runs. This node is its owner. Errors: FACTORY_NOT_FOUND and
// REQUIREMENTS_NOT_MET from the node named, PLACEMENT_FAILED when no
// node took it (the message gives each refusal), RESOURCE_EXHAUSTED,
// UNREACHABLE, SHUTTING_DOWN.
func (rt *Runtime) Spawn(ctx context.Context, kind string, opts SpawnOptions) (Location, error) {
	return rt.place(ctx, kind, opts, func(ctx context.Context, node identity.NodeID) (ID, error) {
		return rt.install(ctx, node, &prepareReq{Mode: modeSpawn, Kind: kind, Owner: rt.self}, nil, nil)
	})
}

// SpawnFromSnapshot starts the daemon s is a snapshot of, with the same
// id and key, its state restored and its sequence numbers continuing
// from s.Seq, on the node opts names or one placement chooses. The key
// must be sealed for this node (s.SealedFor): Snapshot and Stop seal it
// for the node that asks. This node becomes its owner.
//
// A daemon must not run twice: SpawnFromSnapshot fails with BUSY if the
// runtimes of the mesh know the daemon running (Stop it first; Stop
// returns its final snapshot).
func (rt *Runtime) SpawnFromSnapshot(ctx context.Context, s Snapshot, opts SpawnOptions) (Location, error) {
	if s.SealedFor != rt.self {
		return Location{}, &Error{Code: CodeKeyRefused, Daemon: s.Daemon, Message: fmt.Sprintf("the key is sealed for %s, not this node", s.SealedFor.Short())}
	}
	key, err := rt.openKey(s.Key, sealSnapshot, s.Daemon, ID{})
	if err != nil {
		return Location{}, &Error{Code: CodeKeyRefused, Daemon: s.Daemon, Message: err.Error()}
	}
	if len(s.State) > rt.cfg.MaxStateSize {
		return Location{}, &Error{Code: CodeLimitExceeded, Daemon: s.Daemon, Message: fmt.Sprintf("state of %d bytes, at most %d", len(s.State), rt.cfg.MaxStateSize)}
	}
	if node, err := rt.locate(ctx, s.Daemon); err == nil {
		return Location{}, &Error{Code: CodeBusy, Daemon: s.Daemon, Node: node, Message: "the daemon is running"}
	}
	im := newImage(newSenderTable(), s.State)
	return rt.place(ctx, s.Kind, opts, func(ctx context.Context, node identity.NodeID) (ID, error) {
		return rt.install(ctx, node, &prepareReq{Mode: modeSpawn, Kind: s.Kind, Owner: rt.self, Seq: s.Seq, Fork: s.Fork}, key, im)
	})
}

// place runs try on the node opts names, or on the candidates placement
// ranks for kind (the kind's tag, its requirements if this runtime
// knows the kind, and opts.Where), best first, until one takes the
// daemon.
func (rt *Runtime) place(ctx context.Context, kind string, opts SpawnOptions, try func(context.Context, identity.NodeID) (ID, error)) (Location, error) {
	if err := validKind(kind); err != nil {
		return Location{}, &Error{Code: CodeInvalid, Kind: kind, Message: err.Error()}
	}
	if rt.isClosed() {
		return Location{}, ErrClosed
	}
	if !opts.Node.IsZero() {
		id, err := try(ctx, opts.Node)
		if err != nil {
			e := asError(err)
			c := *e
			c.Kind, c.Node = kind, opts.Node
			return Location{}, &c
		}
		return Location{Daemon: id, Node: opts.Node}, nil
	}
	f := capability.AllOf(capability.HasTag(KindTagPrefix+kind), opts.Where)
	if k := rt.kind(kind); k != nil {
		f = capability.AllOf(f, k.Requires)
	}
	cands := rt.placer.Rank(f, capability.Filter{}, opts.Exclude)
	if len(cands) == 0 {
		return Location{}, &Error{Code: CodePlacementFailed, Kind: kind, Message: fmt.Sprintf("no node runs kind %q and matches %q", kind, f.String())}
	}
	var refusals []string
	for _, c := range cands[:min(len(cands), maxCandidates)] {
		rt.placer.Acquire(c.ID)
		id, err := try(ctx, c.ID)
		rt.placer.Release(c.ID)
		if err == nil {
			return Location{Daemon: id, Node: c.ID}, nil
		}
		if ctx.Err() != nil {
			return Location{}, ctxError(ctx)
		}
		e := asError(err)
		refusals = append(refusals, fmt.Sprintf("%s: %s %s", c.ID.Short(), e.Code, e.Message))
	}
	return Location{}, &Error{Code: CodePlacementFailed, Kind: kind, Message: "no node took the daemon: " + strings.Join(refusals, "; ")}
}

// install sends a daemon to node: a fresh one (key nil: the node makes
// its key), or the daemon of key with image (its sender table and
// state). It returns the daemon's id.
func (rt *Runtime) install(ctx context.Context, node identity.NodeID, r *prepareReq, key *identity.Identity, im image) (ID, error) {
	r.Xfer = newXferID()
	r.Size = uint64(im.size())
	if key != nil {
		r.Daemon = idOf(key)
		sealed, err := rt.sealFor(node, key, sealTransfer, r.Daemon, r.Xfer)
		if err != nil {
			return ID{}, &Error{Code: CodeUnreachable, Node: node, Message: err.Error()}
		}
		r.Key = sealed
	}
	id, err := rt.prepare(ctx, node, r)
	if err != nil {
		return ID{}, err
	}
	if r.Size == 0 && r.Mode == modeSpawn {
		return id, nil // the node started it at once
	}
	if err := rt.sendImage(ctx, node, r.Xfer, im); err != nil {
		rt.abort(node, r.Xfer, id)
		return ID{}, err
	}
	if _, err := rt.xferCall(ctx, node, appendXfer(nil, opRestore, r.Xfer)); err != nil {
		rt.abort(node, r.Xfer, id)
		return ID{}, err
	}
	return id, nil
}

// prepare opens a transfer on node (this one included) and returns the
// daemon's id.
func (rt *Runtime) prepare(ctx context.Context, node identity.NodeID, r *prepareReq) (ID, error) {
	resp, err := rt.xferCall(ctx, node, appendPrepare(nil, r))
	if err != nil {
		return ID{}, err
	}
	id, err := parseID(resp)
	if err != nil || (!r.Daemon.IsZero() && id != r.Daemon) {
		return ID{}, &Error{Code: CodeInvalid, Node: node, Message: fmt.Sprintf("prepare answered with daemon %s", id)}
	}
	return id, nil
}

// image is a transfer's image in parts, sent one after the other: the
// sender table and the state are not copied into one buffer (a 1 MiB
// state would cost another MiB per move).
type image [][]byte

// newImage is the image of a daemon with sender table t and state.
func newImage(t *senderTable, state []byte) image {
	return image{appendImage(nil, t, nil), state}
}

// size is the image's length in bytes.
func (im image) size() int {
	n := 0
	for _, p := range im {
		n += len(p)
	}
	return n
}

// sendImage sends a transfer's image in chunks of chunkSize, each built
// in the same buffer (a call does not keep its request).
func (rt *Runtime) sendImage(ctx context.Context, node identity.NodeID, xfer ID, im image) error {
	size := im.size()
	im = slices.Clone(im) // its parts are consumed; others may send the same image
	var buf []byte
	off := 0
	for i := 0; ; {
		for i < len(im) && len(im[i]) == 0 {
			i++
		}
		if i == len(im) {
			return nil
		}
		// The chunk: up to chunkSize bytes at off, across the parts.
		buf = appendChunkHeader(buf[:0], xfer, uint64(off), min(chunkSize, size-off))
		for n := 0; n < chunkSize && i < len(im); {
			take := min(chunkSize-n, len(im[i]))
			buf = append(buf, im[i][:take]...)
			if im[i] = im[i][take:]; len(im[i]) == 0 {
				i++
			}
			n += take
			off += take
		}
		if _, err := rt.xferCall(ctx, node, buf); err != nil {
			return err
		}
	}
}

// xferCall sends a transfer message to node: through rpc, or to the
// local handler when node is this one.
func (rt *Runtime) xferCall(ctx context.Context, node identity.NodeID, req []byte) ([]byte, error) {
	if node == rt.self {
		reply, err := rt.dispatch(ctx, rt.self, req[0], req[1:])
		if err != nil {
			return nil, asError(err).with(ID{}, node)
		}
		return reply, nil
	}
	return rt.call(ctx, node, req)
}

// abort tells node to drop a transfer, in the background (best effort:
// an unanswered transfer expires there by itself).
func (rt *Runtime) abort(node identity.NodeID, xfer, daemon ID) {
	ctx, cancel := context.WithTimeout(rt.ctx, rt.cfg.CallTimeout)
	defer cancel()
	if _, err := rt.xferCall(ctx, node, appendStatus(nil, opAbort, xfer, daemon)); err != nil {
		rt.log.Debug("daemon: abort failed", "node", node, "err", err)
	}
}

func newXferID() ID {
	var id ID
	rand.Read(id[:])
	return id
}

// Stop stops daemon id gracefully, wherever it runs: it accepts no more
// events, applies those in its inbox, and is closed. Stop returns its
// final snapshot, the key sealed for this node, so that
// SpawnFromSnapshot can start it again. Only its owner or host may stop
// it (NOT_OWNER).
func (rt *Runtime) Stop(ctx context.Context, id ID) (Snapshot, error) {
	if in := rt.hosted(id); in != nil {
		return rt.stopLocal(in, rt.self)
	}
	return rt.fetchImage(ctx, opStop, id)
}

// Snapshot returns daemon id's snapshot, wherever it runs, taken between
// two events, with its key sealed for this node. Only its owner or host
// may take it (NOT_OWNER).
func (rt *Runtime) Snapshot(ctx context.Context, id ID) (Snapshot, error) {
	if in := rt.hosted(id); in != nil {
		return rt.snapshotLocal(in, rt.self)
	}
	return rt.fetchImage(ctx, opSnapshot, id)
}

// snapshotLocal takes a hosted daemon's snapshot for node.
func (rt *Runtime) snapshotLocal(in *instance, node identity.NodeID) (Snapshot, error) {
	var s *Snapshot
	var e *Error
	if !in.do(func() { s, e = in.snapshotFor(node) }) {
		return Snapshot{}, &Error{Code: CodeNotFound, Daemon: in.id, Node: rt.self}
	}
	if e != nil {
		return Snapshot{}, e.with(in.id, rt.self)
	}
	return *s, nil
}

// stopLocal stops a hosted daemon and returns its final snapshot sealed
// for node.
func (rt *Runtime) stopLocal(in *instance, node identity.NodeID) (Snapshot, error) {
	in.mu.Lock()
	switch in.state {
	case stRunning:
	case stStopping:
		in.mu.Unlock()
		return Snapshot{}, &Error{Code: CodeShuttingDown, Daemon: in.id, Node: rt.self}
	default:
		in.mu.Unlock()
		return Snapshot{}, &Error{Code: CodeBusy, Daemon: in.id, Node: rt.self, Message: "the daemon is " + stateNames[in.state]}
	}
	in.state, in.wantFin = stStopping, node
	in.cond.Signal()
	in.mu.Unlock()
	<-in.done
	rt.mu.Lock()
	if rt.daemons[in.id] == in {
		delete(rt.daemons, in.id)
		rt.markDirtyLocked()
	}
	rt.mu.Unlock()
	if in.finalE != nil {
		return Snapshot{}, in.finalE.with(in.id, rt.self)
	}
	return *in.final, nil
}

// fetchImage asks the host of id for a snapshot (opSnapshot) or to stop
// it (opStop), over ImageService.
func (rt *Runtime) fetchImage(ctx context.Context, op byte, id ID) (Snapshot, error) {
	var s Snapshot
	err := rt.onHost(ctx, id, func(node identity.NodeID) error {
		if node == rt.self {
			return &Error{Code: CodeNotFound, Daemon: id, Node: node}
		}
		var err error
		s, _, err = rt.readImage(ctx, node, appendRequest(nil, op, id), false)
		return err
	})
	return s, err
}

// readImage reads a snapshot from node's ImageService: the header, the
// fork records if withRecords, then the state.
func (rt *Runtime) readImage(ctx context.Context, node identity.NodeID, req []byte, withRecords bool) (Snapshot, []*ForkRecord, error) {
	st, err := rt.cli.Stream(ctx, node, ImageService, req)
	if err != nil {
		return Snapshot{}, nil, callError(err, node)
	}
	defer st.Close()
	head, err := st.Recv()
	if err != nil {
		return Snapshot{}, nil, callError(err, node)
	}
	s, size, err := parseSnapshotHeader(head)
	if err != nil {
		return Snapshot{}, nil, &Error{Code: CodeInvalid, Node: node, Err: err}
	}
	if size > uint64(rt.cfg.MaxStateSize) {
		return Snapshot{}, nil, &Error{Code: CodeLimitExceeded, Daemon: s.Daemon, Node: node, Message: fmt.Sprintf("state of %d bytes, at most %d", size, rt.cfg.MaxStateSize)}
	}
	var recs []*ForkRecord
	if withRecords {
		b, err := st.Recv()
		if err != nil {
			return Snapshot{}, nil, callError(err, node)
		}
		if recs, err = parseRecords(b); err != nil {
			return Snapshot{}, nil, &Error{Code: CodeInvalid, Node: node, Err: err}
		}
	}
	if size > 0 {
		s.State = make([]byte, 0, size)
	}
	for {
		chunk, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Snapshot{}, nil, callError(err, node)
		}
		if uint64(len(s.State)+len(chunk)) > size {
			return Snapshot{}, nil, &Error{Code: CodeInvalid, Node: node, Message: "state longer than announced"}
		}
		s.State = append(s.State, chunk...)
	}
	if uint64(len(s.State)) != size {
		return Snapshot{}, nil, &Error{Code: CodeInvalid, Node: node, Message: "state shorter than announced"}
	}
	return s, recs, nil
}

// serveImage answers ImageService: a hosted daemon's snapshot, its stop
// and final snapshot, or a fork's snapshot and records, for its owner or
// host.
func (rt *Runtime) serveImage(ctx context.Context, req []byte, w *rpc.ResponseWriter) error {
	from, _ := rpc.CallerID(ctx)
	if len(req) == 0 {
		return rpc.Errorf(rpc.StatusBadRequest, "empty request")
	}
	if req[0] == opFork {
		return rt.serveFork(ctx, from, req[1:], w)
	}
	id, err := parseID(req[1:])
	if err != nil {
		return rpc.Errorf(rpc.StatusBadRequest, "%v", err)
	}
	in, e := rt.owned(id, from)
	if e != nil {
		return remoteError(e)
	}
	var s Snapshot
	switch req[0] {
	case opSnapshot:
		s, err = rt.snapshotLocal(in, from)
	case opStop:
		s, err = rt.stopLocal(in, from)
	default:
		return rpc.Errorf(rpc.StatusBadRequest, "unknown op %#x", req[0])
	}
	if err != nil {
		return remoteError(err)
	}
	if err := w.Send(ctx, appendSnapshotHeader(nil, &s)); err != nil {
		return err
	}
	return sendState(ctx, w, s.State)
}

// sendState sends a state in chunks.
func sendState(ctx context.Context, w *rpc.ResponseWriter, state []byte) error {
	for off := 0; off < len(state); off += chunkSize {
		if err := w.Send(ctx, state[off:min(off+chunkSize, len(state))]); err != nil {
			return err
		}
	}
	return nil
}

// owned returns the hosted daemon id if from may manage it: its owner,
// or this node.
func (rt *Runtime) owned(id ID, from identity.NodeID) (*instance, *Error) {
	in := rt.hosted(id)
	if in == nil {
		return nil, &Error{Code: CodeNotFound, Daemon: id, Node: rt.self}
	}
	if from != in.owner && from != rt.self {
		return nil, &Error{Code: CodeNotOwner, Daemon: id, Node: rt.self, Message: fmt.Sprintf("%s is not the owner", from.Short())}
	}
	return in, nil
}
