package task

import (
	"context"
	"fmt"

	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/identity"
)

// pipe batches the submits to one worker: a Submit queues its item and
// waits; at most maxPipeCalls calls are in flight to the worker, each
// carrying every item queued when it started (up to maxBatchItems and
// maxBatchBytes). One task alone goes at once in a call of its own; under
// load the calls grow instead of multiplying. Guarded by
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
	p.pending = append(p.pending, ps)
	start := p.calls < maxPipeCalls
	if start {
		p.calls++
		s.wg.Add(1) // under pipesMu: Close waits only after setting pipesClosed
	}
	s.pipesMu.Unlock()
	if start {
		go s.runPipe(p)
	}
	select {
	case a := <-ps.done:
		return a.v, a.load, a.err
	case <-ctx.Done():
		return verdict{}, placement.Load{}, ctx.Err()
	}
}

// runPipe sends a pipe's pending items in batches until none is left.
func (s *Submitter) runPipe(p *pipe) {
	defer s.wg.Done()
	for {
		s.pipesMu.Lock()
		n, size := 0, 0
		for n < len(p.pending) && n < maxBatchItems && (n == 0 || size+p.pending[n].size <= maxBatchBytes) {
			size += p.pending[n].size
			n++
		}
		if n == 0 {
			p.calls--
			if p.calls == 0 {
				delete(s.pipes, p.node)
			}
			s.pipesMu.Unlock()
			return
		}
		batch := make([]*pendingSubmit, n)
		copy(batch, p.pending)
		clear(p.pending[:n])
		p.pending = p.pending[n:]
		s.pipesMu.Unlock()

		items := make([]*submitItem, n)
		for i, ps := range batch {
			items[i] = ps.item
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.CallTimeout)
		resp, err := s.cli.Call(ctx, p.node, WorkerService, appendSubmit(make([]byte, 0, size+16), items))
		cancel()
		var r submitReply
		if err == nil {
			if r, err = parseSubmitReply(resp); err == nil && len(r.Verdicts) != n {
				err = fmt.Errorf("%w: %d verdicts for %d tasks", ErrMalformed, len(r.Verdicts), n)
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
}
