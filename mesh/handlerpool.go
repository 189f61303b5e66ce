package mesh

import (
	"slices"
	"sync"
	"time"
)

// handlerPool runs stream handlers on goroutines that wait a while for
// the next handler after theirs returns. A new goroutine starts on a
// small stack and a handler of some depth (an rpc server decoding a
// request and running a service) grows it by copying, again for every
// stream; a waiting goroutine keeps the stack it grew, and taking one is
// a channel send. At most maxIdle wait, each at most idle; Mesh.Close
// ends them at once.
type handlerPool struct {
	maxIdle int
	idle    time.Duration

	mu      sync.Mutex
	waiting []chan handlerCall // last in, first out: the warmest stack first
	closed  bool
}

// handlerCall is one stream for a handler; the zero value ends a waiting
// goroutine.
type handlerCall struct {
	h func(*Stream, *Peer)
	s *Stream
	p *Peer
}

// run runs f on a waiting goroutine, or a new one.
func (hp *handlerPool) run(f handlerCall) {
	hp.mu.Lock()
	if n := len(hp.waiting); n > 0 {
		ch := hp.waiting[n-1]
		hp.waiting[n-1] = nil
		hp.waiting = hp.waiting[:n-1]
		hp.mu.Unlock()
		ch <- f // buffered: never blocks
		return
	}
	hp.mu.Unlock()
	go hp.loop(f)
}

// loop runs f, then the handlers it is given while it waits, until it
// waited idle for nothing, the pool has enough waiting, or the pool
// closes.
func (hp *handlerPool) loop(f handlerCall) {
	ch := make(chan handlerCall, 1)
	var t *time.Timer
	for {
		f.h(f.s, f.p)
		f = handlerCall{}
		hp.mu.Lock()
		if hp.closed || len(hp.waiting) >= hp.maxIdle {
			hp.mu.Unlock()
			return
		}
		hp.waiting = append(hp.waiting, ch)
		hp.mu.Unlock()
		if t == nil {
			t = time.NewTimer(hp.idle)
		} else {
			t.Reset(hp.idle)
		}
		select {
		case f = <-ch:
			t.Stop()
		case <-t.C:
			if !hp.leave(ch) {
				f = <-ch // run took it meanwhile: its handler is on its way
			}
		}
		if f.h == nil { // closed
			return
		}
	}
}

// leave takes ch off the waiting list, reporting whether it was there.
func (hp *handlerPool) leave(ch chan handlerCall) bool {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	for i, c := range hp.waiting {
		if c == ch {
			hp.waiting = slices.Delete(hp.waiting, i, i+1)
			return true
		}
	}
	return false
}

// close ends the waiting goroutines; those running a handler end when it
// returns.
func (hp *handlerPool) close() {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	hp.closed = true
	for _, ch := range hp.waiting {
		ch <- handlerCall{}
	}
	hp.waiting = nil
}
