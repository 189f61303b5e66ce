package task

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// The submitter's side of delivery: per worker it has tasks on, one
// goroutine keeps a results stream open (ResultsService) and applies the
// chunks the worker pushes; the results it stored are acknowledged in the
// next submit to that worker, or after ackDelay in an ack call of their
// own. A stream that breaks is opened again, with back-off, while the
// worker holds unfinished tasks of this submitter; receiverLinger after
// the last one ended, the stream is closed.

// receiver is the goroutine receiving one worker's results.
type receiver struct {
	node   identity.NodeID
	cancel context.CancelFunc
	// idleSince is when the node was last left without open tasks; zero
	// while it has some.
	idleSince time.Time
	// linger ends the receiver once the node was idle receiverLinger. It
	// is armed on the first idle and re-armed from there, not per task.
	linger *time.Timer
}

// ensureReceiverLocked makes sure a receiver runs for node, and that it
// does not linger to its end. s.mu must be held.
func (s *Submitter) ensureReceiverLocked(node identity.NodeID) {
	if s.closed {
		return
	}
	if rc := s.recv[node]; rc != nil {
		rc.idleSince = time.Time{}
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	rc := &receiver{node: node, cancel: cancel}
	s.recv[node] = rc
	s.wg.Add(1) // under mu, and closed is false: Close waits after setting it
	go s.receive(ctx, rc)
}

// idleLocked starts the linger of node's receiver when the submitter has
// no unfinished task there. s.mu must be held.
func (s *Submitter) idleLocked(node identity.NodeID) {
	rc := s.recv[node]
	if rc == nil || !rc.idleSince.IsZero() || len(s.open[node]) > 0 {
		return
	}
	rc.idleSince = time.Now()
	if rc.linger == nil {
		rc.linger = time.AfterFunc(receiverLinger, func() { s.lingered(rc) })
	}
}

// lingered ends rc if its node has been idle receiverLinger, or waits for
// the rest of it.
func (s *Submitter) lingered(rc *receiver) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch idle := time.Since(rc.idleSince); {
	case s.recv[rc.node] != rc:
	case rc.idleSince.IsZero() || len(s.open[rc.node]) > 0:
		rc.idleSince, rc.linger = time.Time{}, nil // busy: the next idle arms it again
	case idle >= receiverLinger:
		rc.cancel()
	default:
		rc.linger.Reset(receiverLinger - idle)
	}
}

