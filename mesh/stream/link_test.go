package stream

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faults are the impairments of one direction of a memLink. A corrupted
// frame would be dropped by the mesh's AEAD, so it is modelled as loss.
type faults struct {
	loss, reorder, dup, corrupt float64
	// rate limits delivery, bytes per second; 0 means unlimited.
	rate int
	// tailDrop drops frames when the queue is full, like a router, instead
	// of returning ErrBackpressure like the mesh's socket queue.
	tailDrop bool
}

type memPkt struct {
	b    [jumboChunkSize + 64]byte
	n    int
	hold bool
}

var memPktPool = sync.Pool{New: func() any { return new(memPkt) }}

// memLink is one direction of an in-memory Link pair: SendFrame queues a
// pooled copy, a goroutine delivers it to the peer Mux's HandleFrame.
type memLink struct {
	f   faults
	mtu int
	// maxSend is the largest body SendFrame takes: mtu, or the probe
	// ceiling of a probeLink.
	maxSend int
	// pathMTU, when non-zero, silently drops larger frames, like a path
	// with a smaller MTU than the interface.
	pathMTU atomic.Int64
	// blackout, while set, drops every frame: a path that died.
	blackout atomic.Bool
	// drop, when set, drops the frames it returns true for.
	drop atomic.Pointer[func(body []byte) bool]
	rng  *rand.Rand // used under the sending Mux's lock only
	q    chan *memPkt
	peer atomic.Pointer[Mux]
	stop chan struct{}
	wg   sync.WaitGroup

	sent, dropped, dups, reordered, tooBig atomic.Uint64
}

// probeLink is a memLink that implements ProbeLink.
type probeLink struct{ *memLink }

func (l probeLink) MaxProbeSize() int { return l.maxSend }

func newMemLink(f faults, seed uint64, mtu, queue int) *memLink {
	l := &memLink{
		f:       f,
		mtu:     mtu,
		maxSend: mtu,
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		q:       make(chan *memPkt, queue),
		stop:    make(chan struct{}),
	}
	l.wg.Add(1)
	go l.deliver()
	return l
}

func (l *memLink) MaxFrameSize() int { return l.mtu }

func (l *memLink) SendFrame(head, data []byte) error {
	if len(head)+len(data) > l.maxSend {
		return ErrTooLarge
	}
	first := memPktPool.Get().(*memPkt)
	first.n = copy(first.b[:], head)
	first.n += copy(first.b[first.n:], data)
	body := first.b[:first.n]
	drop := false
	if pm := l.pathMTU.Load(); pm != 0 && int64(len(body)) > pm {
		l.tooBig.Add(1)
		drop = true
	} else if d := l.drop.Load(); l.blackout.Load() || (d != nil && (*d)(body)) {
		l.dropped.Add(1)
		drop = true
	} else if l.f.loss+l.f.corrupt > 0 && l.rng.Float64() < l.f.loss+l.f.corrupt {
		l.dropped.Add(1)
		drop = true
	}
	if drop {
		memPktPool.Put(first)
		return nil
	}
	copies := 1
	if l.f.dup > 0 && l.rng.Float64() < l.f.dup {
		copies = 2
		l.dups.Add(1)
	}
	hold := l.f.reorder > 0 && l.rng.Float64() < l.f.reorder
	pkts := [2]*memPkt{first}
	if copies == 2 {
		pkts[1] = memPktPool.Get().(*memPkt)
		pkts[1].n = copy(pkts[1].b[:], body)
	}
	for i, p := range pkts[:copies] {
		p.hold = hold
		select {
		case l.q <- p:
			l.sent.Add(1)
		default:
			for _, p := range pkts[i:copies] {
				memPktPool.Put(p)
			}
			if l.f.tailDrop {
				l.dropped.Add(1)
				return nil
			}
			return ErrBackpressure
		}
	}
	return nil
}

