package task

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math"
	"time"

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
	flagUnstarted  byte = 0x01 // final: given back without having started
)

// submitItem is one task of a submit batch.
type submitItem struct {
	ID         ID
	Idempotent bool
	Priority   int32
	Timeout    time.Duration // the submitter's remaining time, whole ms; 0: none
	Skill      string
	Params     []byte
	Chain      Chain
}

// verdict is the worker's answer to one submit item: accepted, with the
// task's state there (queued, or further along for a duplicate), or
// refused with a code and message.
type verdict struct {
	ID      ID
	State   State // 0 when refused
	Code    Code
	Message string
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

// encoder appends fields to b.
type encoder struct{ b []byte }

func (e *encoder) byte(v byte)            { e.b = append(e.b, v) }
func (e *encoder) uvarint(v uint64)       { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)         { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(v []byte)         { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) str(v string)           { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) id(v ID)                { e.b = append(e.b, v[:]...) }
func (e *encoder) node(v identity.NodeID) { e.b = append(e.b, v[:]...) }

// decoder reads fields from b. The first failure sticks in err and every
// later read returns zero values; nothing panics on any input.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("short")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of at most max.
func (d *decoder) count(max int, what string) int {
	n := d.uvarint()
	if n > uint64(max) {
		d.fail("%d %s, at most %d", n, what, max)
		return 0
	}
	return int(n)
}

// bytes reads a byte string of at most max bytes; the result aliases the
// input.
func (d *decoder) bytes(max int, what string) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) || n > uint64(len(d.b)) {
		d.fail("%s of %d bytes", what, n)
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str(max int, what string) string { return string(d.bytes(max, what)) }

func (d *decoder) fixed(n int) []byte {
	if len(d.b) < n {
		d.fail("short")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) id() (v ID) {
	copy(v[:], d.fixed(IDSize))
	return v
}

func (d *decoder) node() (v identity.NodeID) {
	copy(v[:], d.fixed(identity.NodeIDSize))
	return v
}

// end fails unless the whole input was read.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

// appendSubmit appends a submit request: the tasks, then the
// acknowledgements it carries (see appendAck).
func appendSubmit(b []byte, items []*submitItem, acked, unknown []ID) []byte {
	e := encoder{b}
	e.byte(opSubmit)
	e.uvarint(uint64(len(items)))
	for _, it := range items {
		e.id(it.ID)
		var flags byte
		if it.Idempotent {
			flags |= flagIdempotent
		}
		e.byte(flags)
		e.varint(int64(it.Priority))
		e.uvarint(uint64(it.Timeout / time.Millisecond))
		e.str(it.Skill)
		e.bytes(it.Params)
		e.uvarint(uint64(len(it.Chain)))
		for _, l := range it.Chain {
			e.b = append(e.b, l.Key...)
			e.node(l.To)
			e.b = append(e.b, l.Sig...)
		}
	}
	e.ids(acked)
	e.ids(unknown)
	return e.b
}

// parseSubmit decodes a submit request after its op byte. Params alias b.
func parseSubmit(b []byte) (items []submitItem, acked, unknown []ID, err error) {
	d := decoder{b: b}
	n := d.count(maxBatchItems, "items")
	items = make([]submitItem, 0, n)
	for range n {
		var it submitItem
		it.ID = d.id()
		flags := d.byte()
		if flags&^flagIdempotent != 0 {
			d.fail("unknown flags %#x", flags)
		}
		it.Idempotent = flags&flagIdempotent != 0
		p := d.varint()
		if p < math.MinInt32 || p > math.MaxInt32 {
			d.fail("priority %d", p)
		}
		it.Priority = int32(p)
		ms := d.uvarint()
		if ms > uint64(maxTimeout/time.Millisecond) {
			d.fail("timeout %d ms", ms)
		}
		it.Timeout = time.Duration(ms) * time.Millisecond
		it.Skill = d.str(MaxSkillName, "skill")
		it.Params = d.bytes(maxWireBytes, "params")
		links := d.count(MaxChainLinks, "chain links")
		for range links {
			l := Link{Key: ed25519.PublicKey(d.fixed(ed25519.PublicKeySize)), To: d.node(), Sig: d.fixed(ed25519.SignatureSize)}
			it.Chain = append(it.Chain, l)
		}
		if d.err != nil {
			return nil, nil, nil, d.err
		}
		items = append(items, it)
	}
	acked, unknown = d.ids(), d.ids()
	return items, acked, unknown, d.end()
}

// appendAck appends an acknowledgement: the tasks whose results the
// submitter stored (the worker forgets them), and the tasks it was sent
// items of but does not hold (the worker drops them).
func appendAck(b []byte, acked, unknown []ID) []byte {
	e := encoder{b}
	e.byte(opAck)
	e.ids(acked)
	e.ids(unknown)
	return e.b
}

// parseAck decodes an acknowledgement after its op byte.
func parseAck(b []byte) (acked, unknown []ID, err error) {
	d := decoder{b: b}
	acked, unknown = d.ids(), d.ids()
	return acked, unknown, d.end()
}

// ids appends a list of ids.
func (e *encoder) ids(ids []ID) {
	e.uvarint(uint64(len(ids)))
	for _, id := range ids {
		e.id(id)
	}
}

// ids reads a list of at most maxSyncIDs ids.
func (d *decoder) ids() []ID {
	n := d.count(maxSyncIDs, "ids")
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
	e.uvarint(uint64(l.Running))
	e.uvarint(uint64(l.Queued))
	e.uvarint(uint64(l.Limit))
}

func (d *decoder) load() placement.Load {
	get := func() int {
		v := d.uvarint()
		if v > math.MaxInt32 {
			d.fail("load %d", v)
			return 0
		}
		return int(v)
	}
	return placement.Load{Running: get(), Queued: get(), Limit: get()}
}

// appendSubmitReply appends the reply to a submit request.
func appendSubmitReply(b []byte, r *submitReply) []byte {
	e := encoder{b}
	e.load(r.Load)
	e.uvarint(uint64(len(r.Verdicts)))
	for _, v := range r.Verdicts {
		e.id(v.ID)
		e.byte(byte(v.State))
		e.str(string(v.Code))
		e.str(v.Message)
	}
	return e.b
}

// parseSubmitReply decodes the reply to a submit request.
func parseSubmitReply(b []byte) (submitReply, error) {
	d := decoder{b: b}
	r := submitReply{Load: d.load()}
	n := d.count(maxBatchItems, "verdicts")
	r.Verdicts = make([]verdict, 0, n)
	for range n {
		v := verdict{ID: d.id(), State: State(d.byte())}
		v.Code = Code(d.str(maxCodeLen, "code"))
		v.Message = d.str(maxMessage, "message")
		switch {
		case d.err != nil:
			return submitReply{}, d.err
		case v.State == 0 && !validCode(string(v.Code)):
			d.fail("refusal without a valid code")
		case v.State != 0 && (!v.State.valid() || v.Code != ""):
			d.fail("acceptance with state %d and code %q", v.State, v.Code)
		}
		r.Verdicts = append(r.Verdicts, v)
	}
	return r, d.end()
}

// appendIDs appends an op and a list of ids (cancel, sync).
func appendIDs(b []byte, op byte, ids []ID) []byte {
	e := encoder{b}
	e.byte(op)
	e.ids(ids)
	return e.b
}

// parseIDs decodes a list of ids after the op byte.
func parseIDs(b []byte) ([]ID, error) {
	d := decoder{b: b}
	ids := d.ids()
	return ids, d.end()
}

// appendStates appends the reply to a cancel or sync request: one state
// per id asked, 0 for a task the worker does not hold.
func appendStates(b []byte, states []State) []byte {
	e := encoder{b}
	e.uvarint(uint64(len(states)))
	for _, s := range states {
		e.byte(byte(s))
	}
	return e.b
}

// parseStates decodes the reply to a cancel or sync request.
func parseStates(b []byte) ([]State, error) {
	d := decoder{b: b}
	n := d.count(maxSyncIDs, "states")
	states := make([]State, 0, n)
	for range n {
		s := State(d.byte())
		if s != 0 && !s.valid() {
			d.fail("state %d", s)
		}
		states = append(states, s)
	}
	return states, d.end()
}

// appendCommand appends a command request.
func appendCommand(b []byte, name string, args []byte) []byte {
	e := encoder{b}
	e.byte(opCommand)
	e.str(name)
	e.bytes(args)
	return e.b
}

// parseCommand decodes a command request after its op byte.
func parseCommand(b []byte) (name string, args []byte, err error) {
	d := decoder{b: b}
	name = d.str(maxLabel, "command name")
	args = d.bytes(maxWireBytes, "arguments")
	return name, args, d.end()
}

// appendDeliver appends a chunk of the results stream.
func appendDeliver(b []byte, items []*deliverItem) []byte {
	e := encoder{b}
	e.byte(opDeliver)
	e.uvarint(uint64(len(items)))
	for _, it := range items {
		e.byte(it.Kind)
		e.id(it.ID)
		switch it.Kind {
		case itemEvent:
			e.uvarint(it.Seq)
			e.str(it.Name)
			e.bytes(it.Data)
		case itemFinal:
			e.byte(byte(it.State))
			var flags byte
			if it.Unstarted {
				flags |= flagUnstarted
			}
			e.byte(flags)
			e.str(it.Status)
			e.str(string(it.Code))
			e.str(it.Message)
			e.bytes(it.Output)
			e.uvarint(it.Events)
		}
	}
	return e.b
}

// parseDeliver decodes a chunk of the results stream after its op byte.
// Data and Output alias b.
func parseDeliver(b []byte) ([]deliverItem, error) {
	d := decoder{b: b}
	n := d.count(maxBatchItems, "items")
	items := make([]deliverItem, 0, n)
	for range n {
		it := deliverItem{Kind: d.byte(), ID: d.id()}
		switch it.Kind {
		case itemStarted:
		case itemEvent:
			it.Seq = d.uvarint()
			it.Name = d.str(maxLabel, "event name")
			it.Data = d.bytes(maxWireBytes, "event data")
		case itemFinal:
			it.State = State(d.byte())
			flags := d.byte()
			if flags&^flagUnstarted != 0 {
				d.fail("unknown flags %#x", flags)
			}
			it.Unstarted = flags&flagUnstarted != 0
			it.Status = d.str(maxLabel, "status")
			it.Code = Code(d.str(maxCodeLen, "code"))
			it.Message = d.str(maxMessage, "message")
			it.Output = d.bytes(maxWireBytes, "output")
			it.Events = d.uvarint()
			if d.err == nil && (!it.State.Final() || it.State == StateLost) {
				d.fail("final state %d", it.State)
			}
			if d.err == nil && (it.State == StateSucceeded) != (it.Code == "") {
				d.fail("state %s with code %q", it.State, it.Code)
			}
			if d.err == nil && it.Code != "" && !validCode(string(it.Code)) {
				d.fail("code %q", it.Code)
			}
		default:
			d.fail("item kind %d", it.Kind)
		}
		if d.err != nil {
			return nil, d.err
		}
		items = append(items, it)
	}
	return items, d.end()
}

// appendCatalog appends the reply to a catalog request.
func appendCatalog(b []byte, hash string, catalog []byte) []byte {
	e := encoder{b}
	e.str(hash)
	e.bytes(catalog)
	return e.b
}

// parseCatalog decodes the reply to a catalog request.
func parseCatalog(b []byte) (hash string, catalog []byte, err error) {
	d := decoder{b: b}
	hash = d.str(maxLabel, "hash")
	catalog = d.bytes(maxWireBytes, "catalog")
	return hash, catalog, d.end()
}
