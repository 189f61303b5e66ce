package daemon

import (
	"crypto/ed25519"
	"math"
	"time"

	"github.com/netmesh/netmesh/daemon/internal/codec"
	"github.com/netmesh/netmesh/identity"
)

// The messages of the runtime's two rpc services: HostService (unary;
// every request starts with an op byte) and ImageService (streaming: a
// snapshot's header, then its state in chunks). Integers are varints,
// byte strings and strings a varint length and the bytes, ids and NodeIDs
// their 16 bytes, a sender's incarnation 8 bytes. docs/DAEMONS.md
// describes each message.

// Ops of HostService requests.
const (
	opDeliver  byte = 0x01 // events for a daemon hosted here
	opLocate   byte = 0x02 // is a daemon here, or where did it go?
	opInfo     byte = 0x03 // a hosted daemon's Info
	opMigrate  byte = 0x04 // the owner asks the host to migrate a daemon
	opPrepare  byte = 0x10 // a transfer begins: kind, sealed key, size
	opChunk    byte = 0x11 // part of a transfer's image
	opRestore  byte = 0x12 // make the daemon from the image
	opReplay   byte = 0x13 // events the source applied since the snapshot
	opCutover  byte = 0x14 // the last of them; commit
	opComplete byte = 0x15 // the source knows the target committed
	opAbort    byte = 0x16 // drop the transfer
	opStatus   byte = 0x17 // did the transfer commit?
	opForward  byte = 0x18 // events that waited at the source through the cutover
	opStandby  byte = 0x20 // the active's applied events, for its standby
	opHeld     byte = 0x21 // the sequence number a standby holds
	opPromote  byte = 0x22 // make the standby the active
	opSync     byte = 0x23 // the owner asks the active to sync its standbys
)

// Ops of ImageService requests.
const (
	opSnapshot byte = 0x01 // the daemon's snapshot
	opStop     byte = 0x02 // stop the daemon; its final snapshot
	opFork     byte = 0x03 // a snapshot at a sequence number, and fork records
)

// Status of a delivery or locate reply.
const (
	statusOK       byte = 0 // delivered (receipts follow) / here
	statusMoved    byte = 1 // the daemon moved to the node that follows
	statusNotFound byte = 2 // not here, and not known to have moved
	statusNotReady byte = 3 // arriving here, not serving yet
	statusStopping byte = 4 // stopping, or the runtime is
)

// Modes of a transfer.
const (
	modeMigrate byte = 1 // a live migration: restore, replay, cutover
	modeSpawn   byte = 2 // a new daemon: it serves once restored
	modeStandby byte = 3 // a standby: the image and key are held
)

// Flags of a receipt.
const flagDuplicate byte = 0x01

// entry is one event in a message between runtimes: a log or replay
// entry (Seq set), or one waiting for the daemon (Seq 0). Origin, Inc and
// Ctr name the delivery for deduplication: the node that sent it, its
// runtime's incarnation and the runtime's counter.
type entry struct {
	Seq    uint64
	Origin identity.NodeID
	Inc    uint64
	Ctr    uint64
	Data   []byte
}

// batchLen returns how many of es go in one message: at most maxN, and
// at most maxBatchBytes of data unless the first alone is larger.
func batchLen(es []entry, maxN int) int {
	n, size := 0, 0
	for n < len(es) && n < maxN && (n == 0 || size+len(es[n].Data) <= maxBatchBytes) {
		size += len(es[n].Data)
		n++
	}
	return n
}

// deliverReq is a batch of events from one sender for one daemon.
type deliverReq struct {
	Daemon ID
	Inc    uint64
	Ctrs   []uint64
	Data   [][]byte
}

// wireReceipt is one event's outcome in a delivery reply.
type wireReceipt struct {
	Code      Code
	Message   string
	Seq       uint64
	Duplicate bool
	Outputs   [][]byte
}

// deliverReply answers a delivery: a status and, when it is statusOK,
// one receipt per event in order; statusMoved names the node.
type deliverReply struct {
	Status   byte
	Node     identity.NodeID
	Receipts []wireReceipt
}