// deliver hands queued frames to the peer. A held-back frame is delivered
// after the next three frames (or after 2 ms of silence), so they
// overtake it.
func (l *memLink) deliver() {
	defer l.wg.Done()
	type held struct {
		p     *memPkt
		after int
	}
	var hq []held
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	var debt time.Duration
	give := func(p *memPkt) {
		if m := l.peer.Load(); m != nil {
			m.HandleFrame(p.b[:p.n])
		}
		if l.f.rate > 0 {
			debt += time.Duration(p.n) * time.Second / time.Duration(l.f.rate)
			if debt > time.Millisecond {
				time.Sleep(debt)
				debt = 0
			}
		}
		memPktPool.Put(p)
	}
	for {
		var p *memPkt
		if len(hq) > 0 {
			idle.Reset(2 * time.Millisecond)
			select {
			case p = <-l.q:
			case <-idle.C:
				for _, h := range hq {
					give(h.p)
				}
				hq = hq[:0]
				continue
			case <-l.stop:
				return
			}
		} else {
			select {
			case p = <-l.q:
			case <-l.stop:
				return
			}
		}
		if p.hold && len(hq) < 64 {
			l.reordered.Add(1)
			hq = append(hq, held{p, 3})
			continue
		}
		give(p)
		k := 0
		for _, h := range hq {
			if h.after--; h.after <= 0 {
				give(h.p)
			} else {
				hq[k] = h
				k++
			}
		}
		hq = hq[:k]
	}
}

func (l *memLink) close() {
	close(l.stop)
	l.wg.Wait()
	for {
		select {
		case p := <-l.q:
			memPktPool.Put(p)
		default:
			return
		}
	}
}

// pair is two Muxes joined by memLinks.
type pair struct {
	a, b     *Mux
	ab, ba   *memLink
	shutdown sync.Once
}

// testMTU is the mesh's default frame budget on a 1280-byte path.
const testMTU = 1131

// newPair joins two Muxes; f impairs both directions. It registers
// cleanup that closes everything.
func newPair(t testing.TB, f faults, seed uint64, cfg MuxConfig) *pair {
	t.Helper()
	return newProbePair(t, f, seed, cfg, 0)
}

// newProbePair is newPair with ProbeLinks that take frames up to probeMax
// bytes when probeMax is non-zero.
func newProbePair(t testing.TB, f faults, seed uint64, cfg MuxConfig, probeMax int) *pair {
	t.Helper()
	p := &pair{
		ab: newMemLink(f, seed, testMTU, 1024),
		ba: newMemLink(f, seed+1, testMTU, 1024),
	}
	var la, lb Link = p.ab, p.ba
	if probeMax != 0 {
		p.ab.maxSend, p.ba.maxSend = probeMax, probeMax
		la, lb = probeLink{p.ab}, probeLink{p.ba}
	}
	p.a = NewMux(la, cfg)
	p.b = NewMux(lb, cfg)
	p.ab.peer.Store(p.b)
	p.ba.peer.Store(p.a)
	t.Cleanup(p.close)
	return p
}

func (p *pair) close() {
	p.shutdown.Do(func() {
		p.a.Close()
		p.b.Close()
		p.ab.close()
		p.ba.close()
	})
}

// probeMuxConfig is testMuxConfig for the path MTU tests, with a 50 ms
// RTO floor: a probe waits 3 RTOs for its PONG, and a machine busy with
// other -race tests can stall a PONG for 30 ms, so a probe that fit
// looked lost and the search settled below the path MTU.
func probeMuxConfig() MuxConfig {
	c := testMuxConfig()
	c.MinRTO, c.InitialRTT = 50*time.Millisecond, 20*time.Millisecond
	return c
}

// testMuxConfig shrinks the timers for fast tests.
func testMuxConfig() MuxConfig {
	return MuxConfig{
		MinRTO:            10 * time.Millisecond,
		InitialRTT:        5 * time.Millisecond,
		ReassemblyTimeout: 200 * time.Millisecond,
	}
}