// receive keeps node's results stream open and applies what it carries,
// until ctx ends.
func (s *Submitter) receive(ctx context.Context, rc *receiver) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		if s.recv[rc.node] == rc {
			delete(s.recv, rc.node)
		}
		if rc.linger != nil {
			rc.linger.Stop()
		}
		s.mu.Unlock()
		rc.cancel()
	}()
	var backoff time.Duration
	for ctx.Err() == nil {
		st, err := s.cli.Stream(ctx, rc.node, ResultsService, nil)
		if err == nil {
			backoff = 0
			for {
				chunk, err := st.Recv()
				if err != nil {
					break
				}
				if err := s.receiveChunk(rc.node, chunk); err != nil {
					s.log.Warn("task: a worker sent a malformed results chunk", "worker", rc.node, "err", err)
					break
				}
			}
			st.Close()
		}
		if ctx.Err() != nil {
			return
		}
		backoff = min(max(2*backoff, streamBackoffMin), streamBackoffMax)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// receiveChunk applies one chunk of a worker's results stream, stores
// what changed, and queues the acknowledgements.
func (s *Submitter) receiveChunk(node identity.NodeID, chunk []byte) error {
	if s.beforeDelivery != nil {
		s.beforeDelivery()
	}
	if len(chunk) == 0 || chunk[0] != opDeliver {
		return fmt.Errorf("%w: not a results chunk", ErrMalformed)
	}
	items, err := parseDeliver(chunk[1:])
	if err != nil {
		return err
	}
	now := time.Now()
	var acked, unknown, changed []ID
	s.mu.Lock()
	for i := range items {
		it := &items[i]
		r := s.recs[it.ID]
		if r == nil || r.data.Node != node {
			if !slices.Contains(unknown, it.ID) {
				unknown = append(unknown, it.ID)
			}
			continue
		}
		if s.applyLocked(r, it, node, now) && !slices.Contains(changed, it.ID) {
			changed = append(changed, it.ID)
		}
		if it.Kind == itemFinal {
			acked = append(acked, it.ID)
		}
	}
	s.mu.Unlock()
	s.stats.delivered.Add(uint64(len(items)))
	s.stats.unknown.Add(uint64(len(unknown)))
	// The stream goes on while the commit runs: the chunks that arrive
	// meanwhile join the next commit.
	s.store.persistThen(changed, func(err error) {
		if err != nil {
			// Not acknowledged: the worker keeps the results, and sends
			// them again on the next stream.
			s.log.Error("task: storing delivered results failed", "err", err)
			acked = nil
		}
		s.queueAcks(node, acked, unknown)
	})
	return nil
}

// ackState holds the acknowledgements waiting for one worker. Guarded by
// Submitter.pipesMu.
type ackState struct {
	acked, unknown []ID
	timer          *time.Timer // sends them in a call of their own
	failures       int
}

// queueAcks adds acknowledgements for node, to go with its next submit or
// after ackDelay.
func (s *Submitter) queueAcks(node identity.NodeID, acked, unknown []ID) {
	if len(acked) == 0 && len(unknown) == 0 {
		return
	}
	s.pipesMu.Lock()
	defer s.pipesMu.Unlock()
	if s.pipesClosed {
		return
	}
	a := s.acks[node]
	if a == nil {
		a = &ackState{}
		s.acks[node] = a
	}
	// Bounded: the worker sends again what is never acknowledged.
	a.acked = appendBounded(a.acked, acked, maxAcks)
	a.unknown = appendBounded(a.unknown, unknown, maxAcks)
	s.armAcksLocked(node, a, ackDelay)
}

// appendBounded appends add to ids, dropping the oldest beyond max.
func appendBounded(ids, add []ID, max int) []ID {
	ids = append(ids, add...)
	if over := len(ids) - max; over > 0 {
		ids = slices.Delete(ids, 0, over)
	}
	return ids
}

// armAcksLocked makes sure a's timer will send them after d. s.pipesMu
// must be held.
func (s *Submitter) armAcksLocked(node identity.NodeID, a *ackState, d time.Duration) {
	if a.timer != nil {
		return
	}
	s.wg.Add(1) // Close stops the timer, or the callback calls Done
	a.timer = time.AfterFunc(d, func() {
		defer s.wg.Done()
		s.flushAcks(node)
	})
}

// takeAcksLocked takes the acknowledgements waiting for node, as many as
// one message carries. s.pipesMu must be held.
func (s *Submitter) takeAcksLocked(node identity.NodeID) (acked, unknown []ID) {
	a := s.acks[node]
	if a == nil {
		return nil, nil
	}
	n, m := min(len(a.acked), maxSyncIDs), min(len(a.unknown), maxSyncIDs)
	acked, unknown = a.acked[:n:n], a.unknown[:m:m]
	a.acked, a.unknown = a.acked[n:], a.unknown[m:]
	if len(a.acked) == 0 && len(a.unknown) == 0 && a.timer == nil {
		delete(s.acks, node) // else the timer's flush finds it empty and deletes it
	}
	return acked, unknown
}

// flushAcks sends node's waiting acknowledgements in a call of their own.
func (s *Submitter) flushAcks(node identity.NodeID) {
	s.pipesMu.Lock()
	a := s.acks[node]
	if a == nil || s.pipesClosed {
		s.pipesMu.Unlock()
		return
	}
	a.timer = nil
	acked, unknown := s.takeAcksLocked(node)
	s.pipesMu.Unlock()
	if len(acked) == 0 && len(unknown) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.CallTimeout)
	_, err := s.cli.Call(ctx, node, WorkerService, appendAck(nil, acked, unknown))
	cancel()
	s.pipesMu.Lock()
	defer s.pipesMu.Unlock()
	a = s.acks[node]
	if a == nil {
		a = &ackState{}
		s.acks[node] = a
	}
	if err == nil {
		a.failures = 0
		if len(a.acked)+len(a.unknown) > 0 {
			s.armAcksLocked(node, a, 0)
		} else {
			delete(s.acks, node)
		}
		return
	}
	// Keep them and try again later; after maxAckFailures the worker is
	// gone for good, and sends the results again if it comes back.
	if a.failures++; a.failures >= maxAckFailures || s.pipesClosed {
		delete(s.acks, node)
		return
	}
	a.acked = appendBounded(acked, a.acked, maxAcks)
	a.unknown = appendBounded(unknown, a.unknown, maxAcks)
	s.armAcksLocked(node, a, min(ackDelay<<a.failures, streamBackoffMax))
}

// stopAcksLocked stops every ack timer, for Close. s.pipesMu must be held.
func (s *Submitter) stopAcksLocked() {
	for node, a := range s.acks {
		if a.timer != nil && a.timer.Stop() {
			s.wg.Done()
		}
		delete(s.acks, node)
	}
}
