package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tasks section and the skills are checked at start, each error
// naming the key.
func TestTasksConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.json", `{"type": "object"}`)
	notJSON := write("bad.json", `{"type":`)
	badSchema := write("badschema.json", `{"type": 5}`)
	big := write("big.json", `"`+strings.Repeat("x", maxSchemaFile)+`"`)
	load := func(s string) (*runConfig, error) {
		path := write("n.toml", "key_file = \"k\"\n"+s)
		fc, err := loadConfigFile(path)
		if err != nil {
			return nil, err
		}
		return fc.validate(io.Discard)
	}
	rc, err := load(`
[tasks]
store = "/var/lib/tasks.db"
max_running = 3
drain_timeout = "1m"

[[skills]]
name = "resize"
command = ["cat", "-u"]
env = ["MODEL=small"]
input_schema = "` + good + `"
event_schemas = { progress = "` + good + `" }
statuses = ["success", "retry_later"]
timeout = "10s"
concurrency = 2
`)
	if err != nil {
		t.Fatal(err)
	}
	ts := rc.tasks
	if ts.store != "/var/lib/tasks.db" || ts.worker.MaxRunning != 3 || ts.drainTimeout != time.Minute || len(ts.skills) != 1 {
		t.Fatalf("tasks %+v", ts)
	}
	sk := ts.skills[0]
	if !filepath.IsAbs(sk.argv[0]) || sk.argv[1] != "-u" || sk.timeout != 10*time.Second || sk.skill.Concurrency != 2 || len(sk.skill.Events) != 1 {
		t.Fatalf("skill %+v", sk)
	}
	if rc, err := load(""); err != nil || rc.tasks.drainTimeout != defaultDrainTimeout {
		t.Fatalf("defaults: %+v %v", rc, err)
	}

	skill := func(lines string) string { return "[[skills]]\nname = \"s\"\n" + lines }
	for _, tc := range []struct{ config, want string }{
		{"[tasks]\ndrain_timeout = \"soon\"", "tasks.drain_timeout"},
		{"[tasks]\nmax_running = -1", "max_running"},
		{skill(""), "command is required"},
		{skill(`command = ["no-such-command-here"]`), "no-such-command-here"},
		{skill("command = [\"cat\"]\nenv = [\"NOEQUALS\"]"), "env"},
		{skill("command = [\"cat\"]\ntimeout = \"0s\""), "timeout"},
		{skill("command = [\"cat\"]\nconcurrency = -2"), "concurrency"},
		{skill("command = [\"cat\"]\ninput_schema = \"" + notJSON + "\""), "input_schema"},
		{skill("command = [\"cat\"]\noutput_schema = \"" + badSchema + "\""), "output schema"},
		{skill("command = [\"cat\"]\ninput_schema = \"" + big + "\""), "larger than"},
		{skill("command = [\"cat\"]\ninput_schema = \"/nonexistent\""), "no such file"},
		{skill("command = [\"cat\"]\nevent_schemas = { p = \"" + notJSON + "\" }"), "event_schemas.p"},
		{skill("command = [\"cat\"]\nstatuses = [\"Done!\"]"), "status"},
		{"[[skills]]\nname = \"Bad Name\"\ncommand = [\"cat\"]", "invalid skill"},
		{skill(`command = ["cat"]`) + "\n" + skill(`command = ["cat"]`), "listed twice"},
		{skill("command = [\"cat\"]\nshell = \"sh -c\""), "unknown key"},
	} {
		_, err := load(tc.config)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want one containing %q", tc.config, err, tc.want)
		}
	}
}
