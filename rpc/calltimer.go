package rpc

import (
	"context"
	"sync"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// callTimer bounds the waits of a call: for the whole request
// (ServerOptions.RequestTimeout), for the handler (the deadline the
// request carried), and for the caller to take the final frame, for as
// long as it makes progress (see stallTimeout). Firing, it resets the
// stream (abandoned), which ends a wait on the caller, or ends the
// handler's context with context.DeadlineExceeded.
//
// callTimers are pooled with their timer, so a call allocates neither.
// A fire the timer's Stop came too late for may run after its call moved
// on, or after the callTimer went to another call: fire ignores any that
// finds the timer disarmed or its armed time not yet reached, so only the
// fire of the current arming acts.
type callTimer struct {
	t *time.Timer // created once; fires ct.fire

	mu    sync.Mutex // guards the fields below
	st    *mesh.Stream
	cc    *callCtx
	phase timerPhase
	due   time.Time // when the armed fire is due
	last  progress  // at the previous check, in phaseEnding
}

// timerPhase is what a callTimer's fire does.
type timerPhase uint8

const (
	phaseIdle    timerPhase = iota // disarmed: a fire is stale
	phaseRequest                   // reset the stream: the request did not arrive whole
	phaseHandler                   // end the handler's context: its deadline passed
	phaseEnding                    // reset the stream if the caller made no progress
)

var callTimers = sync.Pool{New: func() any {
	ct := new(callTimer)
	ct.t = time.AfterFunc(time.Hour, ct.fire)
	ct.t.Stop() // armed by arm
	return ct
}}

// startCallTimer returns a callTimer for the call of st and cc, armed for
// the request's arrival within d.
func startCallTimer(st *mesh.Stream, cc *callCtx, d time.Duration) *callTimer {
	ct := callTimers.Get().(*callTimer)
	ct.mu.Lock()
	ct.st, ct.cc = st, cc
	ct.armLocked(phaseRequest, d)
	ct.mu.Unlock()
	return ct
}

// release disarms ct and returns it to the pool; the call must not use it
// any more.
func (ct *callTimer) release() {
	ct.mu.Lock()
	ct.disarmLocked()
	ct.st, ct.cc, ct.last = nil, nil, progress{}
	ct.mu.Unlock()
	callTimers.Put(ct)
}

// arm (re)arms the timer for phase p, to fire after d, and returns when.
func (ct *callTimer) arm(p timerPhase, d time.Duration) time.Time {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.armLocked(p, d)
}

func (ct *callTimer) armLocked(p timerPhase, d time.Duration) time.Time {
	// due is taken before Reset, so the fire of this arming never finds
	// the clock before it.
	ct.phase, ct.due = p, time.Now().Add(d)
	if p == phaseEnding {
		ct.last = progressOf(ct.st)
	}
	ct.t.Reset(d)
	return ct.due
}

// disarm stops the timer: a fire that comes anyway does nothing.
func (ct *callTimer) disarm() {
	ct.mu.Lock()
	ct.disarmLocked()
	ct.mu.Unlock()
}

func (ct *callTimer) disarmLocked() {
	ct.phase = phaseIdle
	ct.t.Stop()
}

func (ct *callTimer) fire() {
	ct.mu.Lock()
	if ct.phase == phaseIdle || time.Now().Before(ct.due) {
		ct.mu.Unlock()
		return // stale: of an arming since stopped or replaced
	}
	p, st, cc := ct.phase, ct.st, ct.cc
	if p == phaseEnding {
		if progressOf(st) != ct.last {
			ct.armLocked(phaseEnding, stallTimeout) // the next check
			ct.mu.Unlock()
			return
		}
	}
	ct.phase = phaseIdle
	ct.mu.Unlock()
	if p == phaseHandler {
		cc.cancel(context.DeadlineExceeded)
		return
	}
	st.Reset(resetAbandoned)
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
