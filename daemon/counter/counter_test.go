package counter

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/netmesh/netmesh/daemon"
)

func apply(t *testing.T, c *Counter, seq uint64, ev string) (Output, error) {
	t.Helper()
	outs, err := c.Handle(daemon.Event{Seq: seq, Data: []byte(ev)})
	if err != nil {
		return Output{}, err
	}
	var o Output
	if err := json.Unmarshal(outs[0], &o); err != nil {
		t.Fatal(err)
	}
	return o, nil
}

func TestCounterAddsAndRestores(t *testing.T) {
	d, _ := Kind().New(daemon.ID{}, nil)
	c := d.(*Counter)
	for i, ev := range []string{`{"key":"a","add":2}`, `{"key":"b","add":5}`, `{"key":"a","add":-1}`} {
		if _, err := apply(t, c, uint64(i+1), ev); err != nil {
			t.Fatal(err)
		}
	}
	o, err := apply(t, c, 4, `{"key":"a"}`)
	if err != nil || o.Value != 1 || o.Seq != 4 {
		t.Fatalf("read a: %+v %v", o, err)
	}
	state, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := Kind().New(daemon.ID{}, nil)
	if err := d2.(daemon.Stateful).Restore(state); err != nil {
		t.Fatal(err)
	}
	if o, err := apply(t, d2.(*Counter), 5, `{"key":"b","add":1}`); err != nil || o.Value != 6 {
		t.Fatalf("after restore: %+v %v", o, err)
	}
	for _, bad := range []string{`nope`, `{"key":""}`, `{"key":"a","add":9223372036854775807}`} {
		if _, err := apply(t, c, 6, bad); err == nil {
			t.Errorf("event %s applied", bad)
		}
	}
	c.values["m"] = math.MinInt64
	if _, err := apply(t, c, 6, `{"key":"m","add":-1}`); err == nil {
		t.Error("underflow applied")
	}
}
