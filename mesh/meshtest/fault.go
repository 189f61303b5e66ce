// Package meshtest holds test helpers for code built on netmesh's transport:
// a fault-injecting [FaultConn] around any [udp.Conn], an in-memory network
// ([MemNet]) for deterministic tests, and [Listen] for a FaultConn on
// 127.0.0.1 that a test closes automatically. The other test rigs live in
// its subpackages: natlab, a NAT simulator on a MemNet, and testnode, the
// one helper that starts a mesh node on loopback.
//
// It depends only on mesh/udp, so the mesh package's own tests can use it.
package meshtest

import (
	"container/heap"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh/udp"
)

// Defaults for Faults and Options.
const (
	// DefaultReorderDelay is how long a reordered datagram is held back when
	// Faults.ReorderDelay is zero: long enough for the datagrams written
	// right after it to overtake it, short enough not to look like loss.
	DefaultReorderDelay = 5 * time.Millisecond
	// DefaultMaxQueue is how many delayed datagrams a FaultConn holds when
	// Options.MaxQueue is zero.
	DefaultMaxQueue = 4096
)

// Faults are the impairments a FaultConn applies to the datagrams it sends.
// Probabilities are in [0, 1]; the zero value passes traffic unchanged.
type Faults struct {
	Loss      float64 // probability a datagram is dropped
	Duplicate float64 // probability a datagram is sent twice
	Corrupt   float64 // probability one random byte of a datagram is flipped
	// Reorder is the probability a datagram is held back by ReorderDelay
	// (on top of any other delay) so the datagrams after it overtake it.
	Reorder float64
	// ReorderDelay is the hold-back for reordered datagrams; zero means
	// DefaultReorderDelay.
	ReorderDelay time.Duration
	// Delay is added to every datagram, plus a uniform random extra in
	// [0, Jitter). Jitter alone reorders datagrams; Delay alone does not.
	Delay  time.Duration
	Jitter time.Duration
}

// FaultStats counts what a FaultConn did. A duplicated datagram counts once
// in Sent and once in Duplicated.
type FaultStats struct {
	Sent       uint64 // datagrams written by the caller and not dropped
	Dropped    uint64 // dropped by Loss
	Blocked    uint64 // dropped because the peer was blocked (send or receive)
	Duplicated uint64 // extra copies sent
	Corrupted  uint64 // datagrams with a flipped byte
	Reordered  uint64 // datagrams held back by ReorderDelay
	Delayed    uint64 // datagrams that went through the delay queue
	Overflow   uint64 // delayed datagrams dropped because the queue was full
	Received   uint64 // datagrams returned by ReadBatch
}

// Options configure a FaultConn.
type Options struct {
	// Seed makes the fault pattern reproducible: two FaultConns with the
	// same seed and the same sequence of writes make the same decisions,
	// whatever the fault settings (every datagram draws the same number
	// of random values).
	Seed uint64
	// MaxQueue bounds the delayed datagrams held at once; further ones are
	// dropped and counted in FaultStats.Overflow. Zero means
	// DefaultMaxQueue.
	MaxQueue int
	// Relisten opens the new socket for Rebind, given the current local
	// address with port 0. Nil means udp.Listen on the address's family.
	Relisten func(laddr netip.AddrPort) (udp.Conn, error)
}

// FaultConn wraps a udp.Conn and injects faults, deterministically from a
// seed. Loss, duplication, corruption, reordering and delay apply on the
// send side only, so each direction of a link is impaired by its sender's
// FaultConn. Blocking applies both ways. Fault settings may change at any
// time. FaultConn implements udp.Conn.
//
// Corrupted and delayed datagrams are copied; with no faults set, the send
// and receive paths allocate nothing.
type FaultConn struct {
	opts Options

	// mu guards the fields below it; methods suffixed Locked need it.
	mu      sync.Mutex
	inner   udp.Conn
	faults  Faults
	rng     *rand.Rand
	blocked map[netip.AddrPort]bool
	stats   FaultStats
	queue   delayQueue
	seq     uint64 // tie-break keeping equal deadlines in write order
	closed  bool

	onSend atomic.Pointer[func(udp.Message)]

	wmu sync.Mutex    // serializes WriteBatch, guards out
	out []udp.Message // datagrams to send now

	wake chan struct{} // a new earliest deadline was queued
	quit chan struct{} // closed by Close
	done chan struct{} // closed when the delay goroutine exits
	due  []udp.Message // owned by the delay goroutine
}