// prepareReq opens a transfer of a daemon to the node it is sent to.
type prepareReq struct {
	Xfer   ID // the transfer's random id
	Mode   byte
	Daemon ID // zero for a fresh spawn: the target makes the key
	Kind   string
	Owner  identity.NodeID
	Seq    uint64
	Key    []byte // the daemon's seed sealed to the target; nil for a fresh spawn
	Size   uint64 // image bytes that follow in chunks
	Fork   *ForkRecord
}

// codec helpers for the package's field types.
type encoder struct{ codec.Encoder }

func (e *encoder) id(v ID)                { e.Fixed(v[:]) }
func (e *encoder) node(v identity.NodeID) { e.Fixed(v[:]) }

type decoder struct{ *codec.Decoder }

func newDecoder(b []byte) decoder { return decoder{codec.NewDecoder(b, ErrMalformed)} }

func (d decoder) id() (v ID) {
	copy(v[:], d.Fixed(IDSize))
	return v
}

func (d decoder) node() (v identity.NodeID) {
	copy(v[:], d.Fixed(identity.NodeIDSize))
	return v
}

// entries appends a list of entries; withSeq says whether Seq is sent.
func (e *encoder) entries(es []entry, withSeq bool) {
	e.Uvarint(uint64(len(es)))
	for _, x := range es {
		if withSeq {
			e.Uvarint(x.Seq)
		}
		e.node(x.Origin)
		e.Uint64(x.Inc)
		e.Uvarint(x.Ctr)
		e.Bytes(x.Data)
	}
}

// entries reads a list of at most max entries. With withSeq their
// sequence numbers must be consecutive.
func (d decoder) entries(max int, withSeq bool) []entry {
	n := d.Count(max, "entries")
	if n == 0 {
		return nil
	}
	es := make([]entry, 0, n)
	for range n {
		var x entry
		if withSeq {
			x.Seq = d.Uvarint()
			if len(es) > 0 && x.Seq != es[len(es)-1].Seq+1 && d.Err() == nil {
				d.Fail("sequence %d after %d", x.Seq, es[len(es)-1].Seq)
			}
		}
		x.Origin, x.Inc, x.Ctr = d.node(), d.Uint64(), d.Uvarint()
		x.Data = d.Bytes(maxWireBytes, "event")
		if d.Err() != nil {
			return nil
		}
		es = append(es, x)
	}
	return es
}

// appendRequest appends an op and a daemon id: the whole request of
// opLocate, opInfo, opHeld, opPromote and the image service.
func appendRequest(b []byte, op byte, id ID) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Byte(op)
	e.id(id)
	return e.B
}

// parseID decodes a request that is a daemon id alone, after its op.
func parseID(b []byte) (ID, error) {
	d := newDecoder(b)
	id := d.id()
	return id, d.End()
}

// appendDeliver appends a delivery request.
func appendDeliver(b []byte, r *deliverReq) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Byte(opDeliver)
	e.id(r.Daemon)
	e.Uint64(r.Inc)
	e.Uvarint(uint64(len(r.Data)))
	for i, data := range r.Data {
		e.Uvarint(r.Ctrs[i])
		e.Bytes(data)
	}
	return e.B
}

// parseDeliver decodes a delivery request after its op byte. The events
// alias b.
func parseDeliver(b []byte) (deliverReq, error) {
	d := newDecoder(b)
	r := deliverReq{Daemon: d.id(), Inc: d.Uint64()}
	n := d.Count(maxBatchEvents, "events")
	r.Ctrs, r.Data = make([]uint64, 0, n), make([][]byte, 0, n)
	for range n {
		ctr := d.Uvarint()
		data := d.Bytes(maxWireBytes, "event")
		if d.Err() != nil {
			return deliverReq{}, d.Err()
		}
		r.Ctrs, r.Data = append(r.Ctrs, ctr), append(r.Data, data)
	}
	return r, d.End()
}

// appendDeliverReply appends a delivery reply.
func appendDeliverReply(b []byte, r *deliverReply) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Byte(r.Status)
	switch r.Status {
	case statusMoved:
		e.node(r.Node)
	case statusOK:
		e.receipts(r.Receipts)
	}
	return e.B
}

