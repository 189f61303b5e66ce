package mesh_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest"
)

// flow is numbered datagrams from one node to another with at most window
// of them sent and not yet read, so that neither the sockets' buffers, nor
// a FaultConn's delay queue, nor the receive queue can overflow: whatever
// goes missing, the mesh lost.
type flow struct {
	from, to *mesh.Mesh
	peer     *mesh.Peer // from's Peer for to
	window   uint64

	sent atomic.Uint64 // datagrams SendDatagram accepted, numbered 0..sent-1
	recv atomic.Uint64 // distinct datagrams read

	// Owned by receive: every datagram below next has been read, and
	// ahead holds those read above it.
	next  uint64
	ahead map[uint64]bool

	mu  sync.Mutex
	err error
}

const flowPayload = 200

func (f *flow) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *flow) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// send sends until stop is closed. A send the mesh refuses with
// ErrBackpressure was not sent, and is tried again.
func (f *flow) send(ctx context.Context, stop <-chan struct{}) {
	payload := make([]byte, flowPayload)
	for seq := uint64(0); ; {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if seq-f.recv.Load() >= f.window {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		binary.LittleEndian.PutUint64(payload, seq)
		switch err := f.from.SendDatagram(ctx, f.peer, payload); {
		case err == nil:
			seq++
			f.sent.Store(seq)
		case errors.Is(err, mesh.ErrBackpressure):
			time.Sleep(50 * time.Microsecond)
		default:
			f.fail(fmt.Errorf("send %d: %w", seq, err))
			return
		}
	}
}

// receive reads until ctx ends.
func (f *flow) receive(ctx context.Context) {
	buf := make([]byte, mesh.MaxDatagramSize)
	for {
		n, from, err := f.to.ReadDatagram(ctx, buf)
		if err != nil {
			return
		}
		if n != flowPayload || from == nil || from.ID() != f.from.ID() {
			who := "nobody"
			if from != nil {
				who = from.ID().Short()
			}
			f.fail(fmt.Errorf("unexpected datagram of %d bytes from %s", n, who))
			continue
		}
		seq := binary.LittleEndian.Uint64(buf)
		if seq < f.next || f.ahead[seq] {
			f.fail(fmt.Errorf("datagram %d delivered twice", seq))
			continue
		}
		f.ahead[seq] = true
		for f.ahead[f.next] {
			delete(f.ahead, f.next)
			f.next++
		}
		f.recv.Add(1)
	}
}

// TestRekeyUnderLoadLosesNothing replaces a session many times while
// datagrams flow both ways, over real UDP on 127.0.0.1 where nothing is
// lost: each direction keeps at most window datagrams unread, far below
// what the sockets, the delay queues and the receive queue hold. A switch
// to a new session must be invisible: no packet may name an index its
// receiver has already forgotten (unknown_index), and every datagram that
// SendDatagram accepted arrives exactly once.
//
// The test counts rekeys, not time, and asserts nothing about timing.
//
//   - "latency": b's packets take 80 ms to reach a, longer than a
//     retransmit interval (50 ms). When a switches to a new session, b's
//     packets on the old one are on their way for that long, and b seals
//     on the old one until a's first packet on the new one reaches it. A
//     node that forgot the old session a fixed time after switching (it
//     did, after HandshakeRetransmit) lost them at every rekey.
//   - "loopback": no delay but more traffic, which queues up on a loaded
//     machine (the race detector was enough to lose packets).
//   - "crossing": both nodes start a rekey at the same moment, 20 ms from
//     each other, so each answers the other's initiation and completes its
//     own. Each sent on the session it installed last, the one the other
//     node installed first, and the next switch forgot the one its peer
//     still sent on; now both settle on one of the two, and the other
//     stays retired while packets sealed on it arrive.
//
// NETMESH_REKEYS=200 soaks longer.
func TestRekeyUnderLoadLosesNothing(t *testing.T) {
	for _, tc := range []rekeyCase{
		{name: "loopback", rekeys: 40},
		{name: "latency", rekeys: 15, delayB: 80 * time.Millisecond},
		{name: "crossing", rekeys: 15, delayA: 20 * time.Millisecond, delayB: 20 * time.Millisecond, crossing: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() {
				tc.rekeys = 5
			}
			if s := os.Getenv("NETMESH_REKEYS"); s != "" {
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				tc.rekeys = n
			}
			testRekeyUnderLoad(t, tc)
		})
	}
}

type rekeyCase struct {
	name           string
	rekeys         uint64
	delayA, delayB time.Duration // added to every packet a, b sends
	// crossing: instead of rekeying on a timer, both nodes start a rekey
	// at once, rekeys times, each time once both have finished.
	crossing bool
}

