package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// Tasks: the node's worker and submitter, the task control methods and
// the task command. docs/TASKS.md describes the model.

// taskNode is the task layer of a running node.
type taskNode struct {
	w   *task.Worker
	s   *task.Submitter
	srv *rpc.Server // the node's own when it runs no built-in rpc server; else nil
	api *workerAPI
}

// startTasks starts the node's worker, with the config's skills, and its
// submitter, on the node's rpc server (one of its own when the built-in
// services are off).
func (n *node) startTasks() error {
	rc := n.rc
	srv := n.srv
	tn := &taskNode{}
	if srv == nil {
		var err error
		if srv, err = rpc.NewServer(n.m, rpc.ServerOptions{Logger: rc.logger}); err != nil {
			return fmt.Errorf("tasks: %w", err)
		}
		tn.srv = srv
	}
	wcfg := rc.tasks.worker
	wcfg.Logger = rc.logger
	var err error
	if tn.w, err = task.NewWorker(n.m, srv, wcfg); err != nil {
		tn.close()
		return fmt.Errorf("tasks: %w", err)
	}
	for _, es := range rc.tasks.skills {
		if err := es.register(tn.w); err != nil {
			tn.close()
			return usageError{fmt.Errorf("skills: %w", err)}
		}
	}
	if tn.s, err = task.NewSubmitter(n.m, task.SubmitterConfig{StorePath: rc.tasks.store, Logger: rc.logger}); err != nil {
		tn.close()
		return fmt.Errorf("tasks: %w", err)
	}
	tn.api = newWorkerAPI(tn.w)
	n.tasks = tn
	return nil
}

// drain shuts the worker down gracefully within d: its skills are
// withdrawn, running tasks finish or are cancelled.
func (tn *taskNode) drain(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return tn.w.Shutdown(ctx)
}

// close stops what drain did not: the submitter (its store is closed) and
// the rpc server of its own.
func (tn *taskNode) close() {
	if tn.w != nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		tn.w.Shutdown(ctx) // at once; ErrClosed after drain
	}
	if tn.s != nil {
		tn.s.Close()
	}
	if tn.srv != nil {
		tn.srv.Close()
	}
}

// taskMethods are the control methods of the task layer.
func (n *node) taskMethods() map[string]method {
	return map[string]method{
		"task.send":     n.taskSend,
		"task.get":      n.taskGet,
		"task.list":     n.taskList,
		"task.cancel":   n.taskCancel,
		"task.watch":    n.taskWatch,
		"worker.serve":  n.tasks.api.serve,
		"worker.result": n.tasks.api.result,
		"worker.event":  n.tasks.api.event,
	}
}

// Bounds of the task methods.
const (
	maxTaskParams   = task.DefaultMaxParamsSize
	maxTaskDeadline = 365 * 24 * time.Hour
	maxTaskWait     = 24 * time.Hour
	codeTaskPrefix  = "task_" // control error codes of task errors: task_timeout, ...
)

// taskSendParams are the parameters of "task.send".
type taskSendParams struct {
	Skill      string          `json:"skill"`
	Node       string          `json:"node"`  // NodeID or unique prefix; "" places by Where
	Where      string          `json:"where"` // capability filter; "" matches every node
	Priority   int             `json:"priority"`
	DeadlineMs int64           `json:"deadline_ms"` // from now; 0: none
	Params     json.RawMessage `json:"params"`
	Idempotent bool            `json:"idempotent"`
}

// taskSendResult is the result of "task.send".
type taskSendResult struct {
	ID   task.ID         `json:"id"`
	Node identity.NodeID `json:"node"`
}

// taskIDParams are the parameters of the methods about one task.
type taskIDParams struct {
	ID string `json:"id"`
	// Wait (task.get) waits until the task is final, at most TimeoutMs.
	Wait      bool  `json:"wait,omitempty"`
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
}

// taskListParams are the parameters of "task.list".
type taskListParams struct {
	State string `json:"state"`
	Skill string `json:"skill"`
	Node  string `json:"node"`
	Limit int    `json:"limit"`
}

