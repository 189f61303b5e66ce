package task

import (
	"context"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// The worker's side of delivery. Each submitter keeps one streaming call
// open to the worker (ResultsService) while it has tasks there; the
// worker pushes on it, in batches and in the order they happened, the
// progress events, "started" notices and results of that submitter's
// tasks. Events and notices are delivered once sent; a result is kept
// until the submitter acknowledges it (after storing it), piggybacked on
// its next submit or in an ack call, and is sent again on the next stream
// if the stream breaks first. A submitter that is away gets its results
// when it opens a stream again, up to ResultRetention.

// subState is what the worker holds for one submitter. Guarded by
// Worker.mu.
type subState struct {
	node    identity.NodeID
	held    int            // jobs held: queued, running, or finished and unacknowledged
	unacked int            // bytes of items queued and results unacknowledged
	out     []*deliverItem // to send, in order
	finals  []*job         // finished jobs whose result is unacknowledged, oldest first
	stream  *resultStream  // the stream serving the submitter; nil if none
	streams int            // streams served so far
	wake    chan struct{}  // wakes the stream when out grows
}

// resultStream is one results call, replaced when the submitter opens
// another.
type resultStream struct {
	replaced chan struct{}
}

// itemSize is what an item is charged against its submitter's
// MaxUnacked: its payload and a little for the rest.
func itemSize(it *deliverItem) int { return len(it.Data) + len(it.Output) + 64 }

// enqueueLocked queues an item for the submitter and wakes its stream.
func (w *Worker) enqueueLocked(s *subState, it *deliverItem) {
	s.out = append(s.out, it)
	s.unacked += itemSize(it)
	w.kickLocked(s)
}

// kickLocked wakes the submitter's stream, if it has one.
func (w *Worker) kickLocked(s *subState) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// serveResults serves one submitter's results stream until it breaks, the
// submitter opens another, the worker stops, or nothing was sent for
// streamIdle (the submitter opens a new one when it needs it).
func (w *Worker) serveResults(ctx context.Context, _ []byte, rw *rpc.ResponseWriter) error {
	from, _ := rpc.CallerID(ctx)
	rs := &resultStream{replaced: make(chan struct{})}
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return rpc.Errorf(rpc.StatusUnavailable, "worker stopped")
	}
	s := w.subLocked(from)
	if s.stream != nil {
		close(s.stream.replaced)
	}
	s.stream = rs
	if s.streams++; s.streams > 1 {
		// What went on an earlier stream (or in a submit reply) and was
		// not acknowledged may be lost: send it again. The first stream
		// finds the results given in submit replies only.
		w.resendLocked(s)
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		if s.stream == rs {
			s.stream = nil
		}
		w.forgetSubLocked(s)
		w.mu.Unlock()
	}()
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	var buf []byte
	for {
		w.mu.Lock()
		batch, size := w.takeLocked(s)
		w.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return ctx.Err()
			case <-rs.replaced:
				return nil
			case <-w.stop:
				return nil
			case <-idle.C:
				return nil
			}
		}
		buf = appendDeliver(buf[:0], batch)
		if err := rw.Send(ctx, buf); err != nil {
			w.stats.deliveryFailures.Add(1)
			return err // unacknowledged results go again on the next stream
		}
		w.stats.delivered.Add(1)
		idle.Reset(streamIdle)
		if cap(buf) > 2*(size+64) && cap(buf) > 64<<10 {
			buf = nil // do not keep a large buffer for small batches
		}
	}
}

