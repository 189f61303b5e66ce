package task

import (
	"crypto/ed25519"
	"math"
	"time"

	"github.com/netmesh/netmesh/daemon/internal/codec"
	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/identity"
)

// The messages of the worker's two rpc services, task.worker (unary) and
// task.results (a stream of chunks to the submitter).
// Every request body starts with an op byte; the fields follow in order,
// integers as (zig-zag for signed) varints, strings and byte strings as a
// varint length and the bytes, ids and NodeIDs as their 16 bytes.
// docs/TASKS.md describes each message.

// Ops of the request bodies.
const (
	opSubmit  byte = 0x01 // task.worker: a batch of tasks to queue
	opCancel  byte = 0x02 // task.worker: cancel one task
	opSync    byte = 0x03 // task.worker: states of tasks; redeliver results
	opCatalog byte = 0x04 // task.worker: the skill catalog
	opCommand byte = 0x05 // task.worker: a custom command
	opAck     byte = 0x06 // task.worker: results stored, tasks unknown
	opDeliver byte = 0x10 // task.results: a chunk of events and results
)

// Kinds of a delivery item.
const (
	itemStarted byte = 1 // the task started running
	itemEvent   byte = 2 // a progress event
	itemFinal   byte = 3 // the task's final state and result
)

// Flags of a submit item and of a final delivery item.
const (
	flagIdempotent byte = 0x01 // submit: the task may run again elsewhere
	flagWait       byte = 0x02 // submit: the submitter waits for the result
	flagUnstarted  byte = 0x01 // final: given back without having started
)

// submitItem is one task of a submit batch.
type submitItem struct {
	ID         ID
	Idempotent bool
	Priority   int32
	Wait       bool          // the submitter waits: a result ready soon goes in the verdict
	Timeout    time.Duration // the submitter's remaining time, whole ms; 0: none
	Skill      string
	Params     []byte
	Chain      Chain
}

// verdict is the worker's answer to one submit item: accepted, with the
// task's state there (queued, or further along for a duplicate), or
// refused with a code and message. A task submitted with Wait that
// finished during the submit is answered with its final item.
type verdict struct {
	ID      ID
	State   State // 0 when refused
	Code    Code
	Message string
	Final   *deliverItem // the result, when State is final
}

// submitReply answers a submit batch: the worker's load after it, and one
// verdict per item in order.
type submitReply struct {
	Load     placement.Load
	Verdicts []verdict
}

// deliverItem is one item of a delivery batch.
type deliverItem struct {
	Kind byte
	ID   ID
	// itemEvent.
	Seq  uint64
	Name string
	Data []byte
	// itemFinal.
	State   State
	Status  string
	Code    Code
	Message string
	Output  []byte
	Events  uint64 // events the task emitted in all
	// Unstarted: the worker gives the task back without having started
	// it (it is shutting down); the submitter may place it elsewhere.
	Unstarted bool
}

// encoder is the shared field encoder plus the task layer's own fields.
type encoder struct{ codec.Encoder }

func newEncoder(b []byte) *encoder { return &encoder{codec.Encoder{B: b}} }

func (e *encoder) id(v ID)                { e.Fixed(v[:]) }
func (e *encoder) node(v identity.NodeID) { e.Fixed(v[:]) }

// decoder is the shared field decoder, whose failures wrap ErrMalformed,
// plus the task layer's own fields. Nothing panics on any input.
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

// appendSubmit appends a submit request: the tasks, then the
// acknowledgements it carries (see appendAck).
func appendSubmit(b []byte, items []*submitItem, acked, unknown []ID) []byte {
	e := newEncoder(b)
	e.Byte(opSubmit)
	e.Uvarint(uint64(len(items)))
	for _, it := range items {
		e.id(it.ID)
		var flags byte
		if it.Idempotent {
			flags |= flagIdempotent
		}
		if it.Wait {
			flags |= flagWait
		}
		e.Byte(flags)
		e.Varint(int64(it.Priority))
		e.Uvarint(uint64(it.Timeout / time.Millisecond))
		e.String(it.Skill)
		e.Bytes(it.Params)
		e.Uvarint(uint64(len(it.Chain)))
		for _, l := range it.Chain {
			e.Fixed(l.Key)
			e.node(l.To)
			e.Fixed(l.Sig)
		}
	}
	e.ids(acked)
	e.ids(unknown)
	return e.B
}

