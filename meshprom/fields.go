package meshprom

import "github.com/prometheus/client_golang/prometheus"

// namespace prefixes every metric name.
const namespace = "netmesh_"

// counterField is a counter read from one field of a stats snapshot S.
type counterField[S any] struct {
	desc *prometheus.Desc
	get  func(*S) uint64
}

// reasonField is one value of the reason label of a counter by reason.
type reasonField[S any] struct {
	reason string
	get    func(*S) uint64
}

// newDesc names a metric netmesh_<name>.
func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+name, help, labels, nil)
}

// counter returns a counterField named netmesh_<name>.
func counter[S any](name, help string, get func(*S) uint64) counterField[S] {
	return counterField[S]{desc: newDesc(name, help), get: get}
}

// describeCounters sends the descriptions of fields and byReason (if
// not nil).
func describeCounters[S any](ch chan<- *prometheus.Desc, fields []counterField[S], byReason *prometheus.Desc) {
	for _, f := range fields {
		ch <- f.desc
	}
	if byReason != nil {
		ch <- byReason
	}
}

// collectCounters sends the counters and the counter by reason read from
// st. Every reason is sent, zeros included, so that rate() works from the
// start.
func collectCounters[S any](ch chan<- prometheus.Metric, st *S, fields []counterField[S], byReason *prometheus.Desc, reasons []reasonField[S]) {
	for _, f := range fields {
		ch <- prometheus.MustNewConstMetric(f.desc, prometheus.CounterValue, float64(f.get(st)))
	}
	for _, r := range reasons {
		ch <- prometheus.MustNewConstMetric(byReason, prometheus.CounterValue, float64(r.get(st)), r.reason)
	}
}

// gauge sends one gauge value.
func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// b2f is 1 for true and 0 for false.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