// NewFaultConn wraps inner. It starts one goroutine, for delayed datagrams,
// which Close stops; Close also closes inner.
func NewFaultConn(inner udp.Conn, opts Options) *FaultConn {
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = DefaultMaxQueue
	}
	c := &FaultConn{
		opts:    opts,
		inner:   inner,
		rng:     rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		blocked: make(map[netip.AddrPort]bool),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.run()
	return c
}

// Listen returns a FaultConn over a real UDP socket on 127.0.0.1 with an
// ephemeral port, closed when the test ends.
func Listen(t testing.TB, opts Options) *FaultConn {
	t.Helper()
	inner, err := udp.Listen("udp4", netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0))
	if err != nil {
		t.Fatalf("meshtest: %v", err)
	}
	c := NewFaultConn(inner, opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// SetFaults replaces the fault settings; it takes effect for the next
// datagram written.
func (c *FaultConn) SetFaults(f Faults) {
	c.mu.Lock()
	c.faults = f
	c.mu.Unlock()
}

// Faults returns the current fault settings.
func (c *FaultConn) Faults() Faults {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.faults
}

// Block drops all traffic to and from addr until Unblock. Port 0 blocks
// every port of addr's IP. Datagrams to addr are dropped when written;
// datagrams from addr are dropped when read, so one that arrived while
// blocked but is read after Unblock gets through. To cut a link cleanly,
// block each end in its own FaultConn.
func (c *FaultConn) Block(addr netip.AddrPort) {
	c.mu.Lock()
	c.blocked[unmap(addr)] = true
	c.mu.Unlock()
}

// Unblock undoes Block for the same addr.
func (c *FaultConn) Unblock(addr netip.AddrPort) {
	c.mu.Lock()
	delete(c.blocked, unmap(addr))
	c.mu.Unlock()
}

// SetOnSend installs fn to be called with every datagram the caller writes,
// before faults apply (so it also sees datagrams that will be dropped). The
// Message's Buf is only valid during the call. Nil removes the hook. fn may
// run concurrently when several goroutines write, and must not call
// WriteBatch.
func (c *FaultConn) SetOnSend(fn func(udp.Message)) {
	if fn == nil {
		c.onSend.Store(nil)
		return
	}
	c.onSend.Store(&fn)
}

// Stats returns the counters so far.
func (c *FaultConn) Stats() FaultStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// LocalAddr returns the current inner socket's address; it changes on
// Rebind.
func (c *FaultConn) LocalAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inner.LocalAddr()
}

// Rebind makes the conn appear to move: it opens a new socket on the same IP
// and a fresh port (see Options.Relisten), switches to it and closes the old
// one. Peers see later datagrams come from the new address; datagrams sent
// to the old one are lost. A pending ReadBatch continues on the new socket.
func (c *FaultConn) Rebind() error {
	c.wmu.Lock() // no WriteBatch on the old socket while it closes
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	old := c.inner
	laddr := netip.AddrPortFrom(old.LocalAddr().Addr(), 0)
	relisten := c.opts.Relisten
	if relisten == nil {
		relisten = listenUDP
	}
	nc, err := relisten(laddr)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.inner = nc
	c.mu.Unlock()
	return old.Close()
}

func listenUDP(laddr netip.AddrPort) (udp.Conn, error) {
	network := "udp6"
	if laddr.Addr().Is4() {
		network = "udp4"
	}
	return udp.Listen(network, laddr)
}

// Close stops the delay goroutine, discards delayed datagrams and closes the
// inner conn. A pending ReadBatch returns net.ErrClosed.
func (c *FaultConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	inner := c.inner
	c.mu.Unlock()
	close(c.quit)
	<-c.done
	return inner.Close()
}

// ReadBatch implements udp.Conn. Datagrams from blocked addresses are
// dropped; it keeps reading across Rebind.
func (c *FaultConn) ReadBatch(msgs []udp.Message) (int, error) {
	for {
		c.mu.Lock()
		inner, closed := c.inner, c.closed
		c.mu.Unlock()
		if closed {
			return 0, net.ErrClosed
		}
		n, err := inner.ReadBatch(msgs)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				c.mu.Lock()
				rebound := !c.closed && c.inner != inner
				c.mu.Unlock()
				if rebound {
					continue
				}
			}
			return 0, err
		}
		c.mu.Lock()
		k := 0
		for _, m := range msgs[:n] {
			if c.isBlockedLocked(m.Addr) {
				c.stats.Blocked++
				continue
			}
			msgs[k] = m
			k++
		}
		c.stats.Received += uint64(k)
		c.mu.Unlock()
		if k > 0 {
			return k, nil
		}
	}
}

func (c *FaultConn) isBlockedLocked(ap netip.AddrPort) bool {
	if len(c.blocked) == 0 {
		return false
	}
	ap = unmap(ap)
	return c.blocked[ap] || c.blocked[netip.AddrPortFrom(ap.Addr(), 0)]
}

