package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// The metrics handler serves the task layer's metrics when the node runs
// its worker and submitter, and the daemon runtime's when it runs one.
func TestMetricsTasksAndDaemons(t *testing.T) {
	n := &node{m: startMesh(t, mesh.Config{}), rc: &runConfig{}, started: time.Now()}
	if err := n.startTasks(); err != nil {
		t.Fatal(err)
	}
	defer n.tasks.close()
	if err := n.startDaemons(); err != nil {
		t.Fatal(err)
	}
	defer n.daemons.Close()
	body := scrapeNode(t, n)
	for _, w := range []string{
		"netmesh_task_worker_running 0",
		"netmesh_task_worker_max_running 64",
		`netmesh_task_worker_refused_total{code="RESOURCE_EXHAUSTED"} 0`,
		`netmesh_task_submitter_tasks{state="queued"} 0`,
		`netmesh_task_submitter_refusals_total{code="other"} 0`,
		"netmesh_task_submitter_lost_total 0",
		"netmesh_daemon_hosted 0",
		"netmesh_daemon_max 1024",
		`netmesh_daemon_migration_failures_total{phase="cutover"} 0`,
		"netmesh_daemon_failovers_total 0",
	} {
		if !strings.Contains(body, w) {
			t.Errorf("metrics lack %q", w)
		}
	}
}

// scrapeNode returns what n's metrics handler serves at /metrics.
func scrapeNode(t *testing.T, n *node) string {
	t.Helper()
	srv := httptest.NewServer(metricsHandler(n))
	defer srv.Close()
	return scrape(t, strings.TrimPrefix(srv.URL, "http://"))
}