func (e *encoder) receipts(rs []wireReceipt) {
	e.Uvarint(uint64(len(rs)))
	for _, r := range rs {
		e.String(string(r.Code))
		e.String(r.Message)
		e.Uvarint(r.Seq)
		var flags byte
		if r.Duplicate {
			flags |= flagDuplicate
		}
		e.Byte(flags)
		e.Uvarint(uint64(len(r.Outputs)))
		for _, o := range r.Outputs {
			e.Bytes(o)
		}
	}
}

// parseDeliverReply decodes a delivery reply. Outputs alias b.
func parseDeliverReply(b []byte) (deliverReply, error) {
	d := newDecoder(b)
	r := deliverReply{Status: d.Byte()}
	switch r.Status {
	case statusMoved:
		r.Node = d.node()
	case statusOK:
		r.Receipts = d.receipts(maxBatchEvents)
	case statusNotFound, statusNotReady, statusStopping:
	default:
		d.Fail("status %d", r.Status)
	}
	return r, d.End()
}

func (d decoder) receipts(max int) []wireReceipt {
	n := d.Count(max, "receipts")
	rs := make([]wireReceipt, 0, n)
	for range n {
		var r wireReceipt
		r.Code = Code(d.String(maxLabel, "code"))
		r.Message = d.String(maxMessage, "message")
		r.Seq = d.Uvarint()
		flags := d.Byte()
		if flags&^flagDuplicate != 0 {
			d.Fail("unknown flags %#x", flags)
		}
		r.Duplicate = flags&flagDuplicate != 0
		outs := d.Count(maxOutputs, "outputs")
		for range outs {
			r.Outputs = append(r.Outputs, d.Bytes(maxWireBytes, "output"))
		}
		switch {
		case d.Err() != nil:
			return nil
		case r.Code != "" && !validCode(string(r.Code)):
			d.Fail("code %q", r.Code)
		case r.Duplicate && (r.Code != "" || len(r.Outputs) != 0):
			d.Fail("duplicate with a code or outputs")
		}
		rs = append(rs, r)
	}
	return rs
}

// appendLocateReply appends the reply to opLocate: statusOK (here),
// statusMoved and the node, or statusNotFound.
func appendLocateReply(b []byte, status byte, node identity.NodeID) []byte {
	return appendDeliverReply(b, &deliverReply{Status: status, Node: node})
}

// appendPrepare appends a transfer's opening request.
func appendPrepare(b []byte, r *prepareReq) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Byte(opPrepare)
	e.id(r.Xfer)
	e.Byte(r.Mode)
	e.id(r.Daemon)
	e.String(r.Kind)
	e.node(r.Owner)
	e.Uvarint(r.Seq)
	e.Bytes(r.Key)
	e.Uvarint(r.Size)
	e.Bool(r.Fork != nil)
	if r.Fork != nil {
		e.fork(r.Fork)
	}
	return e.B
}

// parsePrepare decodes a transfer's opening request after its op byte.
// Key aliases b.
func parsePrepare(b []byte) (prepareReq, error) {
	d := newDecoder(b)
	r := prepareReq{Xfer: d.id(), Mode: d.Byte(), Daemon: d.id()}
	r.Kind = d.String(MaxKindName, "kind")
	r.Owner, r.Seq = d.node(), d.Uvarint()
	r.Key = d.Bytes(maxSealedKey, "sealed key")
	r.Size = d.Uvarint()
	if d.Bool() {
		r.Fork = d.fork()
	}
	switch {
	case d.Err() != nil:
	case r.Mode < modeMigrate || r.Mode > modeStandby:
		d.Fail("mode %d", r.Mode)
	case r.Daemon.IsZero() != (len(r.Key) == 0):
		d.Fail("a daemon id without a key, or a key without an id")
	case r.Daemon.IsZero() && r.Mode != modeSpawn:
		d.Fail("only a spawn makes a new key")
	}
	return r, d.End()
}

// appendXfer appends a request that names a transfer alone: restore,
// complete.
func appendXfer(b []byte, op byte, xfer ID) []byte { return appendRequest(b, op, xfer) }

