package task_test

import (
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
)

// watchdog bounds a wait for the submitter to learn a task's state.
const watchdog = 10 * time.Second

// Refusals are counted by code on both sides, adding up to the totals,
// and the submitter's records are counted by state as they move.
func TestRefusalsByCodeAndStates(t *testing.T) {
	release := make(chan struct{})
	started := make(chan task.ID, 1)
	p := newPair(t, task.WorkerConfig{MaxRunning: 1, QueueSize: 1}, task.SubmitterConfig{}, blocking("block", started, release))
	running := p.submit(t, task.Request{Skill: "block"})
	<-started
	queued := p.submit(t, task.Request{Skill: "block"})
	_, err := p.s.Submit(ctxT(t), task.Request{Skill: "block", Node: p.wn.id()})
	code(t, err, task.CodeResourceExhausted)
	_, err = p.s.Submit(ctxT(t), task.Request{Skill: "nosuch", Node: p.wn.id()})
	code(t, err, task.CodeUnknownSkill)

	for side, r := range map[string]task.Refusals{"worker": p.w.Refusals(), "submitter": p.s.Refusals()} {
		var sum uint64
		for c, n := range r.ByCode {
			sum += n
			want := uint64(0)
			if c == task.CodeResourceExhausted || c == task.CodeUnknownSkill {
				want = 1
			}
			if n != want {
				t.Errorf("%s: %d refusals with %s, want %d", side, n, c, want)
			}
		}
		if len(r.ByCode) != 13 || r.Other != 0 || sum != 2 {
			t.Errorf("%s: %d codes, %d other, %d in all; want 13 codes, 0 other, 2", side, len(r.ByCode), r.Other, sum)
		}
	}
	if w, s := p.w.Stats().Refused, p.s.Stats().Refusals; w != 2 || s != 2 {
		t.Errorf("totals: worker refused %d, submitter met %d refusals; want 2 and 2", w, s)
	}

	states := func() map[task.State]int {
		got := p.s.States()
		if len(got) != 6 {
			t.Fatalf("States has %d states, want all 6: %v", len(got), got)
		}
		total := 0
		for _, n := range got {
			total += n
		}
		if total != p.s.Stats().Records {
			t.Fatalf("States counts %d records, Stats %d", total, p.s.Stats().Records)
		}
		return got
	}
	// The worker tells the submitter a task started a moment after it did.
	eventually(t, watchdog, "the submitter to see one task running, one queued", func() bool {
		got := states()
		return got[task.StateRunning] == 1 && got[task.StateQueued] == 1
	})
	close(release)
	for _, id := range []task.ID{running, queued} {
		if _, err := p.s.Wait(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
	}
	if got := states(); got[task.StateSucceeded] != 2 || got[task.StateRunning]+got[task.StateQueued] != 0 {
		t.Errorf("states after both finished: %v", got)
	}
}
