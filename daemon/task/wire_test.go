package task

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/identity"
)

func testID(b byte) ID {
	var id ID
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

func testChain(t testing.TB) Chain {
	a, _ := identity.Generate()
	b, _ := identity.Generate()
	c := Chain{SignOrigin(a, testID(1), "resize", []byte(`{}`), b.NodeID())}
	return c.Forward(b, testID(1), identity.NodeID{9})
}

func TestWireRoundTrip(t *testing.T) {
	items := []*submitItem{
		{ID: testID(1), Idempotent: true, Priority: -7, Timeout: 1500 * time.Millisecond, Skill: "resize", Params: []byte(`{"w":1}`), Chain: testChain(t)},
		{ID: testID(2), Priority: 1 << 30, Wait: true, Skill: "x", Params: []byte(`null`)},
	}
	b := appendSubmit(nil, items, []ID{testID(7)}, []ID{testID(8), testID(9)})
	if b[0] != opSubmit {
		t.Fatal("op")
	}
	got, acked, unknown, err := parseSubmit(b[1:])
	if err != nil {
		t.Fatal(err)
	}
	if len(acked) != 1 || acked[0] != testID(7) || len(unknown) != 2 || unknown[1] != testID(9) {
		t.Fatalf("acks %v %v", acked, unknown)
	}
	if a, u, err := parseAck(appendAck(nil, nil, []ID{testID(3)})[1:]); err != nil || len(a) != 0 || len(u) != 1 {
		t.Fatalf("ack: %v %v %v", a, u, err)
	}
	for i := range items {
		if !reflect.DeepEqual(&got[i], items[i]) {
			t.Fatalf("item %d: %+v, want %+v", i, got[i], *items[i])
		}
	}

	r := submitReply{Load: placement.Load{Running: 1, Queued: 2, Limit: 3}, Verdicts: []verdict{
		{ID: testID(1), State: StateQueued}, {ID: testID(2), Code: CodeResourceExhausted, Message: "full"},
		{ID: testID(3), State: StateSucceeded, Final: &deliverItem{Kind: itemFinal, ID: testID(3), State: StateSucceeded, Status: "success", Output: []byte(`[1]`)}},
		{ID: testID(4), State: StateFailed, Final: &deliverItem{Kind: itemFinal, ID: testID(4), State: StateFailed, Code: CodeTimeout, Message: "late", Events: 2}},
	}}
	gr, err := parseSubmitReply(appendSubmitReply(nil, &r))
	if err != nil || !reflect.DeepEqual(gr, r) {
		t.Fatalf("reply %+v %v", gr, err)
	}

	deliver := []*deliverItem{
		{Kind: itemStarted, ID: testID(1)},
		{Kind: itemEvent, ID: testID(1), Seq: 3, Name: "step", Data: []byte(`5`)},
		{Kind: itemFinal, ID: testID(1), State: StateSucceeded, Status: "success", Output: []byte(`{}`), Events: 3},
		{Kind: itemFinal, ID: testID(2), State: StateFailed, Code: CodeResourceExhausted, Message: "bye", Unstarted: true},
	}
	gd, err := parseDeliver(appendDeliver(nil, deliver)[1:])
	if err != nil {
		t.Fatal(err)
	}
	for i := range deliver {
		if !reflect.DeepEqual(&gd[i], deliver[i]) {
			t.Fatalf("delivery item %d: %+v, want %+v", i, gd[i], *deliver[i])
		}
	}
}

// Malformed and hostile messages are refused with ErrMalformed.
func TestWireRejects(t *testing.T) {
	valid := appendSubmit(nil, []*submitItem{{ID: testID(1), Skill: "x", Params: []byte(`1`)}}, nil, nil)[1:]
	for name, b := range map[string][]byte{
		"empty":          {},
		"truncated":      valid[:len(valid)-1],
		"trailing":       append(bytes.Clone(valid), 0),
		"too many items": appendIDs(nil, 0, make([]ID, maxBatchItems+1))[1:],
		"unknown flag": func() []byte {
			b := bytes.Clone(valid)
			b[1+IDSize] = 0x80
			return b
		}(),
		"huge length": append(bytes.Clone(valid[:1+IDSize+3]), 0xff, 0xff, 0xff, 0xff, 0x0f),
	} {
		if _, _, _, err := parseSubmit(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, it := range map[string]*deliverItem{
		"queued final":    {Kind: itemFinal, ID: testID(1), State: StateQueued},
		"lost final":      {Kind: itemFinal, ID: testID(1), State: StateLost, Code: CodeLost},
		"success w/ code": {Kind: itemFinal, ID: testID(1), State: StateSucceeded, Code: CodeTimeout},
		"failure no code": {Kind: itemFinal, ID: testID(1), State: StateFailed},
		"bad code":        {Kind: itemFinal, ID: testID(1), State: StateFailed, Code: "lower"},
		"unknown kind":    {Kind: 9, ID: testID(1)},
	} {
		if _, err := parseDeliver(appendDeliver(nil, []*deliverItem{it})[1:]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, v := range map[string]verdict{
		"accepted with a code": {ID: testID(1), State: StateQueued, Code: CodeTimeout},
		"unstarted result":     {ID: testID(1), Final: &deliverItem{State: StateFailed, Code: CodeResourceExhausted, Unstarted: true}},
		"lost result":          {ID: testID(1), Final: &deliverItem{State: StateLost, Code: CodeLost}},
		"failure no code":      {ID: testID(1), Final: &deliverItem{State: StateFailed}},
	} {
		if _, err := parseSubmitReply(appendSubmitReply(nil, &submitReply{Verdicts: []verdict{v}})); !errors.Is(err, ErrMalformed) {
			t.Errorf("verdict %s: %v", name, err)
		}
	}
}

// reencode parses b as the message kind k and encodes the result again;
// ok is false when b does not parse.
func reencode(k byte, b []byte) (out []byte, ok bool) {
	switch k % 8 {
	case 0:
		items, acked, unknown, err := parseSubmit(b)
		if err != nil {
			return nil, false
		}
		ptrs := make([]*submitItem, len(items))
		for i := range items {
			ptrs[i] = &items[i]
		}
		return appendSubmit(nil, ptrs, acked, unknown)[1:], true
	case 1:
		items, err := parseDeliver(b)
		if err != nil {
			return nil, false
		}
		ptrs := make([]*deliverItem, len(items))
		for i := range items {
			ptrs[i] = &items[i]
		}
		return appendDeliver(nil, ptrs)[1:], true
	case 2:
		r, err := parseSubmitReply(b)
		if err != nil {
			return nil, false
		}
		return appendSubmitReply(nil, &r), true
	case 3:
		ids, err := parseIDs(b)
		if err != nil {
			return nil, false
		}
		return appendIDs(nil, 0, ids)[1:], true
	case 4:
		st, err := parseStates(b)
		if err != nil {
			return nil, false
		}
		return appendStates(nil, st), true
	case 5:
		name, args, err := parseCommand(b)
		if err != nil {
			return nil, false
		}
		return appendCommand(nil, name, args)[1:], true
	case 7:
		acked, unknown, err := parseAck(b)
		if err != nil {
			return nil, false
		}
		return appendAck(nil, acked, unknown)[1:], true
	default:
		h, c, err := parseCatalog(b)
		if err != nil {
			return nil, false
		}
		return appendCatalog(nil, h, c), true
	}
}

// FuzzWire: every task message comes from a peer with an authenticated
// session, but any node of the mesh can call a worker's or a submitter's
// service with arbitrary bytes. The decoders must never panic, must bound
// every count and length before allocating, and what they accept must
// re-encode to bytes that parse to the same encoding again (a stable
// round trip: nothing is lost or invented between decode and encode).
func FuzzWire(f *testing.F) {
	items := []*submitItem{{ID: testID(1), Idempotent: true, Priority: 3, Timeout: time.Second, Skill: "s", Params: []byte(`{}`), Chain: testChain(f)}}
	f.Add(byte(0), appendSubmit(nil, items, []ID{testID(5)}, nil)[1:])
	f.Add(byte(1), appendDeliver(nil, []*deliverItem{
		{Kind: itemEvent, ID: testID(2), Seq: 1, Name: "e", Data: []byte(`1`)},
		{Kind: itemFinal, ID: testID(2), State: StateFailed, Code: CodeTimeout, Message: "m", Unstarted: true},
	})[1:])
	f.Add(byte(2), appendSubmitReply(nil, &submitReply{Verdicts: []verdict{{ID: testID(3), Code: CodeUnknownSkill, Message: "no"},
		{ID: testID(4), State: StateSucceeded, Final: &deliverItem{Kind: itemFinal, ID: testID(4), State: StateSucceeded, Status: "ok", Output: []byte(`1`)}}}}))
	f.Add(byte(3), appendIDs(nil, 0, []ID{testID(4)})[1:])
	f.Add(byte(4), appendStates(nil, []State{0, StateRunning}))
	f.Add(byte(5), appendCommand(nil, "reload", []byte("x"))[1:])
	f.Add(byte(6), appendCatalog(nil, "abcd", []byte(`[]`)))
	f.Add(byte(7), appendAck(nil, []ID{testID(6)}, []ID{testID(7)})[1:])
	f.Fuzz(func(t *testing.T, k byte, b []byte) {
		once, ok := reencode(k, b)
		if !ok {
			return
		}
		twice, ok := reencode(k, once)
		if !ok {
			t.Fatalf("kind %d: re-encoding %x does not parse", k%8, once)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("kind %d: unstable round trip:\n%x\n%x", k%8, once, twice)
		}
	})
}
