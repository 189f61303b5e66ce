package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/internal/testenv"
)

// fakeSkillEnv makes the test binary an executable skill (see fakeSkill).
const fakeSkillEnv = "NETNODE_TEST_FAKE_SKILL"

// fakeSkill is the executable skill of the tests: the test binary run
// again with fakeSkillEnv set. Its parameters say what to do.
func fakeSkill() int {
	var p struct {
		Mode  string `json:"mode"`
		N     int    `json:"n"`
		Sleep string `json:"sleep"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&p); err != nil {
		fmt.Fprintln(os.Stderr, "bad parameters:", err)
		return 2
	}
	events := os.NewFile(uintptr(execEventsFD), "events")
	switch p.Mode {
	case "count":
		for i := 1; i <= p.N; i++ {
			fmt.Fprintf(events, `{"event": "step", "data": %d}`+"\n", i)
		}
		if p.N == 0 {
			fmt.Fprintln(events, `{"status": "retry_later"}`)
		}
		fmt.Printf(`{"n": %d}`+"\n", p.N)
	case "fail":
		fmt.Fprintln(os.Stderr, "loading the model")
		fmt.Fprintln(os.Stderr, "no model file /models/x.bin")
		return 3
	case "sleep":
		d, _ := time.ParseDuration(p.Sleep)
		time.Sleep(d)
		fmt.Println(`{"n": 0}`)
	case "bad-output":
		fmt.Println(`{"n": "many"}`)
	case "bad-event":
		fmt.Fprintln(events, `progress 50%`)
		time.Sleep(10 * time.Second)
	}
	return 0
}

// taskNodes starts a worker node with executable skills (the test binary
// as fakeSkill) and a submitter node connected to it, and waits until
// the submitter sees the skills.
func taskNodes(t *testing.T, extra string) (w, s *proc, kw keyInfo, restartS func() *proc) {
	t.Helper()
	dir := t.TempDir()
	kw, ks := newKey(t, filepath.Join(dir, "w.key")), newKey(t, filepath.Join(dir, "s.key"))
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	in := write("in.json", `{"type": "object", "properties": {"mode": {"enum": ["count", "fail", "sleep", "bad-output", "bad-event"]}}, "required": ["mode"]}`)
	out := write("out.json", `{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}`)
	step := write("step.json", `{"type": "integer", "minimum": 1}`)
	w = startNode(t, dir, "w", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
capabilities = ["gpu"]

[tasks]
max_running = 4
drain_timeout = "5s"

[[skills]]
name = "fake"
version = "0.1"
command = [%q, "-test.run=^$"]
env = ["%s=1"]
input_schema = %q
output_schema = %q
event_schemas = { step = %q }
statuses = ["success", "retry_later"]
timeout = "3s"
concurrency = 2

[[skills]]
name = "echo"
command = ["cat"]
%s`, kw.KeyFile, os.Args[0], fakeSkillEnv, in, out, step, extra))
	addr := w.status(t).ListenAddrs[0]
	sConfig := fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
tasks = { store = %q }