// draws are the random values one datagram consumes, always all of them,
// so that a seed's pattern does not depend on the fault settings.
type draws struct {
	loss, dup, corrupt, reorder float64
	pos                         uint32
	flip                        byte
	jitter                      float64
}

func (c *FaultConn) drawLocked() draws {
	return draws{
		loss:    c.rng.Float64(),
		dup:     c.rng.Float64(),
		corrupt: c.rng.Float64(),
		reorder: c.rng.Float64(),
		pos:     c.rng.Uint32(),
		flip:    byte(c.rng.IntN(255) + 1),
		jitter:  c.rng.Float64(),
	}
}

// WriteBatch implements udp.Conn, applying the faults. Datagrams the faults
// drop count as sent; the count is lower only if the inner conn fails.
func (c *FaultConn) WriteBatch(msgs []udp.Message) (int, error) {
	if fn := c.onSend.Load(); fn != nil {
		for _, m := range msgs {
			(*fn)(m)
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	f := c.faults
	now := time.Now()
	c.out = c.out[:0]
	for _, m := range msgs {
		d := c.drawLocked()
		if c.isBlockedLocked(m.Addr) {
			c.stats.Blocked++
			continue
		}
		if d.loss < f.Loss {
			c.stats.Dropped++
			continue
		}
		c.stats.Sent++
		copies := 1
		if d.dup < f.Duplicate {
			copies = 2
			c.stats.Duplicated++
		}
		if d.corrupt < f.Corrupt && len(m.Buf) > 0 {
			b := append([]byte(nil), m.Buf...)
			b[d.pos%uint32(len(b))] ^= d.flip
			m.Buf = b
			c.stats.Corrupted++
		}
		delay := f.Delay
		if f.Jitter > 0 {
			delay += time.Duration(d.jitter * float64(f.Jitter))
		}
		if d.reorder < f.Reorder {
			rd := f.ReorderDelay
			if rd <= 0 {
				rd = DefaultReorderDelay
			}
			delay += rd
			c.stats.Reordered++
		}
		for range copies {
			if delay > 0 {
				c.enqueueLocked(now.Add(delay), m)
			} else {
				c.out = append(c.out, m)
			}
		}
	}
	inner := c.inner
	c.mu.Unlock()
	if len(c.out) == 0 {
		return len(msgs), nil
	}
	n, err := inner.WriteBatch(c.out)
	clear(c.out) // drop references to the caller's buffers
	if err != nil {
		return max(0, len(msgs)-(len(c.out)-n)), err
	}
	return len(msgs), nil
}

// enqueueLocked schedules a copy of m for at, or counts an overflow.
func (c *FaultConn) enqueueLocked(at time.Time, m udp.Message) {
	if len(c.queue) >= c.opts.MaxQueue {
		c.stats.Overflow++
		return
	}
	c.stats.Delayed++
	m.Buf = append([]byte(nil), m.Buf...)
	c.seq++
	heap.Push(&c.queue, delayed{at: at, seq: c.seq, msg: m})
	if c.queue[0].seq == c.seq {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// run sends delayed datagrams when they fall due, with one timer.
func (c *FaultConn) run() {
	defer close(c.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		now := time.Now()
		c.due = c.due[:0]
		for len(c.queue) > 0 && !c.queue[0].at.After(now) {
			c.due = append(c.due, heap.Pop(&c.queue).(delayed).msg)
		}
		next := time.Hour
		if len(c.queue) > 0 {
			next = c.queue[0].at.Sub(now)
		}
		inner := c.inner
		c.mu.Unlock()
		if len(c.due) > 0 {
			// Errors are the network's business: a delayed datagram
			// that cannot be sent is lost, as on a real path.
			_, _ = inner.WriteBatch(c.due)
			clear(c.due)
		}
		timer.Reset(next)
		select {
		case <-c.quit:
			return
		case <-c.wake:
		case <-timer.C:
		}
	}
}

// delayed is one datagram waiting in the delay queue.
type delayed struct {
	at  time.Time
	seq uint64
	msg udp.Message
}

// delayQueue is a min-heap of delayed datagrams by deadline, then write
// order.
type delayQueue []delayed

func (q delayQueue) Len() int { return len(q) }
func (q delayQueue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].seq < q[j].seq
	}
	return q[i].at.Before(q[j].at)
}
func (q delayQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *delayQueue) Push(x any)   { *q = append(*q, x.(delayed)) }
func (q *delayQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	old[len(old)-1] = delayed{}
	*q = old[:len(old)-1]
	return x
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
