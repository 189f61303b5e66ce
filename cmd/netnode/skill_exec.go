package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
)

// Skills served by executables (the [[skills]] entries of the config).
//
// The executable runs once per task, started directly with its argv (no
// shell). It reads the task's parameters, one JSON value, on standard
// input; writes the output, one JSON value, on standard output; and may
// write progress on descriptor 3 (NETNODE_EVENTS_FD), one JSON object a
// line: {"event": NAME, "data": VALUE} emits an event, {"status": NAME}
// sets the result's status (default "success"). Its exit status is the
// outcome, see exitCodes; its last line on standard error is the message
// of a failure. The task's deadline, cancellation, the skill's timeout and
// the node's shutdown end it with SIGTERM, then SIGKILL after
// execKillDelay.

// execSkill is a skill run by an executable.
type execSkill struct {
	skill   task.Skill
	argv    []string // argv[0] is an absolute path
	dir     string
	env     []string
	timeout time.Duration // 0: none besides the task's deadline
}

// exitCodes maps an executable's exit status to the error code of its
// failure. Any other non-zero status is HANDLER_ERROR.
var exitCodes = map[int]task.Code{
	1: task.CodeHandlerError,
	2: task.CodeContractViolation,
	3: task.CodeDependencyMissing,
	4: task.CodeResourceExhausted,
	5: task.CodeLimitExceeded,
	6: task.CodeTimeout,
}

// Bounds of an executable's output.
const (
	// execEventsFD is the descriptor the progress events are written to.
	execEventsFD = 3
	// execKillDelay is how long an executable has after SIGTERM before it
	// is killed, and its descriptors are closed after it exited.
	execKillDelay = 5 * time.Second
	// execStderrTail is how much of the end of standard error is kept for
	// the failure's message.
	execStderrTail = 2 << 10
	// execEventLine bounds one line on the events descriptor: an event's
	// data (the worker's default limit) and its envelope.
	execEventLine = task.DefaultMaxEventSize + 1<<10
)

// register adds the skill to w with this executable as its handler.
func (es execSkill) register(w *task.Worker) error {
	s := es.skill
	s.Handler = es.run
	return w.Register(s)
}

// run runs one task.
func (es execSkill) run(ctx context.Context, t *task.Task) (task.Result, error) {
	if es.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, es.timeout, errExecTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, es.argv[0], es.argv[1:]...)
	cmd.Dir = es.dir
	cmd.Env = append(os.Environ(), es.env...)
	cmd.Env = append(cmd.Env,
		"NETNODE_TASK_ID="+t.ID.String(),
		"NETNODE_TASK_SKILL="+t.Skill,
		"NETNODE_TASK_ORIGIN="+t.Origin.String(),
		fmt.Sprintf("NETNODE_EVENTS_FD=%d", execEventsFD))
	cmd.Stdin = bytes.NewReader(t.Params)
	stdout := &capped{limit: task.DefaultMaxOutputSize}
	stderr := &tail{limit: execStderrTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = execKillDelay
	evr, evw, err := os.Pipe()
	if err != nil {
		return task.Result{}, err
	}
	defer evr.Close()
	cmd.ExtraFiles = []*os.File{evw}
	if err := cmd.Start(); err != nil {
		evw.Close()
		return task.Result{}, task.Errorf(task.CodeDependencyMissing, "starting %s: %v", es.argv[0], err)
	}
	evw.Close()
	status := task.DefaultStatus
	var evErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		status, evErr = readEvents(evr, t)
		if evErr != nil {
			cmd.Cancel() // a broken contract ends the task
		}
	})
	waitErr := cmd.Wait()
	// The reader goes on to the end of what the skill wrote; a grandchild
	// that still holds the pipe open gets execKillDelay more, then the
	// read ends (closing the pipe at once would lose events still in it).
	if evr.SetReadDeadline(time.Now().Add(execKillDelay)) != nil {
		evr.Close() // no deadlines on this platform's pipes
	}
	wg.Wait()

	switch {
	case errors.Is(context.Cause(ctx), errExecTimeout):
		return task.Result{}, task.Errorf(task.CodeTimeout, "%s ran longer than the skill's timeout, %v", t.Skill, es.timeout)
	case ctx.Err() != nil:
		return task.Result{}, ctx.Err() // the worker reports cancel or deadline
	case evErr != nil:
		return task.Result{}, evErr
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		code, ok := exitCodes[ee.ExitCode()]
		if !ok {
			code = task.CodeHandlerError
		}
		return task.Result{}, task.Errorf(code, "%s", stderr.lastLine(fmt.Sprintf("%s: %v", t.Skill, ee)))
	}
	if waitErr != nil {
		return task.Result{}, waitErr
	}
	if stdout.over {
		return task.Result{}, task.Errorf(task.CodeLimitExceeded, "output larger than %d bytes", stdout.limit)
	}
	out := bytes.TrimSpace(stdout.buf.Bytes())
	if len(out) == 0 {
		out = []byte("null")
	}
	return task.Result{Status: status, Output: out}, nil
}

// errExecTimeout is the cause of a context ended by the skill's timeout.
var errExecTimeout = errors.New("skill timeout")

// eventLine is one line on the events descriptor.
type eventLine struct {
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	Status string          `json:"status"`
}

// readEvents emits the events an executable writes on r and returns the
// status it set. A line that is not an event or a status, or an event the
// skill's contract refuses, is an error: the task fails with it.
func readEvents(r *os.File, t *task.Task) (string, error) {
	status := task.DefaultStatus
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), execEventLine)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l eventLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil || (l.Event == "") == (l.Status == "") {
			return status, task.Errorf(task.CodeContractViolation, "events descriptor: want {\"event\": NAME, \"data\": VALUE} or {\"status\": NAME} on each line, got %.80q", sc.Text())
		}
		if l.Status != "" {
			status = l.Status
			continue
		}
		for {
			err := t.Emit(l.Event, l.Data)
			if err == nil {
				break
			}
			if !errors.Is(err, task.ErrResourceExhausted) {
				return status, err
			}
			time.Sleep(10 * time.Millisecond) // undelivered events at the bound: wait, as a pipe would
		}
	}
	switch err := sc.Err(); {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, os.ErrClosed):
		// The skill exited, and a process it started still holds the
		// descriptor: what it wrote before is in, the rest is not read.
	case err != nil:
		return status, task.Errorf(task.CodeLimitExceeded, "events descriptor: %v (a line holds at most %d bytes)", err, execEventLine)
	}
	return status, nil
}

// capped keeps the first limit bytes written to it and notes more.
type capped struct {
	buf   bytes.Buffer
	limit int
	over  bool
}

func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	if room := c.limit - c.buf.Len(); n > room {
		c.over = true
		p = p[:max(room, 0)]
	}
	c.buf.Write(p)
	return n, nil // the rest is discarded, not refused: the writer must not block
}

// tail keeps the last limit bytes written to it.
type tail struct {
	buf   []byte
	limit int
}

func (t *tail) Write(p []byte) (int, error) {
	n := len(p)
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.limit {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.limit:]...)
	}
	return n, nil
}

// lastLine returns the last non-empty line, or def.
func (t *tail) lastLine(def string) string {
	lines := strings.Split(strings.TrimSpace(string(t.buf)), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return def
}
