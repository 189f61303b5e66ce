package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// maxSyncMisses is how many syncs in a row a worker may fail to answer
// before its tasks are marked lost.
const maxSyncMisses = 3

// maxCatalogs bounds the catalogs a submitter caches.
const maxCatalogs = 256

// applyLocked applies one delivered item to its record and reports
// whether the record must be stored.
func (s *Submitter) applyLocked(r *record, it *deliverItem, from identity.NodeID, now time.Time) bool {
	d := &r.data
	done := d.State.Final() && d.State != StateLost
	switch it.Kind {
	case itemStarted:
		if d.State == StateQueued {
			d.State = StateRunning
			s.changedLocked(r, now)
			return true
		}
	case itemEvent:
		if done || it.Seq <= r.lastSeq {
			return false // a duplicate
		}
		r.lastSeq = it.Seq
		d.Events++
		r.events = append(r.events, Event{Seq: it.Seq, Name: it.Name, Data: slices.Clone(it.Data), Time: now})
		if len(r.events) > s.cfg.MaxEvents {
			n := len(r.events) - s.cfg.MaxEvents
			s.stats.eventsDropped.Add(uint64(n))
			r.events = slices.Delete(r.events, 0, n)
		}
		started := d.State == StateQueued
		if started {
			d.State = StateRunning
		}
		s.changedLocked(r, now)
		return started
	case itemFinal:
		if done {
			return false // a duplicate
		}
		if it.Unstarted {
			s.replaceLocked(r, StateFailed, &Error{Code: it.Code, Task: d.ID, Node: from, Message: it.Message}, true)
			return true
		}
		wasFinal := d.State.Final()
		switch {
		case it.State == StateSucceeded && !d.Deadline.IsZero() && now.After(d.Deadline):
			s.stats.late.Add(1)
			d.State = StateFailed
			d.Error = &Error{Code: CodeLateResult, Task: d.ID, Node: from,
				Message: fmt.Sprintf("the result arrived %v after the deadline", now.Sub(d.Deadline).Round(time.Millisecond))}
		case it.State == StateSucceeded:
			d.State, d.Status, d.Output, d.Error = StateSucceeded, it.Status, slices.Clone(it.Output), nil
		default:
			d.State = it.State
			d.Error = &Error{Code: it.Code, Task: d.ID, Node: from, Message: it.Message}
		}
		s.changedLocked(r, now)
		if !wasFinal && !r.hidden {
			s.finishedLocked(r)
		}
		return true
	}
	return false
}

// watchPeers marks lost the tasks of workers whose session goes down.
func (s *Submitter) watchPeers() {
	defer s.wg.Done()
	for ev := range s.m.WatchPeers(s.ctx) {
		if ev.Up {
			continue
		}
		s.mu.Lock()
		for _, r := range s.open[ev.Peer] {
			s.lostLocked(r, "the session with the worker went down")
		}
		s.mu.Unlock()
	}
}

// lostLocked marks a record lost, or places it again if it is idempotent.
func (s *Submitter) lostLocked(r *record, why string) {
	s.stats.lost.Add(1)
	s.log.Info("task lost", "id", r.data.ID, "worker", r.data.Node, "why", why)
	s.replaceLocked(r, StateLost, &Error{Code: CodeLost, Task: r.data.ID, Node: r.data.Node, Message: why}, false)
}

// replaceLocked places a record again on a node not tried yet when it may
// run again (idempotent, or force: it never started) and attempts are
// left; otherwise it ends the record with state and why.
func (s *Submitter) replaceLocked(r *record, state State, why *Error, force bool) {
	d := &r.data
	s.unopenLocked(r)
	if !(d.Idempotent || force) || d.Pinned || d.Attempts >= s.cfg.MaxAttempts || s.closed || r.hidden {
		s.endLocked(r, state, why)
		return
	}
	d.Node = identity.NodeID{} // no node's deliveries count until it is placed again
	d.State = StateQueued
	r.placing = true
	s.changedLocked(r, time.Now())
	s.store.persistAsync(d.ID)
	tried := slices.Clone(d.Tried)
	s.wg.Add(1) // under mu, and closed is false: Close waits after setting it
	go s.replace(r, tried, state, why)
}

// replace places a record again, at most maxRedispatch at once.
func (s *Submitter) replace(r *record, tried []identity.NodeID, state State, why *Error) {
	defer s.wg.Done()
	select {
	case s.redispatch <- struct{}{}:
	case <-s.ctx.Done():
		return // closing: the record stays queued in the store
	}
	defer func() { <-s.redispatch }()
	where, _ := capability.ParseFilter(r.data.Where) // the text of a filter that parsed
	if r.data.Where == "" {
		where = capability.Filter{}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.CallTimeout)
	inlined, err := s.place(ctx, r, identity.NodeID{}, where, tried)
	cancel()
	s.mu.Lock()
	r.placing = false
	if err == nil {
		s.stats.replaced.Add(1)
		s.changedLocked(r, time.Now())
		id, node := r.data.ID, r.data.Node
		s.mu.Unlock()
		s.store.persistThen([]ID{id}, func(err error) {
			if err == nil && inlined {
				s.queueAcks(node, []ID{id}, nil)
			}
		})
		return
	}
	defer s.mu.Unlock()
	if !r.data.State.Final() {
		r.data.Node = why.Node
		e := *why
		e.Message += "; placing it again failed: " + err.Error()
		s.endLocked(r, state, &e)
	}
}

