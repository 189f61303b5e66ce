package task

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// shutdownFlush bounds how long Shutdown keeps delivering final states
// and waiting for cancelled handlers once its context has ended.
const shutdownFlush = 2 * time.Second

// statusTaskError is the rpc status of a command that failed: its message
// is "<CODE>: <message>".
const statusTaskError rpc.Status = 0x8100

// advertise announces the worker's skills, hot skills, load and catalog
// hash as the node's "task" capability layer, which the application's
// own announcements leave alone. While draining it withdraws them all.
func (w *Worker) advertise() error {
	w.advMu.Lock()
	defer w.advMu.Unlock()
	w.mu.Lock()
	var set capability.Set
	if !w.draining && len(w.order) > 0 {
		set.Metadata = map[string]string{}
		for _, ss := range w.order {
			set.Tags = append(set.Tags, SkillTagPrefix+ss.skill.Name)
			if ss.hot && ss.running < ss.limit {
				set.Tags = append(set.Tags, HotTagPrefix+ss.skill.Name)
			}
		}
		w.loadLocked().Put(set.Metadata, LoadPrefix)
		set.Metadata[CatalogKey] = w.catalogHash
	}
	w.loadDirty = false
	w.mu.Unlock()
	return w.m.AnnounceLayerCapabilities(capabilityLayer, set)
}

// loadLoop re-advertises the load every LoadInterval if it changed.
func (w *Worker) loadLoop() {
	defer w.workers.Done()
	t := time.NewTicker(w.cfg.LoadInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		dirty := w.loadDirty && !w.draining
		w.expireLocked(time.Now())
		w.mu.Unlock()
		if dirty {
			if err := w.advertise(); err != nil {
				w.log.Warn("task: advertising the load failed", "err", err)
			}
		}
	}
}

// checkDrainedLocked signals Shutdown when nothing runs any more.
func (w *Worker) checkDrainedLocked() {
	if w.drained != nil && w.running == 0 && w.queued == 0 {
		select {
		case <-w.drained:
		default:
			close(w.drained)
		}
	}
}

// Shutdown drains the worker: it withdraws the skills from the node's
// capabilities, refuses new tasks (RESOURCE_EXHAUSTED, so submitters
// place them elsewhere), gives the queued tasks back unstarted (their
// submitters place them elsewhere), and lets the running ones finish
// until ctx ends. Then it cancels those still running (their state
// becomes cancelled, "worker shut down"), delivers the final states
// (within ctx, or at most 2 s once ctx has ended), and stops. Results not
// delivered by then are lost with the worker. Shutdown returns ctx's
// error if it had to cancel tasks, and ErrClosed if called again.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	if w.draining {
		w.mu.Unlock()
		return ErrClosed
	}
	w.draining = true
	w.drained = make(chan struct{})
	for _, ss := range w.order {
		w.handBackLocked(ss, "worker shut down before the task started")
	}
	w.checkDrainedLocked()
	w.mu.Unlock()
	if err := w.advertise(); err != nil {
		w.log.Warn("task: withdrawing the skills failed", "err", err)
	}

	var err error
	select {
	case <-w.drained:
	case <-ctx.Done():
		err = ctx.Err()
		w.mu.Lock()
		for _, j := range w.jobs {
			if j.state == StateRunning {
				w.stopLocked(j, "worker shut down")
				w.finishLocked(j, w.failure(j, CodeCancelled, j.stopMsg))
			}
		}
		w.mu.Unlock()
	}

	// Deliver what is left, within ctx if it has time, else shortly.
	flush := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		flush, cancel = context.WithTimeout(context.Background(), shutdownFlush)
		defer cancel()
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for w.undelivered() && flush.Err() == nil {
		select {
		case <-flush.Done():
		case <-tick.C:
		}
	}

	w.mu.Lock()
	w.stopped = true
	w.deadline.Stop()
	w.noticeTimer.Stop()
	w.mu.Unlock()
	close(w.stop)
	w.cancel()
	w.workers.Wait()
	handlers := make(chan struct{})
	go func() { w.handlers.Wait(); close(handlers) }()
	select {
	case <-handlers:
	case <-time.After(shutdownFlush):
		w.log.Warn("task: handlers still running after shutdown: they ignore their context")
	}
	return err
}

// undelivered reports whether any submitter has results not
// acknowledged, or items not sent, with a stream to take them.
func (w *Worker) undelivered() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.subs {
		if s.stream != nil && (len(s.out) > 0 || len(s.finals) > 0) {
			return true
		}
	}
	return false
}

// CommandHandler answers a custom command sent to the worker with
// Submitter.Command. from is the node that sent it, authenticated by the
// session; args and the reply are the application's bytes. An *Error
// chooses the code the caller sees; any other error is sent as
// HANDLER_ERROR with its text.
type CommandHandler func(ctx context.Context, from identity.NodeID, args []byte) ([]byte, error)

// HandleCommand registers h for the command name (1 to 64 bytes of a-z,
// 0-9 and -._/), replacing any handler it had.
func (w *Worker) HandleCommand(name string, h CommandHandler) error {
	if !validName(name, maxLabel) {
		return fmt.Errorf("task: invalid command name %q", name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	next := maps.Clone(*w.commands.Load())
	next[name] = h
	w.commands.Store(&next)
	return nil
}

// serveCommand runs a custom command.
func (w *Worker) serveCommand(ctx context.Context, from identity.NodeID, body []byte) ([]byte, error) {
	name, args, err := parseCommand(body)
	if err != nil {
		return nil, rpc.Errorf(rpc.StatusBadRequest, "%v", err)
	}
	h := (*w.commands.Load())[name]
	if h == nil {
		return nil, rpc.Errorf(statusTaskError, "%s: no command %q on this worker", CodeNotFound, name)
	}
	reply, err := h(ctx, from, args)
	if err != nil {
		e := asError(err, CodeHandlerError)
		code := e.Code
		if !validCode(string(code)) {
			code = CodeHandlerError
		}
		return nil, rpc.Errorf(statusTaskError, "%s: %s", code, truncate(e.Message, maxMessage))
	}
	return reply, nil
}
