package task

import "sync/atomic"

// Breakdowns beside WorkerStats and SubmitterStats, for metrics: refusals
// by code, and the submitter's records by state.

// refusalCodes are the codes refusals are counted under one by one. Any
// other code (an application's own, or one a newer version added) counts
// as Refusals.Other, so a worker sending made-up codes cannot grow what a
// submitter keeps.
var refusalCodes = [...]Code{
	CodeContractViolation, CodeDependencyMissing, CodeResourceExhausted, CodeLimitExceeded,
	CodeTimeout, CodeLateResult, CodeCancelled, CodeLost, CodeHandlerError,
	CodeUnknownSkill, CodeNoWorker, CodeProvenance, CodeNotFound,
}

// Refusals counts refused submits by the code of the refusal.
type Refusals struct {
	// ByCode has every code this package defines, zeros included.
	ByCode map[Code]uint64
	// Other counts refusals with a code this package does not define.
	Other uint64
}

// codeCounts counts refusals by code, without a lock.
type codeCounts struct {
	n     [len(refusalCodes)]atomic.Uint64
	other atomic.Uint64
}

func (c *codeCounts) add(code Code) {
	for i, k := range refusalCodes {
		if k == code {
			c.n[i].Add(1)
			return
		}
	}
	c.other.Add(1)
}

func (c *codeCounts) snapshot() Refusals {
	r := Refusals{ByCode: make(map[Code]uint64, len(refusalCodes)), Other: c.other.Load()}
	for i, k := range refusalCodes {
		r.ByCode[k] = c.n[i].Load()
	}
	return r
}

// Refusals returns the submits this worker refused, by code; they add up
// to WorkerStats.Refused.
func (w *Worker) Refusals() Refusals { return w.stats.byCode.snapshot() }

// Refusals returns the refusals workers answered this submitter's submits
// with, by code; they add up to SubmitterStats.Refusals.
func (s *Submitter) Refusals() Refusals { return s.stats.byCode.snapshot() }

// States returns how many of the records this submitter holds are in
// each state, every state included. It reads every record (at most
// MaxRecords) under the lock submits and deliveries take, once per call:
// call it for a metrics scrape, not per task.
func (s *Submitter) States() map[State]int {
	out := make(map[State]int, int(StateLost))
	for st := StateQueued; st <= StateLost; st++ {
		out[st] = 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.recs {
		out[r.data.State]++
	}
	return out
}
