// Package counter is a small daemon kind with real state: named
// counters. It is netnode's built-in kind, so an operator can spawn,
// feed, snapshot and migrate a daemon from the shell, and the demo and
// benchmarks use it.
//
// An event is a JSON object {"key": "k", "add": n}: it adds n (which may
// be negative, or 0 to read) to counter k. The output is
// {"key": "k", "value": v, "seq": s}: the counter's new value and the
// event's sequence number. The state is every counter, as a JSON object;
// Handle is deterministic, so migrations and standbys replay it exactly.
package counter

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/netmesh/netmesh/daemon"
	"github.com/netmesh/netmesh/identity"
)

// Name is the kind's name.
const Name = "counter"

// Bounds of one daemon's state.
const (
	// MaxKeys bounds the counters of one daemon: its state stays below
	// about 30 MiB, within the runtime's default MaxStateSize.
	MaxKeys = 100_000
	// MaxKeyLen bounds a counter's name in bytes.
	MaxKeyLen = 256
)

// Kind returns the kind, for Runtime.Register. It runs on every node.
func Kind() daemon.Kind {
	return daemon.Kind{Name: Name, New: func(daemon.ID, *identity.Identity) (daemon.Daemon, error) {
		return &Counter{values: map[string]int64{}}, nil
	}}
}

// Event is one event of a counter daemon.
type Event struct {
	Key string `json:"key"`
	Add int64  `json:"add"`
}

// Output is what a counter daemon returns for an event.
type Output struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
	Seq   uint64 `json:"seq"`
}

// Counter is a daemon of kind counter.
type Counter struct {
	values map[string]int64
}

// Handle applies one event.
func (c *Counter) Handle(ev daemon.Event) ([][]byte, error) {
	var e Event
	if err := json.Unmarshal(ev.Data, &e); err != nil {
		return nil, fmt.Errorf("counter: event: %w", err)
	}
	v, ok := c.values[e.Key]
	switch {
	case e.Key == "" || len(e.Key) > MaxKeyLen:
		return nil, fmt.Errorf("counter: key of %d bytes: 1 to %d", len(e.Key), MaxKeyLen)
	case !ok && len(c.values) >= MaxKeys:
		return nil, fmt.Errorf("counter: %d counters already", MaxKeys)
	case e.Add > 0 && v > math.MaxInt64-e.Add, e.Add < 0 && v < math.MinInt64-e.Add:
		return nil, errors.New("counter: overflow")
	}
	v += e.Add
	c.values[e.Key] = v
	out, err := json.Marshal(Output{Key: e.Key, Value: v, Seq: ev.Seq})
	return [][]byte{out}, err
}

// Snapshot returns every counter as a JSON object (keys sorted).
func (c *Counter) Snapshot() ([]byte, error) { return json.Marshal(c.values) }

// Restore replaces the counters with those of a snapshot.
func (c *Counter) Restore(state []byte) error {
	values := map[string]int64{}
	if err := json.Unmarshal(state, &values); err != nil {
		return fmt.Errorf("counter: state: %w", err)
	}
	if len(values) > MaxKeys {
		return fmt.Errorf("counter: state of %d counters, at most %d", len(values), MaxKeys)
	}
	c.values = values
	return nil
}

// Values reads the counters of a snapshot's state.
func Values(state []byte) (map[string]int64, error) {
	values := map[string]int64{}
	err := json.Unmarshal(state, &values)
	return values, err
}
