package daemon

import (
	"bytes"
	"crypto/ed25519"
	"reflect"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

func testID(b byte) (id ID) {
	id[0], id[15] = b, b
	return id
}

func testNode(b byte) (n identity.NodeID) {
	n[0], n[15] = b, b
	return n
}

func testRecord(t testing.TB) *ForkRecord {
	parent, err := identity.FromSeed(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	child, err := identity.FromSeed(bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	r := &ForkRecord{Parent: idOf(parent), ParentKey: parent.PublicKey(), Seq: 7, Child: idOf(child), ChildKey: child.PublicKey(), Index: 1, Group: testID(9)}
	r.StateHash[0] = 0xaa
	r.Sig = parent.Sign(r.message())
	return r
}

func TestForkRecordVerify(t *testing.T) {
	r := testRecord(t)
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	for name, tamper := range map[string]func(r *ForkRecord){
		"seq":    func(r *ForkRecord) { r.Seq++ },
		"state":  func(r *ForkRecord) { r.StateHash[1]++ },
		"index":  func(r *ForkRecord) { r.Index++ },
		"group":  func(r *ForkRecord) { r.Group[0]++ },
		"child":  func(r *ForkRecord) { r.Child[0]++ },
		"parent": func(r *ForkRecord) { r.Parent[0]++ },
		"sig":    func(r *ForkRecord) { r.Sig = append([]byte(nil), r.Sig...); r.Sig[0]++ },
		"key":    func(r *ForkRecord) { r.ChildKey = r.ParentKey; r.Child = r.Parent },
	} {
		c := *r
		tamper(&c)
		if c.Verify() == nil {
			t.Errorf("a record with its %s changed verifies", name)
		}
	}
}

// reencode decodes b as message kind k and encodes the result again; ok
// is false when b does not decode.
func reencode(k byte, b []byte) (out []byte, ok bool) {
	switch k % 16 {
	case 0:
		r, err := parseDeliver(b)
		if err != nil {
			return nil, false
		}
		return appendDeliver(nil, &r)[1:], true
	case 1:
		r, err := parseDeliverReply(b)
		if err != nil {
			return nil, false
		}
		return appendDeliverReply(nil, &r), true
	case 2:
		r, err := parsePrepare(b)
		if err != nil {
			return nil, false
		}
		return appendPrepare(nil, &r)[1:], true
	case 3:
		x, off, data, err := parseChunk(b)
		if err != nil {
			return nil, false
		}
		return appendChunk(nil, x, off, data)[1:], true
	case 4, 5, 6, 7:
		op := []byte{opReplay, opCutover, opForward, opStandby}[k%16-4]
		id, es, final, err := parseEntries(op, b)
		if err != nil {
			return nil, false
		}
		return appendEntries(nil, op, id, es, final)[1:], true
	case 8:
		rs, err := parseReceipts(b)
		if err != nil {
			return nil, false
		}
		return appendReceipts(nil, rs), true
	case 9:
		id, nodes, err := parseNodes(b)
		if err != nil {
			return nil, false
		}
		return appendNodes(nil, opSync, id, nodes)[1:], true
	case 10:
		r, err := parseFork(b)
		if err != nil {
			return nil, false
		}
		return appendFork(nil, &r)[1:], true
	case 11:
		rs, err := parseRecords(b)
		if err != nil {
			return nil, false
		}
		return appendRecords(nil, rs), true
	case 12:
		r, err := parseReport(b)
		if err != nil {
			return nil, false
		}
		return appendReport(nil, &r), true
	case 13:
		in, err := parseInfo(b)
		if err != nil {
			return nil, false
		}
		return appendInfo(nil, &in), true
	case 14:
		s, size, err := parseSnapshotHeader(b)
		if err != nil {
			return nil, false
		}
		return appendHeader(nil, &s, size), true
	default:
		t, state, err := parseImage(b)
		if err != nil {
			return nil, false
		}
		return appendImage(nil, t, state), true
	}
}

// FuzzWire decodes hostile bytes as each message of the runtime: a
// message from any peer of the mesh (deliveries, transfers, replies)
// must decode within the bounds or fail with ErrMalformed, never panic
// or allocate beyond the bound a count declares, and what decodes must
// encode to bytes that decode to the same encoding again.
func FuzzWire(f *testing.F) {
	rec := testRecord(f)
	es := []entry{{Seq: 4, Origin: testNode(1), Inc: 9, Ctr: 3, Data: []byte("a")}, {Seq: 5, Origin: testNode(2), Inc: 1, Ctr: 1}}
	f.Add(byte(0), appendDeliver(nil, &deliverReq{Daemon: testID(1), Inc: 7, Ctrs: []uint64{1, 2}, Data: [][]byte{[]byte("x"), nil}})[1:])
	f.Add(byte(1), appendDeliverReply(nil, &deliverReply{Status: statusOK, Receipts: []wireReceipt{{Seq: 3, Outputs: [][]byte{[]byte("o")}}, {Code: CodeBackpressure, Message: "full"}, {Duplicate: true}}}))
	f.Add(byte(1), appendDeliverReply(nil, &deliverReply{Status: statusMoved, Node: testNode(3)}))
	f.Add(byte(2), appendPrepare(nil, &prepareReq{Xfer: testID(2), Mode: modeMigrate, Daemon: testID(3), Kind: "k", Owner: testNode(4), Seq: 5, Key: []byte("sealed"), Size: 99, Fork: rec})[1:])
	f.Add(byte(3), appendChunk(nil, testID(2), 10, []byte("chunk"))[1:])
	f.Add(byte(4), appendEntries(nil, opReplay, testID(2), es, 0)[1:])
	f.Add(byte(5), appendEntries(nil, opCutover, testID(2), es, 5)[1:])
	f.Add(byte(6), appendEntries(nil, opForward, testID(2), es, 0)[1:])
	f.Add(byte(7), appendEntries(nil, opStandby, testID(2), es, 0)[1:])
	f.Add(byte(8), appendReceipts(nil, []wireReceipt{{Seq: 1}}))
	f.Add(byte(9), appendNodes(nil, opSync, testID(5), []identity.NodeID{testNode(1), testNode(2)})[1:])
	f.Add(byte(10), appendFork(nil, &forkReq{Daemon: testID(6), Seq: 3, Group: testID(7), Children: []ed25519.PublicKey{rec.ChildKey, rec.ParentKey}})[1:])
	f.Add(byte(11), appendRecords(nil, []*ForkRecord{rec}))
	f.Add(byte(12), appendReport(nil, &MigrationReport{Phases: []PhaseTime{{PhaseCutover, 5}}, Replayed: 3}))
	f.Add(byte(13), appendInfo(nil, &Info{ID: testID(1), Kind: "k", State: "running", Fork: rec}))
	f.Add(byte(14), appendSnapshotHeader(nil, &Snapshot{Daemon: testID(1), Kind: "k", Seq: 2, Key: []byte("k"), State: []byte("abc"), Fork: rec}))
	t := newSenderTable()
	t.record(senderKey{testNode(1), 5}, 3, 9)
	t.record(senderKey{testNode(2), 1}, 1, 10)
	f.Add(byte(15), appendImage(nil, t, []byte("state")))
	f.Fuzz(func(t *testing.T, k byte, b []byte) {
		once, ok := reencode(k, b)
		if !ok {
			return
		}
		twice, ok := reencode(k, once)
		if !ok {
			t.Fatalf("kind %d: re-encoding %x does not parse", k%16, once)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("kind %d: unstable round trip:\n%x\n%x", k%16, once, twice)
		}
	})
}

func TestWireRoundTrip(t *testing.T) {
	rep := MigrationReport{Daemon: testID(1), From: testNode(1), To: testNode(2), Phases: []PhaseTime{{PhaseSnapshot, time.Millisecond}}, SnapshotSeq: 3, CutoverSeq: 9, StateBytes: 100, Replayed: 6, Handed: 2, Frozen: time.Microsecond, Total: time.Second}
	got, err := parseReport(appendReport(nil, &rep))
	if err != nil || !reflect.DeepEqual(got, rep) {
		t.Fatalf("report: %+v %v", got, err)
	}
	info := Info{ID: testID(2), Kind: "k", Node: testNode(1), Owner: testNode(2), State: "running", Phase: PhaseReplay, Seq: 5, Applied: 5, Queued: 1, Since: time.Unix(0, 12345), Standbys: []identity.NodeID{testNode(3)}, Fork: testRecord(t)}
	gotInfo, err := parseInfo(appendInfo(nil, &info))
	if err != nil || !reflect.DeepEqual(gotInfo, info) {
		t.Fatalf("info: %+v %v", gotInfo, err)
	}
	// Refusals of the decoders.
	for name, b := range map[string][]byte{
		"replay gap":    appendEntries(nil, opReplay, testID(1), []entry{{Seq: 1}, {Seq: 3}}, 0)[1:],
		"cutover final": appendEntries(nil, opCutover, testID(1), []entry{{Seq: 1}}, 2)[1:],
	} {
		op := opReplay
		if name == "cutover final" {
			op = opCutover
		}
		if _, _, _, err := parseEntries(op, b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := parsePrepare(appendPrepare(nil, &prepareReq{Xfer: testID(1), Mode: modeMigrate, Kind: "k"})[1:]); err == nil {
		t.Error("a migration without a key decoded")
	}
}

// TestChunkFitsABufferClass: a transfer chunk, as the rpc request that
// carries it, fits the receiver's 64 KiB reassembly buffer; one byte
// more and each chunk would take a fresh 128 KiB buffer, zeroed.
func TestChunkFitsABufferClass(t *testing.T) {
	req := appendChunkHeader(nil, testID(1), 1<<32, chunkSize)
	req = append(req, make([]byte, chunkSize)...)
	f := rpc.Frame{Type: rpc.FrameRequest, Timeout: 24 * time.Hour, Credit: 1 << 31, Service: HostService, Body: req}
	if n := len(rpc.AppendFrame(nil, &f)); n > 64<<10 {
		t.Fatalf("a chunk's request is %d bytes, more than 64 KiB", n)
	}
}