func testRekeyUnderLoad(t *testing.T, tc rekeyCase) {
	node := func(delay time.Duration) (*mesh.Mesh, *meshtest.FaultConn) {
		fc := meshtest.Listen(t, meshtest.Options{Seed: 7})
		fc.SetFaults(meshtest.Faults{Delay: delay}) // neither loses nor reorders
		return newNode(t, func(c *mesh.Config) {
			c.Conn = fc
			// Far faster than any real setting, yet slow enough that
			// no datagram is still queued three rekeys after it was
			// sealed (a node keeps its current session and maxRetired
			// = 2 replaced ones): at 30 ms, a machine with both cores
			// busy held a window of them back that long.
			c.RekeyAfter = 100 * time.Millisecond
			if tc.crossing {
				c.RekeyAfter = time.Minute // RekeyNow does it
				c.HandshakeRetransmit = 500 * time.Millisecond
			}
			// Sessions are replaced by rekeys, never by expiry, and a
			// broken session is not rescued by a dead-peer handshake,
			// which would hide it.
			c.RejectAfter = 2 * time.Minute
			c.DeadPeerTimeout = 2 * time.Minute
			c.HandshakeGiveUp = 10 * time.Second
		}), fc
	}
	a, fa := node(tc.delayA)
	b, fb := node(tc.delayB)
	pb := connect(t, a, b, mesh.Pin{Key: b.Identity().PublicKey()})
	// A ping, not a datagram: exchange resends until one arrives, and on
	// a busy machine a late copy would land in the flows' readers.
	if _, err := a.Ping(ctxT(t), pb); err != nil {
		t.Fatalf("ping: %v", err)
	}
	pa := b.Peer(a.ID())
	if pa == nil {
		t.Fatal("b does not know a")
	}

	// The deadlines below only end a run that has already gone wrong.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+time.Duration(tc.rekeys)*time.Second)
	defer cancel()
	flows := []*flow{
		{from: a, to: b, peer: pb, window: 256, ahead: make(map[uint64]bool)},
		{from: b, to: a, peer: pa, window: 256, ahead: make(map[uint64]bool)},
	}
	failed := func() bool { return flows[0].failed() != nil || flows[1].failed() != nil }
	stop := make(chan struct{})
	rctx, stopReaders := context.WithCancel(context.Background())
	var senders, readers sync.WaitGroup
	for _, f := range flows {
		senders.Add(1)
		readers.Add(1)
		go func() { defer senders.Done(); f.send(ctx, stop) }()
		go func() { defer readers.Done(); f.receive(rctx) }()
	}
	defer func() {
		stopReaders()
		readers.Wait()
	}()

	startA, startB := pb.Stats().Handshakes, pa.Stats().Handshakes
	var done uint64 // rekeys
	for done < tc.rekeys && ctx.Err() == nil && !failed() {
		if !tc.crossing {
			done = pb.Stats().Handshakes - startA
			time.Sleep(time.Millisecond)
			continue
		}
		da, db := a.RekeyNow(pb), b.RekeyNow(pa)
		if da == nil || db == nil {
			t.Fatal("a handshake was already under way")
		}
		for _, d := range []<-chan struct{}{da, db} {
			select {
			case <-d:
			case <-ctx.Done():
			}
		}
		// A round trip each way on the sessions now current: by then each
		// node has had the other's first packets on its new session.
		if _, err := a.Ping(ctx, pb); err != nil {
			t.Fatalf("ping: %v", err)
		}
		if _, err := b.Ping(ctx, pa); err != nil {
			t.Fatalf("ping: %v", err)
		}
		done++
	}
	close(stop)
	senders.Wait()
	// Everything sent is in a network that loses nothing: wait for all of
	// it (only a loss makes this wait run out).
	drain, cancelDrain := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelDrain()
	for _, f := range flows {
		for f.recv.Load() < f.sent.Load() && drain.Err() == nil && f.failed() == nil {
			time.Sleep(time.Millisecond)
		}
	}

	if done < tc.rekeys {
		t.Errorf("only %d of %d rekeys happened", done, tc.rekeys)
	}
	for _, fc := range []*meshtest.FaultConn{fa, fb} {
		if st := fc.Stats(); st.Dropped != 0 || st.Overflow != 0 {
			t.Fatalf("the network lost datagrams: %+v", st)
		}
	}
	for _, f := range flows {
		dir := f.from.ID().Short() + " -> " + f.to.ID().Short()
		if err := f.failed(); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
		if got, sent := f.recv.Load(), f.sent.Load(); got != sent {
			t.Errorf("%s: %d of %d datagrams arrived", dir, got, sent)
		}
	}
	sa, sb := a.Stats(), b.Stats()
	if n, m := sa.Drops["unknown_index"], sb.Drops["unknown_index"]; n != 0 || m != 0 {
		t.Errorf("unknown_index drops: a %d, b %d", n, m)
	}
	// Sessions installed: one per rekey on each side; in a crossing the
	// node with the higher NodeID installs both, its own and then the
	// other's.
	ha, hb := pb.Stats().Handshakes-startA, pa.Stats().Handshakes-startB
	if tc.crossing && ha+hb <= 2*done {
		t.Errorf("no crossing: %d and %d sessions installed in %d simultaneous rekeys", ha, hb, done)
	}
	t.Logf("%d rekeys; sessions installed: a %d, b %d; initiations: a %d, b %d; datagrams a->b %d, b->a %d; drops a %v, b %v",
		done, ha, hb, sa.HandshakesInitiated, sb.HandshakesInitiated,
		flows[0].sent.Load(), flows[1].sent.Load(), sa.Drops, sb.Drops)
}