// appendStatus appends a request that names a transfer and its daemon:
// abort, status (asked of a target, or of a source by a target whose
// transfer went silent).
func appendStatus(b []byte, op byte, xfer, daemon ID) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Byte(op)
	e.id(xfer)
	e.id(daemon)
	return e.B
}

// parseStatus decodes what appendStatus wrote, after the op byte.
func parseStatus(b []byte) (xfer, daemon ID, err error) {
	d := newDecoder(b)
	xfer, daemon = d.id(), d.id()
	return xfer, daemon, d.End()
}

// appendChunk appends a chunk of a transfer's image.
func appendChunk(b []byte, xfer ID, off uint64, data []byte) []byte {
	return append(appendChunkHeader(b, xfer, off, len(data)), data...)
}

// appendChunkHeader appends a chunk up to its n bytes of data, which the
// caller appends.
func appendChunkHeader(b []byte, xfer ID, off uint64, n int) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Byte(opChunk)
	e.id(xfer)
	e.Uvarint(off)
	e.Uvarint(uint64(n))
	return e.B
}

// parseChunk decodes a chunk after its op byte; data aliases b.
func parseChunk(b []byte) (xfer ID, off uint64, data []byte, err error) {
	d := newDecoder(b)
	xfer, off = d.id(), d.Uvarint()
	data = d.Bytes(maxWireBytes, "chunk")
	return xfer, off, data, d.End()
}

// appendEntries appends a request carrying a transfer or daemon id and
// entries: replay and cutover (with sequence numbers; cutover adds the
// final sequence number after them), forward (without), standby (with).
func appendEntries(b []byte, op byte, id ID, es []entry, final uint64) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Byte(op)
	e.id(id)
	e.entries(es, op != opForward)
	if op == opCutover {
		e.Uvarint(final)
	}
	return e.B
}

// parseEntries decodes what appendEntries wrote, after the op byte.
func parseEntries(op byte, b []byte) (id ID, es []entry, final uint64, err error) {
	d := newDecoder(b)
	id = d.id()
	max := replayBatch
	if op == opForward {
		max = maxBatchEvents
	}
	es = d.entries(max, op != opForward)
	if op == opCutover {
		final = d.Uvarint()
		if d.Err() == nil && len(es) > 0 && es[len(es)-1].Seq != final {
			d.Fail("final sequence %d after entry %d", final, es[len(es)-1].Seq)
		}
	}
	return id, es, final, d.End()
}

// appendReceipts appends the reply to opForward.
func appendReceipts(b []byte, rs []wireReceipt) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.receipts(rs)
	return e.B
}

// parseReceipts decodes the reply to opForward.
func parseReceipts(b []byte) ([]wireReceipt, error) {
	d := newDecoder(b)
	rs := d.receipts(maxBatchEvents)
	return rs, d.End()
}

// appendUvarint appends a reply that is one number (a sequence number,
// a status).
func appendUvarint(b []byte, v uint64) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Uvarint(v)
	return e.B
}

// parseUvarint decodes a reply that is one number.
func parseUvarint(b []byte) (uint64, error) {
	d := newDecoder(b)
	v := d.Uvarint()
	return v, d.End()
}

// appendNodes appends an op, a daemon id and a list of nodes: opSync
// (the standbys), opMigrate (the target alone).
func appendNodes(b []byte, op byte, id ID, nodes []identity.NodeID) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Byte(op)
	e.id(id)
	e.Uvarint(uint64(len(nodes)))
	for _, n := range nodes {
		e.node(n)
	}
	return e.B
}

// parseNodes decodes what appendNodes wrote, after the op byte.
func parseNodes(b []byte) (ID, []identity.NodeID, error) {
	d := newDecoder(b)
	id := d.id()
	n := d.Count(maxStandbys, "nodes")
	nodes := make([]identity.NodeID, 0, n)
	for range n {
		nodes = append(nodes, d.node())
	}
	return id, nodes, d.End()
}

// forkReq asks a daemon's host for a snapshot at a sequence number and
// the fork records linking the children to it (ImageService, opFork).
type forkReq struct {
	Daemon   ID
	Seq      uint64 // 0: at once
	Group    ID     // the fork group's random id
	Children []ed25519.PublicKey
}

