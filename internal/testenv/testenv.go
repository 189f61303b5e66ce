// Package testenv decides what a test does when something it needs from
// the machine (a tool, root, a kernel feature) is missing: skip, and say
// so in the test command's summary, or, under CI=true, fail.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// skipLogEnv names the environment variable through which the test
// command (.ci/test) collects the lab tests that skipped: each skip
// appends one line, "group: reason", to the file it names, and the
// command prints them as its last line, since go test shows nothing of a
// passing package's skips.
const skipLogEnv = "NETMESH_SKIPLOG"

// Missing skips t because something it needs is missing here, and logs
// the skip under group (what a newcomer loses, e.g. "port mapping against
// a real router (miniupnpd)") for the test command's summary. Under
// CI=true it fails t instead: .ci/run installs every tool, so a skip
// there means the install broke, and a green run must not hide that
// these tests did not run.
func Missing(t testing.TB, group, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; under CI=true these tests must run (.ci/run installs what they need): %s", reason, group)
	}
	if path := os.Getenv(skipLogEnv); path != "" {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintf(f, "%s: %s\n", group, reason)
			f.Close()
		}
	}
	t.Skip(reason)
}