// parseSubmit decodes a submit request after its op byte. Params alias b.
func parseSubmit(b []byte) (items []submitItem, acked, unknown []ID, err error) {
	d := newDecoder(b)
	n := d.Count(maxBatchItems, "items")
	items = make([]submitItem, 0, n)
	for range n {
		var it submitItem
		it.ID = d.id()
		flags := d.Byte()
		if flags&^(flagIdempotent|flagWait) != 0 {
			d.Fail("unknown flags %#x", flags)
		}
		it.Idempotent = flags&flagIdempotent != 0
		it.Wait = flags&flagWait != 0
		p := d.Varint()
		if p < math.MinInt32 || p > math.MaxInt32 {
			d.Fail("priority %d", p)
		}
		it.Priority = int32(p)
		ms := d.Uvarint()
		if ms > uint64(maxTimeout/time.Millisecond) {
			d.Fail("timeout %d ms", ms)
		}
		it.Timeout = time.Duration(ms) * time.Millisecond
		it.Skill = d.String(MaxSkillName, "skill")
		it.Params = d.Bytes(maxWireBytes, "params")
		links := d.Count(MaxChainLinks, "chain links")
		for range links {
			l := Link{Key: ed25519.PublicKey(d.Fixed(ed25519.PublicKeySize)), To: d.node(), Sig: d.Fixed(ed25519.SignatureSize)}
			it.Chain = append(it.Chain, l)
		}
		if d.Err() != nil {
			return nil, nil, nil, d.Err()
		}
		items = append(items, it)
	}
	acked, unknown = d.ids(), d.ids()
	return items, acked, unknown, d.End()
}

// appendAck appends an acknowledgement: the tasks whose results the
// submitter stored (the worker forgets them), and the tasks it was sent
// items of but does not hold (the worker drops them).
func appendAck(b []byte, acked, unknown []ID) []byte {
	e := newEncoder(b)
	e.Byte(opAck)
	e.ids(acked)
	e.ids(unknown)
	return e.B
}

// parseAck decodes an acknowledgement after its op byte.
func parseAck(b []byte) (acked, unknown []ID, err error) {
	d := newDecoder(b)
	acked, unknown = d.ids(), d.ids()
	return acked, unknown, d.End()
}

// ids appends a list of ids.
func (e *encoder) ids(ids []ID) {
	e.Uvarint(uint64(len(ids)))
	for _, id := range ids {
		e.id(id)
	}
}

// ids reads a list of at most maxSyncIDs ids.
func (d decoder) ids() []ID {
	n := d.Count(maxSyncIDs, "ids")
	if n == 0 {
		return nil
	}
	ids := make([]ID, 0, n)
	for range n {
		ids = append(ids, d.id())
	}
	return ids
}

// appendLoad and parseLoad carry a worker's load.
func (e *encoder) load(l placement.Load) {
	e.Uvarint(uint64(l.Running))
	e.Uvarint(uint64(l.Queued))
	e.Uvarint(uint64(l.Limit))
}

func (d decoder) load() placement.Load {
	get := func() int {
		v := d.Uvarint()
		if v > math.MaxInt32 {
			d.Fail("load %d", v)
			return 0
		}
		return int(v)
	}
	return placement.Load{Running: get(), Queued: get(), Limit: get()}
}

// appendSubmitReply appends the reply to a submit request.
func appendSubmitReply(b []byte, r *submitReply) []byte {
	e := newEncoder(b)
	e.load(r.Load)
	e.Uvarint(uint64(len(r.Verdicts)))
	for _, v := range r.Verdicts {
		e.id(v.ID)
		if v.Final != nil {
			e.Byte(byte(v.Final.State))
			e.final(v.Final)
			continue
		}
		e.Byte(byte(v.State))
		e.String(string(v.Code))
		e.String(v.Message)
	}
	return e.B
}

// parseSubmitReply decodes the reply to a submit request.
func parseSubmitReply(b []byte) (submitReply, error) {
	d := newDecoder(b)
	r := submitReply{Load: d.load()}
	n := d.Count(maxBatchItems, "verdicts")
	r.Verdicts = make([]verdict, 0, n)
	for range n {
		v := verdict{ID: d.id(), State: State(d.Byte())}
		if v.State.Final() {
			f := deliverItem{Kind: itemFinal, ID: v.ID, State: v.State}
			d.final(&f)
			if f.Unstarted {
				d.Fail("an unstarted result in a verdict")
			}
			if d.Err() != nil {
				return submitReply{}, d.Err()
			}
			v.Final = &f
			r.Verdicts = append(r.Verdicts, v)
			continue
		}
		v.Code = Code(d.String(maxCodeLen, "code"))
		v.Message = d.String(maxMessage, "message")
		switch {
		case d.Err() != nil:
			return submitReply{}, d.Err()
		case v.State == 0 && !validCode(string(v.Code)):
			d.Fail("refusal without a valid code")
		case v.State != 0 && (!v.State.valid() || v.Code != ""):
			d.Fail("acceptance with state %d and code %q", v.State, v.Code)
		}
		r.Verdicts = append(r.Verdicts, v)
	}
	return r, d.End()
}

// appendIDs appends an op and a list of ids (cancel, sync).
func appendIDs(b []byte, op byte, ids []ID) []byte {
	e := newEncoder(b)
	e.Byte(op)
	e.ids(ids)
	return e.B
}