// taskListResult is the result of "task.list".
type taskListResult struct {
	Tasks []task.Info `json:"tasks"`
}

// taskError turns a task error into a control error with a task_ code.
func taskError(err error) error {
	var te *task.Error
	if errors.As(err, &te) {
		return errorf(codeTaskPrefix+strings.ToLower(string(te.Code)), "%v", err)
	}
	return err
}

func (n *node) taskSend(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p taskSendParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	req := task.Request{Skill: p.Skill, Priority: p.Priority, Params: p.Params, Idempotent: p.Idempotent}
	deadline := time.Duration(p.DeadlineMs) * time.Millisecond
	switch {
	case len(p.Params) > maxTaskParams:
		return nil, errorf(codeBadRequest, "params of %d bytes: at most %d", len(p.Params), maxTaskParams)
	case deadline < 0 || deadline > maxTaskDeadline:
		return nil, errorf(codeBadRequest, "deadline %v: want 0 (none) to %v", deadline, maxTaskDeadline)
	case p.Node != "" && p.Where != "":
		return nil, errorf(codeBadRequest, "give a node or a filter, not both")
	}
	if deadline > 0 {
		req.Deadline = time.Now().Add(deadline)
	}
	if p.Node != "" {
		var err error
		if req.Node, _, err = n.findNode(p.Node); err != nil {
			return nil, err
		}
	}
	f, err := parseFilter(p.Where)
	if err != nil {
		return nil, errorf(codeBadRequest, "where %v", err)
	}
	req.Where = f
	id, err := n.tasks.s.Submit(ctx, req)
	if err != nil {
		return nil, taskError(err)
	}
	in, err := n.tasks.s.Result(id)
	if err != nil {
		return nil, taskError(err)
	}
	return taskSendResult{ID: id, Node: in.Node}, nil
}

// decodeTaskID decodes the parameters of a method about one task.
func decodeTaskID(raw json.RawMessage) (taskIDParams, task.ID, error) {
	var p taskIDParams
	if err := decodeParams(raw, &p); err != nil {
		return p, task.ID{}, err
	}
	id, err := task.ParseID(p.ID)
	if err != nil {
		return p, id, errorf(codeBadRequest, "%v", err)
	}
	return p, id, nil
}

func (n *node) taskGet(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	p, id, err := decodeTaskID(raw)
	if err != nil {
		return nil, err
	}
	if !p.Wait {
		in, err := n.tasks.s.Result(id)
		return in, taskError(err)
	}
	timeout := time.Duration(p.TimeoutMs) * time.Millisecond
	if timeout <= 0 || timeout > maxTaskWait {
		return nil, errorf(codeBadRequest, "timeout %v: want 1ms to %v", timeout, maxTaskWait)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in, err := n.tasks.s.Wait(ctx, id)
	var te *task.Error
	switch {
	case errors.As(err, &te) && te.Code == task.CodeNotFound:
		return nil, taskError(err)
	case errors.Is(err, context.DeadlineExceeded):
		return nil, errorf(codeTaskPrefix+"wait_timeout", "task %s is not final after %v", id, timeout)
	case err != nil && in.ID.IsZero():
		return nil, err
	}
	return in, nil // a failed task is a result, not an error of the method
}

func (n *node) taskList(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p taskListParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	f := task.ListFilter{Skill: p.Skill, Limit: p.Limit}
	if p.State != "" {
		st, err := task.ParseState(p.State)
		if err != nil {
			return nil, errorf(codeBadRequest, "%v", err)
		}
		f.State = st
	}
	if p.Node != "" {
		id, _, err := n.findNode(p.Node)
		if err != nil {
			return nil, err
		}
		f.Node = id
	}
	tasks := n.tasks.s.List(f)
	if tasks == nil {
		tasks = []task.Info{}
	}
	return taskListResult{Tasks: tasks}, nil
}

func (n *node) taskCancel(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	_, id, err := decodeTaskID(raw)
	if err != nil {
		return nil, err
	}
	if err := n.tasks.s.Cancel(ctx, id); err != nil {
		return nil, taskError(err)
	}
	in, err := n.tasks.s.Result(id)
	return in, taskError(err)
}

// taskWatch streams a task's events (intermediate results) and ends with
// its final Info.
func (n *node) taskWatch(ctx context.Context, raw json.RawMessage, more func(any) error) (any, error) {
	_, id, err := decodeTaskID(raw)
	if err != nil {
		return nil, err
	}
	for ev, err := range n.tasks.s.Events(ctx, id) {
		if err != nil {
			return nil, taskError(err)
		}
		if err := more(ev); err != nil {
			return nil, err
		}
	}
	in, err := n.tasks.s.Wait(ctx, id)
	if err != nil && in.ID.IsZero() {
		return nil, taskError(err)
	}
	return in, nil
}

// oneTaskID checks that a command got exactly one argument: a task id.
func oneTaskID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes one task id (got %d arguments)", cmd.Name(), len(args))
	}
	_, err := task.ParseID(args[0])
	return err
}

