package task_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon/task"
	"github.com/netmesh/netmesh/internal/netlab"
	"github.com/netmesh/netmesh/mesh"
)

// A worker behind a real kernel NAT dials out to a controller on the
// public side and then receives the tasks the controller places on it,
// over that session: no polling, no inbound port. The wait of twice the
// NAT's UDP timeout before the first task shows the session, not a
// leftover mapping from the dial, carries them (keepalives hold it).
func TestTasksReverseConnectionThroughKernelNAT(t *testing.T) {
	lab := netlab.New(t)
	pub := lab.Public()
	router, host := lab.NATRouter(pub, 1, "")
	const natTimeout = 2 * time.Second
	router.Sysctl("net.netfilter.nf_conntrack_udp_timeout", "2")
	router.Sysctl("net.netfilter.nf_conntrack_udp_timeout_stream", "2")

	controller := newNode(t, func(c *mesh.Config) {
		c.Conn = pub.ListenUDP("198.51.100.1:7000")
		c.KeepaliveInterval = time.Hour // the controller never refreshes the mapping itself
	})
	workerNode := newNode(t, func(c *mesh.Config) {
		c.Conn = host.ListenUDP("10.0.1.2:0")
		c.KeepaliveInterval = natTimeout / 3
	})
	s := controller.submitter(t, task.SubmitterConfig{})
	workerNode.worker(t, task.WorkerConfig{}, task.Skill{Name: "transcode", Handler: func(_ context.Context, t *task.Task) (task.Result, error) {
		for i := 1; i <= 3; i++ {
			if err := t.Emit("progress", fmt.Appendf(nil, "%d", i)); err != nil {
				return task.Result{}, err
			}
		}
		return task.Result{Output: t.Params}, nil
	}})
	connect(t, workerNode, controller) // the worker dials out
	sees(t, controller, workerNode, hasSkill("transcode"))
	if p := controller.m.Peer(workerNode.id()); p == nil || p.Endpoint().Addr().String() != "198.51.100.11" {
		t.Fatalf("the controller does not see the worker behind its NAT (%v)", p)
	}

	time.Sleep(2 * natTimeout)

	for i := range 3 {
		id, err := s.Submit(ctxT(t), task.Request{Skill: "transcode", Where: capability.Filter{}, Params: fmt.Appendf(nil, `{"file":%d}`, i)})
		if err != nil {
			t.Fatal(err)
		}
		var events int
		for ev, err := range s.Events(ctxT(t), id) {
			if err != nil {
				t.Fatal(err)
			}
			if events++; string(ev.Data) != fmt.Sprint(events) {
				t.Fatalf("event %d: %s", events, ev.Data)
			}
		}
		in, err := s.Wait(ctxT(t), id)
		if err != nil || in.Node != workerNode.id() || events != 3 {
			t.Fatalf("task %d: %+v, %d events, %v", i, in, events, err)
		}
		var out struct{ File int }
		if json.Unmarshal(in.Output, &out); out.File != i {
			t.Fatalf("task %d: output %s", i, in.Output)
		}
	}
}
