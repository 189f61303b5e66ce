package rpc

import (
	"context"
	"sync"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// callWatch watches a call for the goroutine that serves it. One timer
// bounds the call's waits: for the whole request
// (ServerOptions.RequestTimeout), for the handler (the deadline the
// request carried), and for the caller to take the final frame, for as
// long as it makes progress (see stallTimeout). Firing, it resets the
// stream (abandoned), which ends a wait on the caller, or ends the
// handler's context with context.DeadlineExceeded. And ended, run by the
// stream's AfterEnd for a unary call, cancels the handler when the
// caller resets the stream; over, run by its OnEnd once a unary call's
// final frame is queued, ends the call when the stream ends (see
// Server.end).
//
// callWatches are pooled with their timer, ended and over, so a call
// allocates none of them. That lets a fire or an ended meant for one use run in a
// later one: the timer's Stop, or AfterEnd's stop, may come too late,
// and the function then runs whenever its goroutine gets to it. fire
// ignores a fire that finds the timer disarmed or its armed time not yet
// reached, so only the fire of the current arming acts. ended acts only
// on a reset of the current call's stream, which the current call's own
// ended, or its watch goroutine, answers in the same way.
type callWatch struct {
	t     *time.Timer // created once; fires cw.fire
	ended func()      // cw.streamEnded, bound once
	over  func()      // cw.callOver, bound once

	// mu guards the fields below. It is a leaf: the stream's lock is
	// never taken with it held, so the stream may call over with its own
	// lock held.
	mu    sync.Mutex
	st    *mesh.Stream
	cc    *callCtx
	srv   *Server // the call's
	phase timerPhase
	due   time.Time // when the armed fire is due
	last  progress  // at the previous check, in phaseEnding
}

// timerPhase is what a callWatch's fire does.
type timerPhase uint8

const (
	phaseIdle    timerPhase = iota // disarmed: a fire is stale
	phaseRequest                   // reset the stream: the request did not arrive whole
	phaseHandler                   // end the handler's context: its deadline passed
	phaseEnding                    // reset the stream if the caller made no progress
)

// callWatches is initialised in init: its New refers back to it
// through callOver and release.
var callWatches sync.Pool

func init() {
	callWatches.New = func() any {
		cw := new(callWatch)
		cw.t = time.AfterFunc(time.Hour, cw.fire)
		cw.t.Stop() // armed by arm
		cw.ended = cw.streamEnded
		cw.over = cw.callOver
		return cw
	}
}

// startCallWatch returns a callWatch for the call of st and cc on s,
// armed for the request's arrival within d.
func startCallWatch(s *Server, st *mesh.Stream, cc *callCtx, d time.Duration) *callWatch {
	cw := callWatches.Get().(*callWatch)
	cw.mu.Lock()
	cw.srv, cw.st, cw.cc = s, st, cc
	cw.armLocked(phaseRequest, d, progress{})
	cw.mu.Unlock()
	return cw
}

// release disarms cw and returns it to the pool; the call must not use it
// any more.
func (cw *callWatch) release() {
	cw.mu.Lock()
	cw.disarmLocked()
	cw.st, cw.cc, cw.srv, cw.last = nil, nil, nil, progress{}
	cw.mu.Unlock()
	callWatches.Put(cw)
}

// arm (re)arms the timer for phase p, to fire after d, and returns when.
// Only the call's goroutine arms.
func (cw *callWatch) arm(p timerPhase, d time.Duration) time.Time {
	var last progress
	if p == phaseEnding {
		last = progressOf(cw.st) // cw.st is the call's goroutine's to set
	}
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return cw.armLocked(p, d, last)
}

// armLocked arms the timer; last is the stream's progress now, for
// phaseEnding.
func (cw *callWatch) armLocked(p timerPhase, d time.Duration, last progress) time.Time {
	// due is taken before Reset, so the fire of this arming never finds
	// the clock before it.
	cw.phase, cw.due, cw.last = p, time.Now().Add(d), last
	cw.t.Reset(d)
	return cw.due
}

// disarm stops the timer: a fire that comes anyway does nothing.
func (cw *callWatch) disarm() {
	cw.mu.Lock()
	cw.disarmLocked()
	cw.mu.Unlock()
}

func (cw *callWatch) disarmLocked() {
	cw.phase = phaseIdle
	cw.t.Stop()
}

func (cw *callWatch) fire() {
	cw.mu.Lock()
	if cw.phase == phaseIdle || time.Now().Before(cw.due) {
		cw.mu.Unlock()
		return // stale: of an arming since stopped or replaced
	}
	p, st, cc, due := cw.phase, cw.st, cw.cc, cw.due
	if p == phaseEnding {
		cw.mu.Unlock()
		now := progressOf(st) // without cw.mu: it takes the stream's lock
		cw.mu.Lock()
		if cw.phase != p || cw.due != due || cw.st != st {
			cw.mu.Unlock()
			return // disarmed, rearmed or released meanwhile
		}
		if now != cw.last {
			cw.armLocked(phaseEnding, stallTimeout, now) // the next check
			cw.mu.Unlock()
			return
		}
	}
	cw.phase = phaseIdle
	cw.mu.Unlock()
	if p == phaseHandler {
		cc.cancel(context.DeadlineExceeded)
		return
	}
	st.Reset(resetAbandoned)
}

// streamEnded cancels the handler's context if the call's stream ended
// with a reset (see resetCause). It runs from the stream's AfterEnd, in a
// goroutine of its own, possibly late (see callWatch).
func (cw *callWatch) streamEnded() {
	cw.mu.Lock()
	st, cc := cw.st, cw.cc
	cw.mu.Unlock()
	if st == nil {
		return // pooled: no call
	}
	if err := st.Err(); err != nil {
		cc.cancel(resetCause(err))
	}
}

// callOver ends the call whose final frame Server.end left to the stream:
// the stream's OnEnd runs it, with the stream's lock held, when the
// caller acknowledged the frame or the stream was reset. It releases cw.
func (cw *callWatch) callOver() {
	cw.mu.Lock()
	s, st, cc := cw.srv, cw.st, cw.cc
	cw.mu.Unlock()
	s.callOver(st, cc)
	cw.release()
}

// progress is what moves while a stream's send side does: fragments
// queued, and bytes not yet acknowledged.
type progress struct {
	queued  uint64
	unacked int
}

func progressOf(st *mesh.Stream) progress {
	x := st.Stats()
	return progress{queued: x.TxSeq, unacked: x.BytesInFlight}
}
