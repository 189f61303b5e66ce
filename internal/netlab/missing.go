package netlab

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

// Skip groups: what a newcomer loses when the tool is missing.
const (
	groupNamespaces = "kernel NAT and real packet loss (network namespaces)"
	groupCoturn     = "STUN against a real server (coturn)"
	groupMiniUPnPd  = "port mapping against a real router (miniupnpd)"
)

// missing skips t because something the lab needs is missing here, and
// logs the skip for the test command's summary. Under CI=true it fails t
// instead: .ci/run installs every tool, so a skip there means the install
// broke, and a green run must not hide that these tests did not run.
func missing(t testing.TB, group, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("netlab: %s; under CI=true the lab tests must run (.ci/run installs what they need): %s", reason, group)
	}
	if path := os.Getenv(skipLogEnv); path != "" {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintf(f, "%s: %s\n", group, reason)
			f.Close()
		}
	}
	t.Skip("netlab: " + reason)
}