// newTask is the task command and its subcommands.
func newTask() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Send tasks to nodes that offer a skill, and follow them by id",
		Long: `Send a task to a node that offers a skill (by NodeID, or by capability
filter and load), then follow it by its id: its state, progress events and
result. The running node submits the task and keeps its record (durably
with tasks.store in the config). See docs/TASKS.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newTaskSend(), newTaskResult(), newTaskList(), newTaskCancel(), newTaskWatch())
	return cmd
}

func newTaskSend() *cobra.Command {
	var o clientOpts
	var p taskSendParams
	var params string
	var deadline time.Duration
	cmd := &cobra.Command{
		Use:   "send --skill S [--node N | --where FILTER] [--params JSON|@FILE]",
		Short: "Submit a task and print its id",
		Long: `Submit a task: the running node places it on --node, or on a node that
offers the skill (the capability tag skill:<name>) and matches --where,
trying the next one when one refuses, and prints the task's id once a
worker has queued it. --params is the parameters, one JSON value, or
@FILE to read them from a file ("-" for standard input). --deadline is a
duration from now: a task not done by then fails with TIMEOUT.`,
		Example: `  netnode task send --skill resize --params '{"width": 640}'
  netnode task send --skill transcode --where 'gpu && gpu_mem_gb>=24' --deadline 10m --params @job.json
  netnode task send --skill report --node 5dnyl452 --priority 5 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if p.Skill == "" {
				return usageError{errors.New("--skill is required")}
			}
			raw, err := readParams(cmd.InOrStdin(), params)
			if err != nil {
				return err
			}
			p.Params = raw
			if deadline < 0 || deadline > maxTaskDeadline {
				return usageError{fmt.Errorf("--deadline %v: want 0 (none) to %v", deadline, maxTaskDeadline)}
			}
			p.DeadlineMs = deadline.Milliseconds()
			if p.Where != "" {
				if _, err := parseFilter(p.Where); err != nil {
					return usageError{fmt.Errorf("--where %w", err)}
				}
			}
			var res taskSendResult
			if err := o.get(cmd, "task.send", p, &res); err != nil || o.json {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.ID)
			return nil
		},
	}
	o.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&p.Skill, "skill", "", "the skill to run (required)")
	f.StringVar(&p.Node, "node", "", "place the task on this node (a NodeID or a unique prefix)")
	f.StringVar(&p.Where, "where", "", "place the task on a node matching this capability filter")
	f.IntVar(&p.Priority, "priority", 0, "queue priority: higher runs first")
	f.DurationVar(&deadline, "deadline", 0, "how long the task has, from now (0: no deadline)")
	f.StringVar(&params, "params", "null", "the parameters: JSON, or @FILE (@- for standard input)")
	f.BoolVar(&p.Idempotent, "idempotent", false, "the task may run again on another node if its worker is lost")
	return cmd
}

