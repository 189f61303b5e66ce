package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// Hash is a SHA-256 digest; its text form is hex.
type Hash [sha256.Size]byte

// String returns the digest in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(h) {
		return fmt.Errorf("daemon: hash of %d characters", len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// ForkRecord links a forked daemon to its parent: the parent, with its
// key, signs that the child (its key) started from the parent's state at
// sequence number Seq, whose SHA-256 is StateHash. Anyone can check it
// with Verify, and check a state against it with Matches; the record
// travels with the child wherever it runs (Info.Fork).
type ForkRecord struct {
	Parent    ID                `json:"parent"`
	ParentKey ed25519.PublicKey `json:"parent_key"`
	Seq       uint64            `json:"seq"`
	StateHash Hash              `json:"state_hash"`
	Child     ID                `json:"child"`
	ChildKey  ed25519.PublicKey `json:"child_key"`
	// Index is the child's place in its fork group, Group the group's
	// random id: the children of one fork share it.
	Index int `json:"index"`
	Group ID  `json:"group"`
	// Sig is the parent's ed25519 signature of the fields above.
	Sig []byte `json:"sig"`
}

// forkLabel prefixes what a fork record's signature covers.
const forkLabel = "netmesh daemon fork v1"

// message returns the bytes the parent signs.
func (r *ForkRecord) message() []byte {
	b := make([]byte, 0, 200)
	b = append(b, forkLabel...)
	b = append(b, r.ParentKey...)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = append(b, r.StateHash[:]...)
	b = append(b, r.ChildKey...)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Index))
	return append(b, r.Group[:]...)
}

// Verify checks the record: the ids derive from the keys and the parent
// signed it.
func (r *ForkRecord) Verify() error {
	switch {
	case len(r.ParentKey) != ed25519.PublicKeySize || len(r.ChildKey) != ed25519.PublicKeySize:
		return errors.New("fork record: bad key")
	case IDFromKey(r.ParentKey) != r.Parent:
		return errors.New("fork record: the parent id is not its key's")
	case IDFromKey(r.ChildKey) != r.Child:
		return errors.New("fork record: the child id is not its key's")
	case !identity.Verify(r.ParentKey, r.message(), r.Sig):
		return errors.New("fork record: bad signature")
	}
	return nil
}

// Matches reports whether state is the one the record names.
func (r *ForkRecord) Matches(state []byte) bool { return sha256.Sum256(state) == r.StateHash }

// ForkOptions configures Fork.
type ForkOptions struct {
	// N is the number of children, 1 to 64.
	N int
	// Seq is the parent's sequence number to fork at: the snapshot is
	// taken right after the parent applies that event (waiting for it if
	// need be). 0 forks at once. A Seq the parent has passed fails with
	// INVALID.
	Seq uint64
	// Where and Exclude place the children, as SpawnOptions do.
	Where   capability.Filter
	Exclude []identity.NodeID
}

// ForkGroup is the outcome of Fork: the parent, the sequence number the
// children started from, and the children.
type ForkGroup struct {
	Parent  ID           `json:"parent"`
	Seq     uint64       `json:"seq"`
	Group   ID           `json:"group"`
	Members []ForkMember `json:"members"`
}

// ForkMember is one child of a fork.
type ForkMember struct {
	Index  int             `json:"index"`
	Daemon ID              `json:"daemon"`
	Node   identity.NodeID `json:"node"`
	Record *ForkRecord     `json:"record"`
}

