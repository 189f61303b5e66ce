package main

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/identity"
)

// The local worker API: a process on the node's machine, in any language,
// serves skills through the control socket. On one connection it calls
// the streaming method worker.serve with its skills; the node registers
// them and pushes each task to it as an intermediate result, and a
// "cancel" when the task's context ends. On a second connection (the
// first is busy with worker.serve) it posts progress with worker.event
// and the outcome with worker.result. When the serving connection
// closes, the skills are withdrawn and the tasks it held fail.
// docs/TASKS.md describes the messages; examples/python/worker.py is a
// client.

// Bounds of the local worker API.
const (
	// maxAPISkills bounds the skills one connection serves.
	maxAPISkills = 16
)

// workerAPI is the node's side of the local worker API.
type workerAPI struct {
	w *task.Worker

	mu      sync.Mutex // guards pending
	pending map[task.ID]*apiTask
}

func newWorkerAPI(w *task.Worker) *workerAPI {
	return &workerAPI{w: w, pending: make(map[task.ID]*apiTask)}
}

// apiSession is one worker.serve connection.
type apiSession struct {
	more   func(any) error
	mu     sync.Mutex // serialises more, guards closed
	closed bool
	gone   chan struct{} // closed when the connection ends
}

// push sends a message on the session's connection, unless it ended.
func (s *apiSession) push(v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSessionGone
	}
	return s.more(v)
}

var errSessionGone = task.Errorf(task.CodeDependencyMissing, "the local worker disconnected")

// apiTask is a task handed to a local worker, waiting for its outcome.
type apiTask struct {
	t    *task.Task
	sess *apiSession
	done chan apiOutcome
}

type apiOutcome struct {
	res task.Result
	err error
}

// workerServeParams are the parameters of "worker.serve": the skills as
// a worker's catalog describes them.
type workerServeParams struct {
	Skills []task.SkillInfo `json:"skills"`
}

// apiMessage is an intermediate result of worker.serve: "ready" once the
// skills are registered, "task" for each task, "cancel" when a task's
// context ends.
type apiMessage struct {
	Type     string          `json:"type"`
	Skills   []string        `json:"skills,omitempty"` // ready
	ID       task.ID         `json:"id,omitzero"`      // task, cancel
	Skill    string          `json:"skill,omitempty"`
	Params   json.RawMessage `json:"params,omitempty"`
	Priority int             `json:"priority,omitempty"`
	Deadline time.Time       `json:"deadline,omitzero"`
	Origin   identity.NodeID `json:"origin,omitzero"`
	From     identity.NodeID `json:"from,omitzero"`
	Reason   string          `json:"reason,omitempty"` // cancel
}

// workerResultParams are the parameters of "worker.result": a status and
// output, or an error with a code.
type workerResultParams struct {
	ID     string          `json:"id"`
	Status string          `json:"status"`
	Output json.RawMessage `json:"output"`
	Error  *task.Error     `json:"error"`
}

// workerEventParams are the parameters of "worker.event".
type workerEventParams struct {
	ID   string          `json:"id"`
	Name string          `json:"name"`
	Data json.RawMessage `json:"data"`
}

// serve registers a local worker's skills and pushes their tasks to it
// until its connection ends.
func (api *workerAPI) serve(ctx context.Context, raw json.RawMessage, more func(any) error) (any, error) {
	var p workerServeParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	if len(p.Skills) == 0 || len(p.Skills) > maxAPISkills {
		return nil, errorf(codeBadRequest, "%d skills: serve 1 to %d per connection", len(p.Skills), maxAPISkills)
	}
	sess := &apiSession{more: more, gone: make(chan struct{})}
	var names []string
	defer func() {
		for _, name := range names {
			api.w.Unregister(name)
		}
		sess.mu.Lock()
		sess.closed = true
		sess.mu.Unlock()
		close(sess.gone)
	}()
	for _, s := range p.Skills {
		sk := task.Skill{
			Name: s.Name, Version: s.Version, Description: s.Description,
			Input: s.Input, Output: s.Output, Events: s.Events, Statuses: s.Statuses,
			Concurrency: s.Concurrency, Handler: api.handler(sess),
		}
		if err := api.w.Register(sk); err != nil {
			return nil, errorf(codeBadRequest, "skill %q: %v", s.Name, err)
		}
		names = append(names, s.Name)
	}
	if err := sess.push(apiMessage{Type: "ready", Skills: names}); err != nil {
		return nil, err
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// handler is the task handler of a local worker's skills: it pushes the
// task to the worker and waits for worker.result.
func (api *workerAPI) handler(sess *apiSession) task.Handler {
	return func(ctx context.Context, t *task.Task) (task.Result, error) {
		at := &apiTask{t: t, sess: sess, done: make(chan apiOutcome, 1)}
		api.mu.Lock()
		api.pending[t.ID] = at
		api.mu.Unlock()
		defer func() {
			api.mu.Lock()
			delete(api.pending, t.ID)
			api.mu.Unlock()
		}()
		msg := apiMessage{Type: "task", ID: t.ID, Skill: t.Skill, Params: t.Params, Priority: t.Priority, Deadline: t.Deadline, Origin: t.Origin, From: t.From}
		if err := sess.push(msg); err != nil {
			return task.Result{}, errSessionGone
		}
		select {
		case o := <-at.done:
			return o.res, o.err
		case <-ctx.Done():
			sess.push(apiMessage{Type: "cancel", ID: t.ID, Reason: context.Cause(ctx).Error()})
			return task.Result{}, ctx.Err()
		case <-sess.gone:
			return task.Result{}, errSessionGone
		}
	}
}

// lookup returns the pending task named by a local worker.
func (api *workerAPI) lookup(id string) (*apiTask, error) {
	tid, err := task.ParseID(id)
	if err != nil {
		return nil, errorf(codeBadRequest, "%v", err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	at := api.pending[tid]
	if at == nil {
		return nil, errorf(codeTaskPrefix+"not_found", "no task %s is waiting for a local worker (finished, cancelled, or never pushed)", id)
	}
	return at, nil
}

// result completes a pushed task with the local worker's outcome.
func (api *workerAPI) result(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p workerResultParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	at, err := api.lookup(p.ID)
	if err != nil {
		return nil, err
	}
	o := apiOutcome{res: task.Result{Status: p.Status, Output: p.Output}}
	if p.Error != nil {
		if p.Error.Code == "" {
			p.Error.Code = task.CodeHandlerError
		}
		o = apiOutcome{err: task.Errorf(p.Error.Code, "%s", p.Error.Message)}
	}
	select {
	case at.done <- o:
	default:
		return nil, errorf(codeBadRequest, "task %s already has a result", p.ID)
	}
	return struct{}{}, nil
}

// event emits a progress event of a pushed task.
func (api *workerAPI) event(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p workerEventParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	at, err := api.lookup(p.ID)
	if err != nil {
		return nil, err
	}
	if err := at.t.Emit(p.Name, p.Data); err != nil {
		return nil, taskError(err)
	}
	return struct{}{}, nil
}
