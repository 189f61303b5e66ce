package meshprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/netmesh/netmesh/daemon/task"
)

// NewTasks returns a collector of the task layer: a worker's queue, the
// tasks it ran and refused, and a submitter's records by state, the
// refusals it met, and the tasks it lost and placed again. Either may be
// nil: its metrics are then absent.
func NewTasks(w *task.Worker, s *task.Submitter) prometheus.Collector {
	return newTaskCollector(w, s)
}

// otherCode is the code label of refusals whose code package task does
// not define (an application's own).
const otherCode = "other"

// taskCollector exports task.WorkerStats and task.SubmitterStats, with
// their breakdowns by code and by state.
type taskCollector struct {
	w *task.Worker
	s *task.Submitter

	running, queued, limit, unacked *prometheus.Desc
	finished, refused               *prometheus.Desc
	worker                          []counterField[task.WorkerStats]

	records, refusals *prometheus.Desc
	submitter         []counterField[task.SubmitterStats]
}

func newTaskCollector(w *task.Worker, s *task.Submitter) *taskCollector {
	type WS = task.WorkerStats
	type SS = task.SubmitterStats
	return &taskCollector{
		w:        w,
		s:        s,
		running:  newDesc("task_worker_running", "Tasks this worker runs now."),
		queued:   newDesc("task_worker_queued", "Tasks waiting in this worker's queue."),
		limit:    newDesc("task_worker_max_running", "Tasks this worker runs at most at once (MaxRunning)."),
		unacked:  newDesc("task_worker_unacked_bytes", "Bytes of results and events waiting for their submitters' acknowledgement."),
		finished: newDesc("task_worker_finished_total", "Tasks this worker finished, by final state: succeeded, failed, cancelled.", "state"),
		refused:  newDesc("task_worker_refused_total", "Submits this worker refused, by code.", "code"),
		worker: []counterField[WS]{
			counter("task_worker_accepted_total", "Tasks this worker queued.", func(s *WS) uint64 { return s.Accepted }),
			counter("task_worker_duplicates_total", "Submits of a task this worker already held (answered, not run again).", func(s *WS) uint64 { return s.Duplicates }),
			counter("task_worker_timeouts_total", "Tasks that failed with TIMEOUT (counted in failed too).", func(s *WS) uint64 { return s.TimedOut }),
			counter("task_worker_handed_back_total", "Queued tasks given back unstarted when the worker shut down.", func(s *WS) uint64 { return s.HandedBack }),
			counter("task_worker_panics_total", "Handlers that panicked (failed HANDLER_ERROR).", func(s *WS) uint64 { return s.Panics }),
			counter("task_worker_deliveries_total", "Chunks of results and events sent to submitters.", func(s *WS) uint64 { return s.Delivered }),
			counter("task_worker_delivery_failures_total", "Results streams to submitters that broke (their unacknowledged items go again).", func(s *WS) uint64 { return s.DeliveryFailures }),
			counter("task_worker_results_dropped_total", "Results given up after ResultRetention or refused by their submitter.", func(s *WS) uint64 { return s.Dropped }),
		},
		records:  newDesc("task_submitter_tasks", "Task records this submitter holds, by state.", "state"),
		refusals: newDesc("task_submitter_refusals_total", "Refusals workers answered this submitter's submits with, by code.", "code"),
		submitter: []counterField[SS]{
			counter("task_submitter_submitted_total", "Tasks a worker accepted from this submitter.", func(s *SS) uint64 { return s.Submitted }),
			counter("task_submitter_failed_placements_total", "Submits that found no node to take the task.", func(s *SS) uint64 { return s.FailedPlacements }),
			counter("task_submitter_delivered_total", "Events and results received from workers.", func(s *SS) uint64 { return s.Delivered }),
			counter("task_submitter_unknown_deliveries_total", "Events and results for tasks this submitter does not hold or did not place there.", func(s *SS) uint64 { return s.Unknown }),
			counter("task_submitter_lost_total", "Tasks marked lost: their worker died, left or forgot them.", func(s *SS) uint64 { return s.Lost }),
			counter("task_submitter_redispatched_total", "Lost or handed-back tasks placed again on another node.", func(s *SS) uint64 { return s.Replaced }),
			counter("task_submitter_late_results_total", "Results refused with LATE_RESULT: they arrived after the deadline.", func(s *SS) uint64 { return s.Late }),
			counter("task_submitter_evicted_total", "Finished records dropped to stay within MaxRecords.", func(s *SS) uint64 { return s.Evicted }),
			counter("task_submitter_events_dropped_total", "Progress events dropped beyond MaxEvents per task.", func(s *SS) uint64 { return s.EventsDropped }),
		},
	}
}

// Describe implements prometheus.Collector.
func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.running, c.queued, c.limit, c.unacked, c.finished, c.refused, c.records, c.refusals} {
		ch <- d
	}
	describeCounters(ch, c.worker, nil)
	describeCounters(ch, c.submitter, nil)
}

// Collect implements prometheus.Collector.
func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	if c.w != nil {
		st := c.w.Stats()
		gauge(ch, c.running, float64(st.Running))
		gauge(ch, c.queued, float64(st.Queued))
		gauge(ch, c.limit, float64(st.Limit))
		gauge(ch, c.unacked, float64(st.Unacked))
		for state, n := range map[string]uint64{"succeeded": st.Succeeded, "failed": st.Failed, "cancelled": st.Cancelled} {
			ch <- prometheus.MustNewConstMetric(c.finished, prometheus.CounterValue, float64(n), state)
		}
		collectCounters(ch, &st, c.worker, nil, nil)
		collectByCode(ch, c.refused, c.w.Refusals())
	}
	if c.s != nil {
		st := c.s.Stats()
		for state, n := range c.s.States() {
			gauge(ch, c.records, float64(n), state.String())
		}
		collectCounters(ch, &st, c.submitter, nil, nil)
		collectByCode(ch, c.refusals, c.s.Refusals())
	}
}

// collectByCode sends a counter by code: every code package task
// defines, zeros included, and "other".
func collectByCode(ch chan<- prometheus.Metric, d *prometheus.Desc, r task.Refusals) {
	for code, n := range r.ByCode {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), string(code))
	}
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(r.Other), otherCode)
}
