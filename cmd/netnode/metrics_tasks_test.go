package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// The metrics handler serves the task layer's metrics when the node runs
// its worker and submitter.
func TestMetricsTasks(t *testing.T) {
	n := &node{m: startMesh(t, mesh.Config{}), rc: &runConfig{}, started: time.Now()}
	if err := n.startTasks(); err != nil {
		t.Fatal(err)
	}
	defer n.tasks.close()
	srv := httptest.NewServer(metricsHandler(n))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	for _, w := range []string{
		"netmesh_task_worker_running 0",
		"netmesh_task_worker_max_running 64",
		`netmesh_task_worker_refused_total{code="RESOURCE_EXHAUSTED"} 0`,
		`netmesh_task_submitter_tasks{state="queued"} 0`,
		`netmesh_task_submitter_refusals_total{code="other"} 0`,
		"netmesh_task_submitter_lost_total 0",
	} {
		if !strings.Contains(body.String(), w) {
			t.Errorf("metrics lack %q", w)
		}
	}
}