// takeLocked takes the next batch to send off the submitter's queue:
// events and notices leave it for good, results stay unacknowledged.
// Items of tasks the worker no longer holds are dropped.
func (w *Worker) takeLocked(s *subState) ([]*deliverItem, int) {
	var batch []*deliverItem
	size, n := 0, 0
	for ; n < len(s.out) && len(batch) < maxBatchItems; n++ {
		it := s.out[n]
		sz := itemSize(it)
		if len(batch) > 0 && size+sz > maxBatchBytes {
			break
		}
		j := w.jobs[it.ID]
		if it.Kind != itemFinal {
			s.unacked -= sz // an event or notice is done with once sent
			if j != nil && it.Kind == itemEvent {
				j.pending--
			}
		}
		if j == nil || j.sub != s || (it.Kind == itemFinal && j.final != it) {
			continue // forgotten or dropped meanwhile
		}
		batch = append(batch, it)
		size += sz
	}
	clear(s.out[:n])
	s.out = s.out[n:]
	if len(s.out) == 0 {
		s.out = nil // let the array go
	}
	return batch, size
}

// resendLocked queues again, ahead of the rest, the results sent on an
// earlier stream that were not acknowledged.
func (w *Worker) resendLocked(s *subState) {
	var again []*deliverItem
	queued := make(map[*deliverItem]bool, len(s.out))
	for _, it := range s.out {
		queued[it] = true
	}
	for _, j := range s.finals {
		if w.jobs[j.id] == j && j.final != nil && !queued[j.final] {
			again = append(again, j.final)
		}
	}
	if len(again) > 0 {
		s.out = append(again, s.out...) // a result stays charged once, to its job
		w.kickLocked(s)
	}
}

// ackLocked handles the acknowledgements of a submitter: the results it
// stored (the worker forgets them), and the tasks it does not hold (the
// worker drops them: cancelled if they still run).
func (w *Worker) ackLocked(from identity.NodeID, acked, unknown []ID) {
	now := time.Now()
	for _, id := range acked {
		if j := w.jobs[id]; j != nil && j.from == from && j.final != nil {
			w.forgetJobLocked(j, now)
		}
	}
	for _, id := range unknown {
		if j := w.jobs[id]; j != nil && j.from == from {
			w.stats.dropped.Add(1)
			w.dropJobLocked(j, now, "the submitter does not hold the task")
		}
	}
}

// dropJobLocked gives up a job nobody will take the result of: a
// finished job is forgotten, an unfinished one is cancelled (its result
// will be refused in turn, and then forgotten). Its queued events go when
// the stream reaches them.
func (w *Worker) dropJobLocked(j *job, now time.Time, why string) {
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
// for their submitter, and the queued items of tasks forgotten meanwhile
// for submitters with no stream to take them.
func (w *Worker) expireLocked(now time.Time) {
	for _, s := range w.subs {
		if s.stream == nil && len(s.out) > 0 {
			kept := s.out[:0]
			for _, it := range s.out {
				if j := w.jobs[it.ID]; j != nil && j.sub == s {
					kept = append(kept, it)
				} else if it.Kind != itemFinal {
					s.unacked -= itemSize(it)
				}
			}
			clear(s.out[len(kept):])
			s.out = kept
		}
		for len(s.finals) > 0 {
			j := s.finals[0]
			if w.jobs[j.id] == j {
				if now.Sub(j.finished) <= w.cfg.ResultRetention {
					break
				}
				w.stats.dropped.Add(1)
				w.log.Warn("task result dropped: its submitter did not take it", "task", j.id, "submitter", s.node)
				w.forgetJobLocked(j, now)
				continue // forgetJobLocked popped it
			}
			s.finals[0] = nil
			s.finals = s.finals[1:]
		}
		w.forgetSubLocked(s)
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
	s := j.sub
	s.held--
	s.unacked -= itemSize(j.final)
	for len(s.finals) > 0 && w.jobs[s.finals[0].id] != s.finals[0] {
		s.finals[0] = nil
		s.finals = s.finals[1:] // forgotten ones at the front go at once
	}
	w.forgetSubLocked(s)
}

// forgetSubLocked forgets a submitter the worker holds nothing for.
func (w *Worker) forgetSubLocked(s *subState) {
	if s.held == 0 && len(s.out) == 0 && s.stream == nil && w.subs[s.node] == s {
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
