package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/rpc"
)

// demoTasks: the worker node serves a skill on its rpc server srvW; the
// submitter places a task on a node with a GPU (by filter, not by name),
// follows its progress events and collects the result by id.
func demoTasks(ctx context.Context, out io.Writer, submitter, worker *demoNode, srvW *rpc.Server) error {
	fmt.Fprintln(out, "\ntasks (a skill with a JSON Schema contract, placed by filter and load, result by id)")
	w, err := task.NewWorker(worker.m, srvW, task.WorkerConfig{})
	if err != nil {
		return err
	}
	defer w.Shutdown(ctx)
	err = w.Register(task.Skill{
		Name:    "thumbnail",
		Version: "1.0",
		Input:   json.RawMessage(`{"type": "object", "properties": {"image": {"type": "string"}, "size": {"type": "integer", "minimum": 16}}, "required": ["image", "size"]}`),
		Events:  map[string]json.RawMessage{"progress": json.RawMessage(`{"type": "integer", "minimum": 0, "maximum": 100}`)},
		Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
			var p struct {
				Image string
				Size  int
			}
			json.Unmarshal(t.Params, &p)
			for pct := 25; pct <= 100; pct += 25 {
				if err := t.Emit("progress", fmt.Appendf(nil, "%d", pct)); err != nil {
					return task.Result{}, err
				}
			}
			return task.Result{Output: fmt.Appendf(nil, `{"thumbnail": %q}`, fmt.Sprintf("%s@%dpx", p.Image, p.Size))}, nil
		},
	})
	if err != nil {
		return err
	}
	s, err := task.NewSubmitter(submitter.m, task.SubmitterConfig{})
	if err != nil {
		return err
	}
	defer s.Close()
	where := capability.HasTag("gpu")
	for len(submitter.m.FindNodes(capability.AllOf(where, capability.HasTag(task.SkillTagPrefix+"thumbnail")))) == 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never learned of the thumbnail skill: %w", submitter.name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	start := time.Now()
	id, err := s.Submit(ctx, task.Request{Skill: "thumbnail", Where: where, Params: json.RawMessage(`{"image": "cat.png", "size": 64}`)})
	if err != nil {
		return err
	}
	in, _ := s.Result(id)
	fmt.Fprintf(out, "  %s submits thumbnail where %q -> task %s, queued on %s\n", submitter.name, where, id, worker.name)
	for ev, err := range s.Events(ctx, id) {
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  event #%d %s %s\n", ev.Seq, ev.Name, ev.Data)
	}
	if in, err = s.Wait(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(out, "  result of %s: %s %s %s in %v\n", id, in.State, in.Status, in.Output, time.Since(start).Round(time.Microsecond))
	_, err = s.Submit(ctx, task.Request{Skill: "thumbnail", Node: worker.m.ID(), Params: json.RawMessage(`{"image": "cat.png", "size": 2}`)})
	fmt.Fprintf(out, "  a task that breaks the contract is refused before it runs: %v\n", err)
	return nil
}
