package task

import (
	"context"
	"fmt"

	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/identity"
)

// pipe batches the submits to one worker: at most maxPipeCalls calls are
// in flight to it, each carrying every item queued when it started (up to
// maxBatchItems and maxBatchBytes) and the acknowledgements waiting for
// the worker. A Submit that finds nothing queued and a call free makes the
// call itself, its task alone: one task costs one call and no goroutine;
// under load the calls grow instead of multiplying. Guarded by
// Submitter.pipesMu.
type pipe struct {
	node    identity.NodeID
	pending []*pendingSubmit
	calls   int
}

// pendingSubmit is one item waiting in a pipe, and where its answer goes.
type pendingSubmit struct {
	item *submitItem
	size int
	done chan submitAnswer
}

type submitAnswer struct {
	v    verdict
	load placement.Load
	err  error
}

// send submits one item to node through its pipe and returns the
// worker's verdict and load. An error means the call failed (the item may
// or may not have reached the worker) or ctx ended.
func (s *Submitter) send(ctx context.Context, node identity.NodeID, it *submitItem) (verdict, placement.Load, error) {
	ps := &pendingSubmit{item: it, size: len(it.Params) + len(it.Skill) + 64 + len(it.Chain)*112, done: make(chan submitAnswer, 1)}
	s.pipesMu.Lock()
	if s.pipesClosed {
		s.pipesMu.Unlock()
		return verdict{}, placement.Load{}, ErrClosed
	}
	p := s.pipes[node]
	if p == nil {
		p = &pipe{node: node}
		s.pipes[node] = p
	}
	switch {
	case p.calls < maxPipeCalls && len(p.pending) == 0:
		// Nothing waits: this goroutine makes the call itself, under its
		// own context (the batch is its item alone), and hands the pipe
		// to a goroutine only if submits queue up meanwhile.
		s.startCallLocked(p)
		acked, unknown := s.takeAcksLocked(node)
		s.pipesMu.Unlock()
		s.call(ctx, p, []*pendingSubmit{ps}, acked, unknown)
		s.pipesMu.Lock()
		if len(p.pending) > 0 {
			go s.runPipe(p)
		} else {
			s.endCallLocked(p)
		}
		s.pipesMu.Unlock()
	case p.calls < maxPipeCalls:
		p.pending = append(p.pending, ps)
		s.startCallLocked(p)
		s.pipesMu.Unlock()
		go s.runPipe(p)
	default:
		p.pending = append(p.pending, ps) // a call in flight takes it next
		s.pipesMu.Unlock()
	}
	select {
	case a := <-ps.done:
		return a.v, a.load, a.err
	case <-ctx.Done():
		return verdict{}, placement.Load{}, ctx.Err()
	}
}

// startCallLocked counts one more call of the pipe, and in the WaitGroup:
// Close waits only after setting pipesClosed under the same lock.
// s.pipesMu must be held.
func (s *Submitter) startCallLocked(p *pipe) {
	p.calls++
	s.wg.Add(1)
}

// endCallLocked ends one of a pipe's calls. s.pipesMu must be held.
func (s *Submitter) endCallLocked(p *pipe) {
	if p.calls--; p.calls == 0 && len(p.pending) == 0 {
		delete(s.pipes, p.node)
	}
	s.wg.Done()
}

// runPipe sends a pipe's pending items in batches until none is left,
// then ends its call.
func (s *Submitter) runPipe(p *pipe) {
	for {
		s.pipesMu.Lock()
		n, size := 0, 0
		for n < len(p.pending) && n < maxBatchItems && (n == 0 || size+p.pending[n].size <= maxBatchBytes) {
			size += p.pending[n].size
			n++
		}
		if n == 0 {
			s.endCallLocked(p)
			s.pipesMu.Unlock()
			return
		}
		batch := make([]*pendingSubmit, n)
		copy(batch, p.pending)
		clear(p.pending[:n])
		p.pending = p.pending[n:]
		acked, unknown := s.takeAcksLocked(p.node) // they ride along
		s.pipesMu.Unlock()
		s.call(s.ctx, p, batch, acked, unknown)
	}
}

// call sends one batch with the acknowledgements that ride along, within
// ctx and CallTimeout, and answers each item.
func (s *Submitter) call(ctx context.Context, p *pipe, batch []*pendingSubmit, acked, unknown []ID) {
	items := make([]*submitItem, len(batch))
	size := 16 + IDSize*(len(acked)+len(unknown))
	for i, ps := range batch {
		items[i] = ps.item
		size += ps.size
	}
	stopped := ctx != s.ctx
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	if stopped { // a Submit's own context: Close must end it too
		stop := context.AfterFunc(s.ctx, cancel)
		defer stop()
	}
	resp, err := s.cli.Call(ctx, p.node, WorkerService, appendSubmit(make([]byte, 0, size), items, acked, unknown))
	cancel()
	if err != nil {
		s.queueAcks(p.node, acked, unknown) // for the next call
	}
	var r submitReply
	if err == nil {
		if r, err = parseSubmitReply(resp); err == nil && len(r.Verdicts) != len(batch) {
			err = fmt.Errorf("%w: %d verdicts for %d tasks", ErrMalformed, len(r.Verdicts), len(batch))
		}
	}
	for i, ps := range batch {
		a := submitAnswer{load: r.Load, err: err}
		if err == nil {
			a.v = r.Verdicts[i]
			if a.v.ID != ps.item.ID {
				a.err = fmt.Errorf("%w: verdict %d is for another task", ErrMalformed, i)
			}
		}
		ps.done <- a
	}
}