// Fork starts opts.N independent daemons from one snapshot of daemon
// parent at sequence number opts.Seq, each with a fresh identity, its
// state restored from the snapshot and its sequence numbers continuing
// from it, and a ForkRecord the parent signed. This node owns the
// children, and must own or host the parent (NOT_OWNER). The children
// are placed like Spawn; on failure the group holds the children placed
// so far and the error says why the next one was not.
func (rt *Runtime) Fork(ctx context.Context, parent ID, opts ForkOptions) (*ForkGroup, error) {
	if opts.N < 1 || opts.N > maxForks {
		return nil, &Error{Code: CodeInvalid, Daemon: parent, Message: fmt.Sprintf("%d forks: 1 to %d", opts.N, maxForks)}
	}
	req := &forkReq{Daemon: parent, Seq: opts.Seq, Group: newXferID()}
	keys := make([]*identity.Identity, opts.N)
	for i := range keys {
		k, err := identity.Generate()
		if err != nil {
			return nil, err
		}
		keys[i] = k
		req.Children = append(req.Children, k.PublicKey())
	}
	var s Snapshot
	var recs []*ForkRecord
	var err error
	if in := rt.hosted(parent); in != nil {
		s, recs, err = rt.forkLocal(ctx, in, req)
	} else {
		err = rt.onHost(ctx, parent, func(node identity.NodeID) error {
			if node == rt.self {
				return &Error{Code: CodeNotFound, Daemon: parent, Node: node}
			}
			var err error
			s, recs, err = rt.readImage(ctx, node, appendFork(nil, req), true)
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	if len(recs) != opts.N {
		return nil, &Error{Code: CodeInvalid, Daemon: parent, Message: fmt.Sprintf("%d records for %d forks", len(recs), opts.N)}
	}
	g := &ForkGroup{Parent: parent, Seq: s.Seq, Group: req.Group}
	im := newImage(newSenderTable(), s.State)
	for i, rec := range recs {
		if err := rec.Verify(); err != nil || rec.Parent != parent || rec.Child != idOf(keys[i]) || rec.Index != i || rec.Seq != s.Seq || !rec.Matches(s.State) {
			return g, &Error{Code: CodeInvalid, Daemon: parent, Message: fmt.Sprintf("fork record %d does not verify: %v", i, err)}
		}
		loc, err := rt.place(ctx, s.Kind, SpawnOptions{Where: opts.Where, Exclude: opts.Exclude}, func(ctx context.Context, node identity.NodeID) (ID, error) {
			return rt.install(ctx, node, &prepareReq{Mode: modeSpawn, Kind: s.Kind, Owner: rt.self, Seq: s.Seq, Fork: rec}, keys[i], im)
		})
		if err != nil {
			return g, err
		}
		g.Members = append(g.Members, ForkMember{Index: i, Daemon: loc.Daemon, Node: loc.Node, Record: rec})
	}
	return g, nil
}

// forkLocal takes the snapshot of a daemon hosted here at req.Seq and
// signs the fork records of req's children.
func (rt *Runtime) forkLocal(ctx context.Context, in *instance, req *forkReq) (Snapshot, []*ForkRecord, error) {
	type result struct {
		state []byte
		seq   uint64
		e     *Error
	}
	got := make(chan result, 1)
	take := func() {
		state, seq, e := in.takeState()
		got <- result{state, seq, e}
	}
	if !in.do(func() {
		switch cur := in.seq.Load(); {
		case req.Seq == 0 || cur == req.Seq:
			take()
		case cur > req.Seq:
			got <- result{e: &Error{Code: CodeInvalid, Daemon: in.id, Message: fmt.Sprintf("the daemon is at %d, past %d", cur, req.Seq)}}
		default:
			in.triggers = append(in.triggers, seqTrigger{seq: req.Seq, f: take})
		}
	}) {
		return Snapshot{}, nil, &Error{Code: CodeNotFound, Daemon: in.id, Node: rt.self}
	}
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		return Snapshot{}, nil, ctxError(ctx)
	case <-in.done:
		return Snapshot{}, nil, &Error{Code: CodeAborted, Daemon: in.id, Message: "the daemon stopped"}
	}
	if r.e != nil {
		return Snapshot{}, nil, r.e
	}
	s := Snapshot{Daemon: in.id, Kind: in.kind.Name, Seq: r.seq, State: r.state, Owner: in.owner, Fork: in.fork}
	h := Hash(sha256.Sum256(r.state))
	recs := make([]*ForkRecord, len(req.Children))
	for i, ck := range req.Children {
		rec := &ForkRecord{Parent: in.id, ParentKey: in.key.PublicKey(), Seq: r.seq, StateHash: h,
			Child: IDFromKey(ck), ChildKey: ck, Index: i, Group: req.Group}
		rec.Sig = in.key.Sign(rec.message())
		recs[i] = rec
	}
	return s, recs, nil
}

// seqTrigger runs f on the daemon's goroutine right after it applies the
// event with sequence number seq.
type seqTrigger struct {
	seq uint64
	f   func()
}

// serveFork answers opFork on ImageService: the snapshot's header, the
// records, then the state in chunks.
func (rt *Runtime) serveFork(ctx context.Context, from identity.NodeID, body []byte, w *rpc.ResponseWriter) error {
	req, err := parseFork(body)
	if err != nil {
		return rpc.Errorf(rpc.StatusBadRequest, "%v", err)
	}
	in, e := rt.owned(req.Daemon, from)
	if e != nil {
		return remoteError(e)
	}
	s, recs, err := rt.forkLocal(ctx, in, &req)
	if err != nil {
		return remoteError(err)
	}
	if err := w.Send(ctx, appendSnapshotHeader(nil, &s)); err != nil {
		return err
	}
	if err := w.Send(ctx, appendRecords(nil, recs)); err != nil {
		return err
	}
	return sendState(ctx, w, s.State)
}