func appendFork(b []byte, r *forkReq) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Byte(opFork)
	e.id(r.Daemon)
	e.Uvarint(r.Seq)
	e.id(r.Group)
	e.Uvarint(uint64(len(r.Children)))
	for _, k := range r.Children {
		e.Fixed(k)
	}
	return e.B
}

func parseFork(b []byte) (forkReq, error) {
	d := newDecoder(b)
	r := forkReq{Daemon: d.id(), Seq: d.Uvarint(), Group: d.id()}
	n := d.Count(maxForks, "forks")
	for range n {
		r.Children = append(r.Children, ed25519.PublicKey(d.Fixed(ed25519.PublicKeySize)))
	}
	if d.Err() == nil && n == 0 {
		d.Fail("no forks")
	}
	return r, d.End()
}

// appendRecords appends the fork records chunk of an opFork stream.
func appendRecords(b []byte, rs []*ForkRecord) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.Uvarint(uint64(len(rs)))
	for _, r := range rs {
		e.fork(r)
	}
	return e.B
}

func parseRecords(b []byte) ([]*ForkRecord, error) {
	d := newDecoder(b)
	n := d.Count(maxForks, "records")
	rs := make([]*ForkRecord, 0, n)
	for range n {
		r := d.fork()
		if d.Err() != nil {
			return nil, d.Err()
		}
		rs = append(rs, r)
	}
	return rs, d.End()
}

// fork appends a fork record.
func (e *encoder) fork(r *ForkRecord) {
	e.Fixed(r.ParentKey)
	e.Uvarint(r.Seq)
	e.Fixed(r.StateHash[:])
	e.Fixed(r.ChildKey)
	e.Uvarint(uint64(r.Index))
	e.id(r.Group)
	e.Fixed(r.Sig)
}

// fork reads a fork record; its ids are derived from its keys.
func (d decoder) fork() *ForkRecord {
	r := &ForkRecord{ParentKey: ed25519.PublicKey(d.Fixed(ed25519.PublicKeySize))}
	r.Seq = d.Uvarint()
	copy(r.StateHash[:], d.Fixed(len(r.StateHash)))
	r.ChildKey = ed25519.PublicKey(d.Fixed(ed25519.PublicKeySize))
	r.Index = d.Count(maxForks, "fork index")
	r.Group = d.id()
	r.Sig = d.Fixed(ed25519.SignatureSize)
	if d.Err() != nil {
		return nil
	}
	r.Parent, r.Child = IDFromKey(r.ParentKey), IDFromKey(r.ChildKey)
	return r
}

// appendReport appends the reply to opMigrate.
func appendReport(b []byte, r *MigrationReport) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.id(r.Daemon)
	e.node(r.From)
	e.node(r.To)
	e.Uvarint(uint64(len(r.Phases)))
	for _, p := range r.Phases {
		e.Byte(byte(p.Phase))
		e.Uvarint(uint64(p.Duration))
	}
	e.Uvarint(r.SnapshotSeq)
	e.Uvarint(r.CutoverSeq)
	e.Uvarint(uint64(r.StateBytes))
	e.Uvarint(uint64(r.Replayed))
	e.Uvarint(uint64(r.Handed))
	e.Uvarint(uint64(r.Frozen))
	e.Uvarint(uint64(r.Total))
	return e.B
}

// parseReport decodes the reply to opMigrate.
func parseReport(b []byte) (MigrationReport, error) {
	d := newDecoder(b)
	r := MigrationReport{Daemon: d.id(), From: d.node(), To: d.node()}
	n := d.Count(int(PhaseComplete), "phases")
	for range n {
		p := PhaseTime{Phase: Phase(d.Byte()), Duration: d.duration()}
		if d.Err() == nil && (p.Phase < PhaseSnapshot || p.Phase > PhaseComplete) {
			d.Fail("phase %d", p.Phase)
		}
		r.Phases = append(r.Phases, p)
	}
	r.SnapshotSeq, r.CutoverSeq = d.Uvarint(), d.Uvarint()
	r.StateBytes, r.Replayed, r.Handed = d.int(), d.int(), d.int()
	r.Frozen, r.Total = d.duration(), d.duration()
	return r, d.End()
}

