package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/netmesh/netmesh/daemon/task"
)

// tasksSpec is the tasks section of the config: the node's worker and
// submitter.
type tasksSpec struct {
	// Store is the file that keeps the node's submitted tasks across
	// restarts; "" keeps them in memory.
	Store string `toml:"store"`
	// MaxRunning and QueueSize bound the worker (0: the defaults).
	MaxRunning int `toml:"max_running"`
	QueueSize  int `toml:"queue_size"`
	// DrainTimeout is how long SIGTERM lets running tasks finish.
	DrainTimeout string `toml:"drain_timeout"`
}

// skillSpec is one [[skills]] entry: a skill served by an executable.
type skillSpec struct {
	Name    string   `toml:"name"`
	Version string   `toml:"version"`
	Command []string `toml:"command"` // argv; no shell
	Dir     string   `toml:"dir"`
	Env     []string `toml:"env"` // KEY=VALUE added to netnode's environment
	// InputSchema, OutputSchema and EventSchemas are JSON Schema files.
	InputSchema  string            `toml:"input_schema"`
	OutputSchema string            `toml:"output_schema"`
	EventSchemas map[string]string `toml:"event_schemas"`
	Statuses     []string          `toml:"statuses"`
	Timeout      string            `toml:"timeout"`
	Concurrency  int               `toml:"concurrency"`
	// Groups a submitter's membership certificate must name one of.
	Groups []string `toml:"groups"`
}

// taskSettings is the validated tasks configuration.
type taskSettings struct {
	store        string
	worker       task.WorkerConfig
	drainTimeout time.Duration
	skills       []execSkill
}

// defaultDrainTimeout is tasks.drain_timeout when unset: long enough for
// short tasks to finish, short enough for a service manager's stop
// timeout (systemd's default is 90 s).
const defaultDrainTimeout = 30 * time.Second

// maxSchemaFile bounds a schema file read at start.
const maxSchemaFile = 1 << 20

// validateTasks checks the tasks section and the skills into rc.
func (fc fileConfig) validateTasks(rc *runConfig) error {
	ts := taskSettings{drainTimeout: defaultDrainTimeout}
	if t := fc.Tasks; t != nil {
		ts.store = t.Store
		if t.MaxRunning < 0 || t.QueueSize < 0 {
			return errors.New("tasks: max_running and queue_size must not be negative")
		}
		ts.worker.MaxRunning, ts.worker.QueueSize = t.MaxRunning, t.QueueSize
		if t.DrainTimeout != "" {
			d, err := time.ParseDuration(t.DrainTimeout)
			if err != nil || d < 0 {
				return fmt.Errorf("tasks.drain_timeout %q: want a duration like 30s", t.DrainTimeout)
			}
			ts.drainTimeout = d
		}
	}
	seen := map[string]bool{}
	for i, s := range fc.Skills {
		es, err := s.execSkill()
		if err != nil {
			return fmt.Errorf("skills[%d]: %w", i, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("skills[%d]: skill %q is listed twice", i, s.Name)
		}
		seen[s.Name] = true
		ts.skills = append(ts.skills, es)
	}
	rc.tasks = ts
	return nil
}

// execSkill validates one skill entry: the command exists, the schemas
// are files of JSON, the statuses and limits are sane. The schemas
// themselves are compiled when the skill is registered.
func (s skillSpec) execSkill() (execSkill, error) {
	es := execSkill{argv: s.Command, dir: s.Dir, env: s.Env}
	es.skill = task.Skill{Name: s.Name, Version: s.Version, Statuses: s.Statuses, Concurrency: s.Concurrency}
	es.skill.Groups = s.Groups
	if len(s.Command) == 0 || s.Command[0] == "" {
		return es, fmt.Errorf("skill %q: command is required: the executable and its arguments, as a list (no shell)", s.Name)
	}
	path, err := exec.LookPath(s.Command[0])
	if err != nil {
		return es, fmt.Errorf("skill %q: command %q: %w", s.Name, s.Command[0], err)
	}
	es.argv = append([]string{path}, s.Command[1:]...)
	for _, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return es, fmt.Errorf("skill %q: env %q: want KEY=VALUE", s.Name, kv)
		}
	}
	if s.Concurrency < 0 {
		return es, fmt.Errorf("skill %q: concurrency %d must not be negative", s.Name, s.Concurrency)
	}
	if s.Timeout != "" {
		d, err := time.ParseDuration(s.Timeout)
		if err != nil || d <= 0 {
			return es, fmt.Errorf("skill %q: timeout %q: want a duration like 5m", s.Name, s.Timeout)
		}
		es.timeout = d
	}
	if es.skill.Input, err = readSchema(s.InputSchema); err != nil {
		return es, fmt.Errorf("skill %q: input_schema: %w", s.Name, err)
	}
	if es.skill.Output, err = readSchema(s.OutputSchema); err != nil {
		return es, fmt.Errorf("skill %q: output_schema: %w", s.Name, err)
	}
	if s.EventSchemas != nil {
		es.skill.Events = map[string]json.RawMessage{}
		for name, path := range s.EventSchemas {
			if es.skill.Events[name], err = readSchema(path); err != nil {
				return es, fmt.Errorf("skill %q: event_schemas.%s: %w", s.Name, name, err)
			}
		}
	}
	// The rest of the contract (names, statuses, the schemas' content) is
	// checked by compiling it, as Register will.
	probe := es.skill
	probe.Handler = es.run
	if err := task.ValidateSkill(probe); err != nil {
		return es, err
	}
	return es, nil
}

// readSchema reads a JSON Schema file; "" means none.
func readSchema(path string) (json.RawMessage, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSchemaFile+1))
	switch {
	case err != nil:
		return nil, err
	case len(data) > maxSchemaFile:
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSchemaFile)
	case !json.Valid(data):
		return nil, fmt.Errorf("%s: not JSON", path)
	}
	return data, nil
}
