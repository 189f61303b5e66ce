package task

import (
	"context"
	"time"
)

// The worker's side of delivery: per submitter, one queue of events and
// results in the order they happened, sent in batches by one goroutine
// that runs while the queue is not empty. A batch is acknowledged as a
// whole by the submitter's reply (after it stored the results); a failed
// call is retried with back-off, so results survive a submitter that is
// away for a while (up to ResultRetention), and the submitter's own sync
// cuts the back-off short when it comes back.

// itemSize is what an item is charged against its submitter's
// MaxUnacked: its payload and a little for the rest.
func itemSize(it *deliverItem) int { return len(it.Data) + len(it.Output) + 64 }

// enqueueLocked queues an item for the submitter and makes sure a sender
// runs.
func (w *Worker) enqueueLocked(s *subState, it *deliverItem) {
	s.out = append(s.out, it)
	s.unacked += itemSize(it)
	w.kickLocked(s)
}

// kickLocked starts the submitter's sender if it has something to send,
// or cuts its back-off short if it runs.
func (w *Worker) kickLocked(s *subState) {
	switch {
	case s.sending:
		select {
		case s.wake <- struct{}{}:
		default:
		}
	case len(s.out) > 0 && !w.stopped:
		s.sending = true
		w.workers.Add(1)
		go w.send(s)
	}
}

// send delivers a submitter's queue until it is empty.
func (w *Worker) send(s *subState) {
	defer w.workers.Done()
	var backoff time.Duration
	for {
		w.mu.Lock()
		if backoff > 0 {
			w.expireLocked(s, time.Now())
		}
		if len(s.out) == 0 || w.stopped {
			s.sending = false
			w.forgetSubLocked(s)
			w.mu.Unlock()
			return
		}
		n, size := 0, 0
		for n < len(s.out) && n < maxBatchItems && (n == 0 || size+itemSize(s.out[n]) <= maxBatchBytes) {
			size += itemSize(s.out[n])
			n++
		}
		// Only this goroutine removes items, so s.out[:n] stays put
		// while the call is out.
		batch := s.out[:n:n]
		w.mu.Unlock()

		ctx, cancel := context.WithTimeout(w.ctx, w.cfg.CallTimeout)
		resp, err := w.cli.Call(ctx, s.node, SubmitterService, appendDeliver(make([]byte, 0, size+16), batch))
		cancel()
		var unknown []ID
		if err == nil {
			unknown, err = parseDeliverReply(resp)
		}
		if err != nil {
			w.stats.deliveryFailures.Add(1)
			w.log.Debug("task delivery failed", "submitter", s.node, "items", n, "err", err)
			backoff = min(max(2*backoff, deliverBackoffMin), deliverBackoffMax)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.wake:
				backoff = deliverBackoffMin
			case <-w.ctx.Done():
			}
			t.Stop()
			continue
		}
		backoff = 0
		w.stats.delivered.Add(1)
		w.mu.Lock()
		w.ackLocked(s, n, unknown)
		w.mu.Unlock()
	}
}

// ackLocked removes the first n items of the queue, acknowledged, and
// forgets the tasks whose results they were; the tasks in unknown, which
// the submitter does not hold, are dropped.
func (w *Worker) ackLocked(s *subState, n int, unknown []ID) {
	now := time.Now()
	for _, it := range s.out[:n] {
		s.unacked -= itemSize(it)
		j := w.jobs[it.ID]
		if j == nil || j.sub != s {
			continue
		}
		switch it.Kind {
		case itemEvent:
			j.pending--
		case itemFinal:
			w.forgetJobLocked(j, now)
		}
	}
	clear(s.out[:n])
	s.out = s.out[n:]
	if len(s.out) == 0 {
		s.out = nil // let the array go
	}
	for _, id := range unknown {
		if j := w.jobs[id]; j != nil && j.sub == s {
			w.stats.dropped.Add(1)
			w.dropJobLocked(j, now, "the submitter does not hold the task")
		}
	}
}

// dropJobLocked gives up a job nobody will take the result of: its
// undelivered items go, a finished job is forgotten, an unfinished one is
// cancelled (its result will be refused in turn, and then forgotten).
func (w *Worker) dropJobLocked(j *job, now time.Time, why string) {
	s := j.sub
	kept := s.out[:0]
	for _, it := range s.out {
		if it.ID == j.id {
			s.unacked -= itemSize(it)
			if it.Kind == itemEvent {
				j.pending--
			}
			continue
		}
		kept = append(kept, it)
	}
	clear(s.out[len(kept):])
	s.out = kept
	switch j.state {
	case StateQueued:
		w.finishLocked(j, w.failure(j, CodeCancelled, why))
	case StateRunning:
		w.stopLocked(j, why)
	default:
		w.forgetJobLocked(j, now)
	}
}

// expireLocked drops the results that waited longer than ResultRetention
// for their submitter, with the events before them.
func (w *Worker) expireLocked(s *subState, now time.Time) {
	var old []*job
	for _, it := range s.out {
		if j := w.jobs[it.ID]; it.Kind == itemFinal && j != nil && now.Sub(j.finished) > w.cfg.ResultRetention {
			old = append(old, j)
		}
	}
	for _, j := range old {
		w.stats.dropped.Add(1)
		w.log.Warn("task result dropped: its submitter did not take it", "task", j.id, "submitter", s.node)
		w.dropJobLocked(j, now, "")
	}
}

// forgetJobLocked forgets a finished job whose result was taken (or given
// up), remembering its id so a late duplicate is not run again.
func (w *Worker) forgetJobLocked(j *job, now time.Time) {
	if w.jobs[j.id] != j {
		return
	}
	delete(w.jobs, j.id)
	w.done.add(j.id, now)
	j.sub.held--
	w.forgetSubLocked(j.sub)
}

// forgetSubLocked forgets a submitter the worker holds nothing for.
func (w *Worker) forgetSubLocked(s *subState) {
	if s.held == 0 && len(s.out) == 0 && !s.sending && w.subs[s.node] == s {
		delete(w.subs, s.node)
	}
}

// tombstoneSet remembers the ids of the last tasks forgotten, up to a
// count and an age: a ring of ids and a map for lookups.
type tombstoneSet struct {
	ring []tombstone
	next int
	ids  map[ID]time.Time
}

type tombstone struct {
	id ID
	at time.Time
}

func newTombstoneSet(n int) tombstoneSet {
	return tombstoneSet{ring: make([]tombstone, 0, n), ids: make(map[ID]time.Time)}
}

func (t *tombstoneSet) add(id ID, now time.Time) {
	if len(t.ring) < cap(t.ring) {
		t.ring = append(t.ring, tombstone{id, now})
	} else {
		old := t.ring[t.next]
		if at, ok := t.ids[old.id]; ok && at.Equal(old.at) {
			delete(t.ids, old.id)
		}
		t.ring[t.next] = tombstone{id, now}
		t.next = (t.next + 1) % len(t.ring)
	}
	t.ids[id] = now
}

func (t *tombstoneSet) has(id ID, now time.Time) bool {
	at, ok := t.ids[id]
	return ok && now.Sub(at) < tombstoneAge
}