func (d decoder) duration() time.Duration {
	v := d.Uvarint()
	if v > math.MaxInt64 {
		d.Fail("duration %d", v)
		return 0
	}
	return time.Duration(v)
}

func (d decoder) int() int {
	v := d.Uvarint()
	if v > math.MaxInt32 {
		d.Fail("count %d", v)
		return 0
	}
	return int(v)
}

// appendInfo appends the reply to opInfo.
func appendInfo(b []byte, in *Info) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.id(in.ID)
	e.String(in.Kind)
	e.node(in.Node)
	e.node(in.Owner)
	e.String(in.State)
	e.Byte(byte(in.Phase))
	e.node(in.Target)
	e.Uvarint(in.Seq)
	e.Uvarint(in.Applied)
	e.Uvarint(in.Duplicates)
	e.Uvarint(uint64(in.Queued))
	e.Varint(in.Since.UnixNano())
	e.Uvarint(uint64(len(in.Standbys)))
	for _, n := range in.Standbys {
		e.node(n)
	}
	e.Bool(in.Fork != nil)
	if in.Fork != nil {
		e.fork(in.Fork)
	}
	return e.B
}

// parseInfo decodes the reply to opInfo.
func parseInfo(b []byte) (Info, error) {
	d := newDecoder(b)
	in := Info{ID: d.id(), Kind: d.String(MaxKindName, "kind"), Node: d.node(), Owner: d.node()}
	in.State = d.String(maxLabel, "state")
	in.Phase = Phase(d.Byte())
	in.Target = d.node()
	in.Seq, in.Applied, in.Duplicates = d.Uvarint(), d.Uvarint(), d.Uvarint()
	in.Queued = d.int()
	in.Since = time.Unix(0, d.Varint())
	n := d.Count(maxStandbys, "standbys")
	for range n {
		in.Standbys = append(in.Standbys, d.node())
	}
	if d.Bool() {
		in.Fork = d.fork()
	}
	if d.Err() == nil && in.Phase > PhaseComplete {
		d.Fail("phase %d", in.Phase)
	}
	return in, d.End()
}

// snapshotHeader is the first chunk of an ImageService stream: the
// snapshot without its state, and the state's length; the state follows
// in chunks.
func appendSnapshotHeader(b []byte, s *Snapshot) []byte {
	return appendHeader(b, s, uint64(len(s.State)))
}

// appendHeader appends a snapshot header announcing size bytes of state.
func appendHeader(b []byte, s *Snapshot, size uint64) []byte {
	e := encoder{codec.Encoder{B: b}}
	e.id(s.Daemon)
	e.String(s.Kind)
	e.Uvarint(s.Seq)
	e.node(s.Owner)
	e.Bytes(s.Key)
	e.node(s.SealedFor)
	e.Bool(s.Fork != nil)
	if s.Fork != nil {
		e.fork(s.Fork)
	}
	e.Uvarint(size)
	return e.B
}

// parseSnapshotHeader decodes the header; size is the state's length,
// which the caller checks against its bound.
func parseSnapshotHeader(b []byte) (s Snapshot, size uint64, err error) {
	d := newDecoder(b)
	s.Daemon, s.Kind, s.Seq = d.id(), d.String(MaxKindName, "kind"), d.Uvarint()
	s.Owner = d.node()
	s.Key = d.Bytes(maxSealedKey, "sealed key")
	s.SealedFor = d.node()
	if d.Bool() {
		s.Fork = d.fork()
	}
	size = d.Uvarint()
	return s, size, d.End()
}

// The image of a transfer: the daemon's sender table (see senderTable),
// then its state.

// appendImage appends a transfer's image.
func appendImage(b []byte, t *senderTable, state []byte) []byte {
	e := encoder{codec.Encoder{B: b}}
	t.encode(&e)
	e.Fixed(state)
	return e.B
}

// parseImage splits an image into its sender table and its state, which
// aliases b.
func parseImage(b []byte) (*senderTable, []byte, error) {
	d := newDecoder(b)
	t := decodeSenderTable(d)
	state := d.Rest()
	if err := d.Err(); err != nil {
		return nil, nil, err
	}
	return t, state, nil
}