// readParams returns the parameters of task send: JSON as given, or the
// contents of @FILE.
func readParams(stdin io.Reader, s string) (json.RawMessage, error) {
	data := []byte(s)
	if name, ok := strings.CutPrefix(s, "@"); ok {
		var r io.Reader = stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return nil, usageError{fmt.Errorf("--params: %w", err)}
			}
			defer f.Close()
			r = f
		}
		var err error
		if data, err = io.ReadAll(io.LimitReader(r, maxTaskParams+1)); err != nil {
			return nil, err
		}
	}
	switch {
	case len(data) > maxTaskParams:
		return nil, usageError{fmt.Errorf("--params: larger than %d bytes", maxTaskParams)}
	case !json.Valid(data):
		return nil, usageError{errors.New("--params: not one JSON value (quote it for the shell)")}
	}
	return data, nil
}

func newTaskResult() *cobra.Command {
	var o clientOpts
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "result <id>",
		Short: "Print a task's state and result",
		Long: `Print what the running node knows of a task: its state, and for a final
task its result or error. With --wait, wait until the task is final (at
most --timeout). The exit code is 1 when the task failed, was cancelled or
is lost, and with --wait when it is not final in time.`,
		Args: oneTaskID,
		RunE: func(cmd *cobra.Command, args []string) error {
			p := taskIDParams{ID: args[0], Wait: wait}
			ctx := cmd.Context()
			if wait {
				if timeout <= 0 || timeout > maxTaskWait {
					return usageError{fmt.Errorf("--timeout %v: want 1ms to %v", timeout, maxTaskWait)}
				}
				p.TimeoutMs = timeout.Milliseconds()
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout+requestTimeout)
				defer cancel()
			}
			raw, err := o.call(ctx, "task.get", p, nil)
			if err != nil {
				return err
			}
			return printTaskInfo(cmd.OutOrStdout(), raw, o.json)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the task is final")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "with --wait, how long to wait")
	return cmd
}

// printTaskInfo prints a task's Info (as JSON with asJSON), and returns
// an error for a task that did not succeed.
func printTaskInfo(out io.Writer, raw json.RawMessage, asJSON bool) error {
	var in task.Info
	if err := json.Unmarshal(raw, &in); err != nil {
		return err
	}
	if asJSON {
		fmt.Fprintf(out, "%s\n", raw)
	} else {
		tw := newTable(out)
		fmt.Fprintf(tw, "id\t%s\nskill\t%s\nstate\t%s\n", in.ID, in.Skill, in.State)
		if !in.Node.IsZero() {
			fmt.Fprintf(tw, "node\t%s\n", in.Node)
		}
		fmt.Fprintf(tw, "attempts\t%d\nevents\t%d\ncreated\t%s\nupdated\t%s\n", in.Attempts, in.Events,
			in.Created.Format(time.RFC3339Nano), in.Updated.Format(time.RFC3339Nano))
		if in.Status != "" {
			fmt.Fprintf(tw, "status\t%s\n", in.Status)
		}
		if in.Error != nil {
			fmt.Fprintf(tw, "error\t%s: %s\n", in.Error.Code, in.Error.Message)
		}
		tw.Flush()
		if in.Output != nil {
			fmt.Fprintf(out, "%s\n", in.Output)
		}
	}
	switch {
	case in.Error != nil:
		return fmt.Errorf("task %s %s: %s: %s", in.ID, in.State, in.Error.Code, in.Error.Message)
	case in.State != task.StateSucceeded && in.State.Final():
		return fmt.Errorf("task %s %s", in.ID, in.State)
	}
	return nil
}