[[peers]]
addr = %q
key = %q
`, ks.KeyFile, filepath.Join(dir, "s.db"), addr, kw.PublicKey)
	s = startNode(t, dir, "s", sConfig)
	waitFor(t, 10*time.Second, "the submitter to see the worker's skills", func() bool {
		var res nodesResult
		mustJSON(t, &res, "nodes", "--json", "--control", s.control)
		for _, n := range res.Nodes {
			if n.NodeID == kw.NodeID && slices.Contains(n.Skills, "fake") && slices.Contains(n.Hot, "echo") && n.Load != nil && n.Load.Limit == 4 {
				return true
			}
		}
		return false
	})
	return w, s, kw, func() *proc { return startNode(t, dir, "s", sConfig) }
}

// sendTask runs task send and returns the id it printed.
func sendTask(t *testing.T, p *proc, args ...string) string {
	t.Helper()
	out := strings.TrimSpace(mustRun(t, append([]string{"task", "send", "--control", p.control}, args...)...))
	if _, err := task.ParseID(out); err != nil {
		t.Fatalf("task send printed %q", out)
	}
	return out
}

// waitTask runs task result --wait --json and decodes it.
func waitTask(t *testing.T, p *proc, id string) (task.Info, result) {
	t.Helper()
	r := netnode(t, "task", "result", id, "--wait", "--timeout", "15s", "--json", "--control", p.control)
	var in task.Info
	if err := json.Unmarshal([]byte(r.stdout), &in); err != nil {
		t.Fatalf("task result %s: %v\n%s%s", id, err, r.stdout, r.stderr)
	}
	return in, r
}

// TestTaskCommands drives the task commands end to end against a node
// with executable skills: send by filter and by node, events, statuses,
// exit codes, the skill timeout, schema violations both ways, cancel,
// list, watch, and the records surviving a restart of the submitter.
func TestTaskCommands(t *testing.T) {
	w, s, kw, restartS := taskNodes(t, "")

	// Placed by filter; events in order; a declared status.
	id := sendTask(t, s, "--skill", "fake", "--where", "gpu", "--params", `{"mode": "count", "n": 3}`)
	in, r := waitTask(t, s, id)
	if r.code != 0 || in.State != task.StateSucceeded || string(in.Output) != `{"n":3}` || in.Node.String() != kw.NodeID || in.Events != 3 {
		t.Fatalf("count: %+v (exit %d: %s)", in, r.code, r.stderr)
	}
	watch := mustRun(t, "task", "watch", id, "--json", "--control", s.control)
	lines := strings.Split(strings.TrimSpace(watch), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], `"seq":1,"name":"step","data":1`) || !strings.Contains(lines[3], `"state":"succeeded"`) {
		t.Fatalf("watch:\n%s", watch)
	}
	id = sendTask(t, s, "--skill", "fake", "--node", kw.NodeID[:8], "--params", `{"mode": "count", "n": 0}`)
	if in, _ = waitTask(t, s, id); in.Status != "retry_later" {
		t.Fatalf("status: %+v", in)
	}
	// /bin/cat as a skill: parameters in, output out.
	id = sendTask(t, s, "--skill", "echo", "--params", `{"x": [1, 2]}`)
	if out := mustRun(t, "task", "result", id, "--wait", "--control", s.control); !strings.Contains(out, `{"x":[1,2]}`) || !strings.Contains(out, "succeeded") {
		t.Fatalf("echo:\n%s", out)
	}

	// Parameters larger than the built-in services accept (64 KiB), from
	// a file: the task layer has its own limits.
	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, []byte(`{"blob": "`+strings.Repeat("x", 200<<10)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	id = sendTask(t, s, "--skill", "echo", "--params", "@"+big)
	if in, r := waitTask(t, s, id); in.State != task.StateSucceeded || len(in.Output) < 200<<10 {
		t.Fatalf("a 200 KiB task: %s %d bytes (%s)", in.State, len(in.Output), r.stderr)
	}

	// Failures: an exit status, the skill's timeout, contracts both ways.
	for _, tc := range []struct {
		params string
		code   task.Code
		msg    string
	}{
		{`{"mode": "fail"}`, task.CodeDependencyMissing, "no model file /models/x.bin"},
		{`{"mode": "sleep", "sleep": "20s"}`, task.CodeTimeout, "longer than the skill's timeout"},
		{`{"mode": "bad-output"}`, task.CodeContractViolation, "output"},
		{`{"mode": "bad-event"}`, task.CodeContractViolation, "events descriptor"},
	} {
		id := sendTask(t, s, "--skill", "fake", "--params", tc.params)
		in, r := waitTask(t, s, id)
		if in.State != task.StateFailed || in.Error == nil || in.Error.Code != tc.code || !strings.Contains(in.Error.Message, tc.msg) || r.code != 1 {
			t.Errorf("%s: %+v %+v (exit %d)", tc.params, in, in.Error, r.code)
		}
	}
	oneLineError(t, netnode(t, "task", "send", "--control", s.control, "--skill", "fake", "--params", `{"mode": "dance"}`), 1, "CONTRACT_VIOLATION")
	oneLineError(t, netnode(t, "task", "send", "--control", s.control, "--skill", "fake", "--where", "tpu"), 1, `NO_WORKER: no node offers skill "fake" and matches "tpu"`)
	oneLineError(t, netnode(t, "task", "send", "--control", s.control, "--skill", "fake", "--params", "{"), 2, "not one JSON value")

	// Cancel a running task.
	id = sendTask(t, s, "--skill", "fake", "--params", `{"mode": "sleep", "sleep": "20s"}`)
	waitFor(t, 10*time.Second, "the task to run", func() bool {
		var in task.Info
		mustJSON(t, &in, "task", "result", id, "--json", "--control", s.control)
		return in.State == task.StateRunning
	})
	mustRun(t, "task", "cancel", id, "--control", s.control)
	if in, _ := waitTask(t, s, id); in.State != task.StateCancelled {
		t.Fatalf("cancelled task: %+v", in)
	}

	var list taskListResult
	mustJSON(t, &list, "task", "list", "--json", "--state", "failed", "--control", s.control)
	if len(list.Tasks) != 4 {
		t.Fatalf("%d failed tasks listed, want 4", len(list.Tasks))
	}
	if out := mustRun(t, "task", "list", "--skill", "echo", "--control", s.control); !strings.Contains(out, "succeeded") || strings.Count(out, "\n") != 3 {
		t.Fatalf("list --skill echo:\n%s", out)
	}

	// The submitter's records survive its restart (tasks.store). The
	// worker node stops first: its rpc server's close waits for the
	// submitter to acknowledge the end of its results stream (a submitter
	// gone first costs the stream's close timeout, 30 s).
	var before taskListResult
	mustJSON(t, &before, "task", "list", "--json", "--control", s.control)
	if err := w.stop(t); err != nil {
		t.Errorf("worker node: %v", err)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("submitter stop: %v", err)
	}
	s = restartS()
	var after taskListResult
	mustJSON(t, &after, "task", "list", "--json", "--control", s.control)
	if len(after.Tasks) != len(before.Tasks) || len(after.Tasks) != 9 {
		t.Fatalf("%d tasks before the restart, %d after; want 9", len(before.Tasks), len(after.Tasks))
	}
	for i := range after.Tasks {
		if a, b := after.Tasks[i], before.Tasks[i]; a.ID != b.ID || a.State != b.State || a.Status != b.Status {
			t.Fatalf("task %d: %+v before, %+v after", i, b, a)
		}
	}
	if out := mustRun(t, "task", "result", after.Tasks[0].ID.String(), "--control", s.control); !strings.Contains(out, `{"n":3}`) {
		t.Fatalf("result after restart:\n%s", out)
	}
}