// loop runs the sweeps every sweepInterval and the syncs every
// SyncInterval (at once on start when records were loaded).
func (s *Submitter) loop() {
	defer s.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	nextSync := time.Now()
	for {
		now := time.Now()
		s.sweep(now)
		if !now.Before(nextSync) {
			s.syncAll()
			nextSync = time.Now().Add(s.cfg.SyncInterval)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep drops records past their retention and fails tasks whose worker
// did not report by their deadline.
func (s *Submitter) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.finals) > 0 {
		id := s.finals[0]
		if r := s.recs[id]; r != nil && r.data.State.Final() {
			if now.Sub(r.data.Updated) < s.cfg.Retention {
				break
			}
			delete(s.recs, id)
			s.store.persistAsync(id)
		}
		s.finals = s.finals[1:]
	}
	for _, m := range s.open {
		for _, r := range m {
			if dl := r.data.Deadline; !dl.IsZero() && now.Sub(dl) > deadlineGrace {
				s.endLocked(r, StateFailed, &Error{Code: CodeTimeout, Task: r.data.ID, Node: r.data.Node, Message: "no result from the worker by the deadline"})
			}
		}
	}
}

// syncAll asks every worker holding unfinished tasks what became of them.
func (s *Submitter) syncAll() {
	s.mu.Lock()
	byNode := make(map[identity.NodeID][]ID, len(s.open))
	for node, m := range s.open {
		for id := range m {
			byNode[node] = append(byNode[node], id)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for node, ids := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chunk := range slices.Chunk(ids, maxSyncIDs) {
				s.sync(node, chunk)
			}
		}()
	}
	wg.Wait()
}

// sync asks one worker about some of its tasks.
func (s *Submitter) sync(node identity.NodeID, ids []ID) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.CallTimeout)
	resp, err := s.cli.Call(ctx, node, WorkerService, appendIDs(nil, opSync, ids))
	cancel()
	var states []State
	if err == nil {
		if states, err = parseStates(resp); err == nil && len(states) != len(ids) {
			err = fmt.Errorf("%w: %d states for %d tasks", ErrMalformed, len(states), len(ids))
		}
	}
	if s.ctx.Err() != nil {
		return
	}
	now := time.Now()
	var changed []ID
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, id := range ids {
		r := s.open[node][id]
		if r == nil {
			continue // finished meanwhile
		}
		if err != nil {
			if r.syncMiss++; r.syncMiss >= maxSyncMisses {
				s.lostLocked(r, fmt.Sprintf("the worker did not answer %d syncs: %v", r.syncMiss, err))
			}
			continue
		}
		r.syncMiss = 0
		switch st := states[i]; {
		case st == 0:
			s.lostLocked(r, "the worker no longer holds the task (did it restart?)")
		case st == StateRunning && r.data.State == StateQueued:
			r.data.State = StateRunning
			s.changedLocked(r, now)
			changed = append(changed, id)
		}
	}
	s.store.persistAsync(changed...)
}

// Catalog returns the skills of worker node, as its catalog describes
// them (versions, schemas, statuses). It is cached by the catalog hash
// the worker advertises and fetched again when the hash changes.
func (s *Submitter) Catalog(ctx context.Context, node identity.NodeID) ([]SkillInfo, error) {
	var hash string
	if n, ok := s.m.Capabilities().Index().Lookup(node); ok {
		hash = n.Set.Metadata[CatalogKey]
	}
	s.mu.Lock()
	c, ok := s.catalog[node]
	s.mu.Unlock()
	if ok && hash != "" && c.hash == hash {
		return slices.Clone(c.skills), nil
	}
	resp, err := s.cli.Call(ctx, node, WorkerService, []byte{opCatalog})
	if err != nil {
		return nil, err
	}
	h, raw, err := parseCatalog(resp)
	if err != nil {
		return nil, err
	}
	var skills []SkillInfo
	if err := json.Unmarshal(raw, &skills); err != nil {
		return nil, fmt.Errorf("%w: catalog: %v", ErrMalformed, err)
	}
	s.mu.Lock()
	if len(s.catalog) >= maxCatalogs {
		clear(s.catalog)
	}
	if !s.closed {
		s.catalog[node] = cachedCatalog{hash: h, skills: skills}
	}
	s.mu.Unlock()
	return slices.Clone(skills), nil
}

// Command sends the custom command name with args to worker node (see
// Worker.HandleCommand) and returns its reply. A failure of the command
// is an *Error with the handler's code (NOT_FOUND for a command the
// worker does not know); a failure of the call is the *rpc.Error.
func Command(ctx context.Context, c *rpc.Client, node identity.NodeID, name string, args []byte) ([]byte, error) {
	if !validName(name, maxLabel) {
		return nil, fmt.Errorf("task: invalid command name %q", name)
	}
	resp, err := c.Call(ctx, node, WorkerService, appendCommand(nil, name, args))
	var re *rpc.Error
	if errors.As(err, &re) && re.Kind == rpc.KindServer && re.Status == statusTaskError {
		code, msg, _ := strings.Cut(re.Message, ": ")
		if !validCode(code) {
			code = string(CodeHandlerError)
		}
		return nil, &Error{Code: Code(code), Node: node, Message: msg}
	}
	return resp, err
}