func newTaskList() *cobra.Command {
	var o clientOpts
	var p taskListParams
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tasks this node submitted, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if p.State != "" {
				if _, err := task.ParseState(p.State); err != nil {
					return usageError{err}
				}
			}
			var res taskListResult
			if err := o.get(cmd, "task.list", p, &res); err != nil || o.json {
				return err
			}
			out := cmd.OutOrStdout()
			if len(res.Tasks) == 0 {
				fmt.Fprintln(out, "no tasks")
				return nil
			}
			tw := newTable(out)
			fmt.Fprintln(tw, "ID\tSKILL\tSTATE\tNODE\tCREATED\tERROR")
			for _, in := range res.Tasks {
				node, errText := "-", "-"
				if !in.Node.IsZero() {
					node = in.Node.Short()
				}
				if in.Error != nil {
					errText = string(in.Error.Code)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Skill, in.State, node, in.Created.Format(time.TimeOnly), errText)
			}
			tw.Flush()
			return nil
		},
	}
	o.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&p.State, "state", "", "only tasks in this state: queued, running, succeeded, failed, cancelled or lost")
	f.StringVar(&p.Skill, "skill", "", "only tasks of this skill")
	f.StringVar(&p.Node, "node", "", "only tasks placed on this node")
	f.IntVar(&p.Limit, "limit", 0, "at most this many (the newest); 0 for all")
	return cmd
}

func newTaskCancel() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "cancel <id>",
		Short: "Cancel a task: a queued one ends at once, a running one when its handler stops",
		Args:  oneTaskID,
		RunE: func(cmd *cobra.Command, args []string) error {
			var in task.Info
			if err := o.get(cmd, "task.cancel", taskIDParams{ID: args[0]}, &in); err != nil || o.json {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", in.ID, in.State)
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newTaskWatch() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "watch <id>",
		Short: "Print a task's progress events as they arrive, then its result",
		Long: `Print a task's progress events, those already received and then new ones
as they arrive, until the task is final; then print its result like task
result. With --json, one JSON object a line: each event, then the task.`,
		Args: oneTaskID,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			raw, err := o.call(cmd.Context(), "task.watch", taskIDParams{ID: args[0]}, func(ev json.RawMessage) error {
				if o.json {
					_, err := fmt.Fprintf(out, "%s\n", ev)
					return err
				}
				var e task.Event
				if err := json.Unmarshal(ev, &e); err != nil {
					return err
				}
				_, err := fmt.Fprintf(out, "%s  #%d %s %s\n", e.Time.Format(time.TimeOnly), e.Seq, e.Name, e.Data)
				return err
			})
			if err != nil {
				return err
			}
			return printTaskInfo(out, raw, o.json)
		},
	}
	o.addFlags(cmd)
	return cmd
}

// taskLoad is a node's task load as it advertises it.
type taskLoad struct {
	Running int `json:"running"`
	Queued  int `json:"queued"`
	Limit   int `json:"limit"`
}

// String formats the load for tables: running+queued/limit, or "-".
func (l *taskLoad) String() string {
	if l == nil {
		return "-"
	}
	return fmt.Sprintf("%d+%d/%d", l.Running, l.Queued, l.Limit)
}

// taskView reads the skills, hot skills and task load a node advertises.
func taskView(s capability.Set) (skills, hot []string, load *taskLoad) {
	for _, t := range s.Tags {
		if name, ok := strings.CutPrefix(t, task.SkillTagPrefix); ok {
			skills = append(skills, name)
		} else if name, ok := strings.CutPrefix(t, task.HotTagPrefix); ok {
			hot = append(hot, name)
		}
	}
	slices.Sort(skills)
	slices.Sort(hot)
	if l, ok := placement.ParseLoad(s, task.LoadPrefix); ok {
		load = &taskLoad{Running: l.Running, Queued: l.Queued, Limit: l.Limit}
	}
	return skills, hot, load
}

// skillsColumn lists a node's skills for tables, hot ones marked with *.
func skillsColumn(c capNode) string {
	if len(c.Skills) == 0 {
		return "-"
	}
	out := make([]string, len(c.Skills))
	for i, s := range c.Skills {
		out[i] = s
		if slices.Contains(c.Hot, s) {
			out[i] += "*"
		}
	}
	return strings.Join(out, ",")
}