// TestPythonWorker runs examples/python/worker.py against a node: it
// serves skills through the control socket, tasks sent from another node
// reach it, its events and results come back, a cancel reaches it, and
// when it exits its skills are withdrawn.
func TestPythonWorker(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		testenv.Missing(t, "the Python task worker example (python3)", "python3 is not installed: the Python worker example cannot be tested (apt-get install python3)")
	}
	w, s, kw, _ := taskNodes(t, "")
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "examples", "python", "worker.py")
	cmd := exec.Command(py, script, "--control", w.control, "--prefix", "py.")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			t.Logf("python worker stderr:\n%s", stderr.String())
		}
	})
	waitFor(t, 10*time.Second, "the Python worker to serve", func() bool {
		select {
		case <-exited:
			t.Fatalf("the Python worker exited: %s", stderr.String())
		default:
		}
		return strings.Contains(stdout.String(), "serving py.wordcount, py.sleep")
	})

	// The node's own index shows its skills at once; the mesh learns of
	// the change within the gossip's rate limit (10 s), so the tasks name
	// the node.
	skillsOf := func() []string {
		var res nodesResult
		mustJSON(t, &res, "nodes", "--json", "--control", w.control)
		for _, n := range res.Nodes {
			if n.Self {
				return n.Skills
			}
		}
		return nil
	}
	waitFor(t, 10*time.Second, "the worker node to serve the Python skills", func() bool {
		return slices.Contains(skillsOf(), "py.wordcount") && slices.Contains(skillsOf(), "py.sleep")
	})
	node := []string{"--node", kw.NodeID}

	id := sendTask(t, s, append(node, "--skill", "py.wordcount", "--params", `{"text": "to be or\nnot to be"}`)...)

	in, r := waitTask(t, s, id)
	if r.code != 0 || in.State != task.StateSucceeded || string(in.Output) != `{"words":6}` || in.Status != "success" || in.Events != 2 {
		t.Fatalf("wordcount: %+v (exit %d: %s)", in, r.code, r.stderr)
	}
	watch := mustRun(t, "task", "watch", id, "--control", s.control)
	if !strings.Contains(watch, `progress {"line":2,"of":2}`) {
		t.Fatalf("watch:\n%s", watch)
	}
	id = sendTask(t, s, append(node, "--skill", "py.wordcount", "--params", `{"text": "", "fail": "no dictionary"}`)...)
	if in, _ := waitTask(t, s, id); in.Error == nil || in.Error.Code != task.CodeDependencyMissing || in.Error.Message != "asked to fail: no dictionary" {
		t.Fatalf("failing wordcount: %+v %+v", in, in.Error)
	}
	oneLineError(t, netnode(t, append([]string{"task", "send", "--control", s.control}, append(node, "--skill", "py.wordcount", "--params", `{"txt": "x"}`)...)...), 1, "CONTRACT_VIOLATION")

	id = sendTask(t, s, append(node, "--skill", "py.sleep", "--params", `{"seconds": 30}`)...)
	waitFor(t, 10*time.Second, "the sleep task to run", func() bool {
		var in task.Info
		mustJSON(t, &in, "task", "result", id, "--json", "--control", s.control)
		return in.State == task.StateRunning
	})
	mustRun(t, "task", "cancel", id, "--control", s.control)
	if in, _ := waitTask(t, s, id); in.State != task.StateCancelled {
		t.Fatalf("cancelled sleep: %+v", in)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	waitFor(t, 10*time.Second, "the Python skills to be withdrawn", func() bool {
		sk := skillsOf()
		return !slices.Contains(sk, "py.wordcount") && slices.Contains(sk, "fake")
	})
	oneLineError(t, netnode(t, append([]string{"task", "send", "--control", s.control}, append(node, "--skill", "py.wordcount", "--params", `{"text": "x"}`)...)...), 1, "UNKNOWN_SKILL")

	// The worker node first, as in TestTaskCommands.
	if err := w.stop(t); err != nil {
		t.Errorf("worker node: %v", err)
	}
}