// parseIDs decodes a list of ids after the op byte.
func parseIDs(b []byte) ([]ID, error) {
	d := newDecoder(b)
	ids := d.ids()
	return ids, d.End()
}

// appendStates appends the reply to a cancel or sync request: one state
// per id asked, 0 for a task the worker does not hold.
func appendStates(b []byte, states []State) []byte {
	e := newEncoder(b)
	e.Uvarint(uint64(len(states)))
	for _, s := range states {
		e.Byte(byte(s))
	}
	return e.B
}

// parseStates decodes the reply to a cancel or sync request.
func parseStates(b []byte) ([]State, error) {
	d := newDecoder(b)
	n := d.Count(maxSyncIDs, "states")
	states := make([]State, 0, n)
	for range n {
		s := State(d.Byte())
		if s != 0 && !s.valid() {
			d.Fail("state %d", s)
		}
		states = append(states, s)
	}
	return states, d.End()
}

// appendCommand appends a command request.
func appendCommand(b []byte, name string, args []byte) []byte {
	e := newEncoder(b)
	e.Byte(opCommand)
	e.String(name)
	e.Bytes(args)
	return e.B
}

// parseCommand decodes a command request after its op byte.
func parseCommand(b []byte) (name string, args []byte, err error) {
	d := newDecoder(b)
	name = d.String(maxLabel, "command name")
	args = d.Bytes(maxWireBytes, "arguments")
	return name, args, d.End()
}

// appendDeliver appends a chunk of the results stream.
func appendDeliver(b []byte, items []*deliverItem) []byte {
	e := newEncoder(b)
	e.Byte(opDeliver)
	e.Uvarint(uint64(len(items)))
	for _, it := range items {
		e.Byte(it.Kind)
		e.id(it.ID)
		switch it.Kind {
		case itemEvent:
			e.Uvarint(it.Seq)
			e.String(it.Name)
			e.Bytes(it.Data)
		case itemFinal:
			e.Byte(byte(it.State))
			e.final(it)
		}
	}
	return e.B
}

// final appends the fields of a final item after its state.
func (e *encoder) final(it *deliverItem) {
	var flags byte
	if it.Unstarted {
		flags |= flagUnstarted
	}
	e.Byte(flags)
	e.String(it.Status)
	e.String(string(it.Code))
	e.String(it.Message)
	e.Bytes(it.Output)
	e.Uvarint(it.Events)
}

// final reads the fields of a final item after its state, which it
// checks. Output aliases the input.
func (d decoder) final(it *deliverItem) {
	flags := d.Byte()
	if flags&^flagUnstarted != 0 {
		d.Fail("unknown flags %#x", flags)
	}
	it.Unstarted = flags&flagUnstarted != 0
	it.Status = d.String(maxLabel, "status")
	it.Code = Code(d.String(maxCodeLen, "code"))
	it.Message = d.String(maxMessage, "message")
	it.Output = d.Bytes(maxWireBytes, "output")
	it.Events = d.Uvarint()
	switch {
	case d.Err() != nil:
	case !it.State.Final() || it.State == StateLost:
		d.Fail("final state %d", it.State)
	case (it.State == StateSucceeded) != (it.Code == ""):
		d.Fail("state %s with code %q", it.State, it.Code)
	case it.Code != "" && !validCode(string(it.Code)):
		d.Fail("code %q", it.Code)
	}
}

// parseDeliver decodes a chunk of the results stream after its op byte.
// Data and Output alias b.
func parseDeliver(b []byte) ([]deliverItem, error) {
	d := newDecoder(b)
	n := d.Count(maxBatchItems, "items")
	items := make([]deliverItem, 0, n)
	for range n {
		it := deliverItem{Kind: d.Byte(), ID: d.id()}
		switch it.Kind {
		case itemStarted:
		case itemEvent:
			it.Seq = d.Uvarint()
			it.Name = d.String(maxLabel, "event name")
			it.Data = d.Bytes(maxWireBytes, "event data")
		case itemFinal:
			it.State = State(d.Byte())
			d.final(&it)
		default:
			d.Fail("item kind %d", it.Kind)
		}
		if d.Err() != nil {
			return nil, d.Err()
		}
		items = append(items, it)
	}
	return items, d.End()
}

// appendCatalog appends the reply to a catalog request.
func appendCatalog(b []byte, hash string, catalog []byte) []byte {
	e := newEncoder(b)
	e.String(hash)
	e.Bytes(catalog)
	return e.B
}

// parseCatalog decodes the reply to a catalog request.
func parseCatalog(b []byte) (hash string, catalog []byte, err error) {
	d := newDecoder(b)
	hash = d.String(maxLabel, "hash")
	catalog = d.Bytes(maxWireBytes, "catalog")
	return hash, catalog, d.End()
}
