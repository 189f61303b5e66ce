package task

import (
	"context"
	"fmt"

	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// SetBeforeDelivery makes s call f as each delivery arrives, before it
// looks at it: tests delay results with it, as a slow network would.
// Call it before any task is submitted.
func SetBeforeDelivery(s *Submitter, f func()) { s.beforeDelivery = f }

// SubmitRaw sends one task to node as it is, without the checks and
// signing of a Submitter (an attacker's submit), and returns the
// worker's verdict: the state it accepted the task in, or the refusal's
// code and message.
func SubmitRaw(ctx context.Context, c *rpc.Client, node identity.NodeID, id ID, skill string, params []byte, chain Chain) (State, Code, string, error) {
	resp, err := c.Call(ctx, node, WorkerService, appendSubmit(nil, []*submitItem{{ID: id, Skill: skill, Params: params, Chain: chain}}, nil, nil))
	if err != nil {
		return 0, "", "", err
	}
	r, err := parseSubmitReply(resp)
	if err != nil || len(r.Verdicts) != 1 {
		return 0, "", "", fmt.Errorf("bad reply: %v", err)
	}
	v := r.Verdicts[0]
	return v.State, v.Code, v.Message, nil
}

// AcceptAll answers a submit request as a worker that queues every task
// would: a fake worker's handler.
func AcceptAll(req []byte) ([]byte, error) {
	items, _, _, err := parseSubmit(req[1:])
	if err != nil {
		return nil, err
	}
	r := submitReply{Load: placement.Load{Limit: 1}}
	for _, it := range items {
		r.Verdicts = append(r.Verdicts, verdict{ID: it.ID, State: StateQueued})
	}
	return appendSubmitReply(nil, &r), nil
}

// SucceededChunk is a results chunk that says task id succeeded with
// output: what a lying worker would push.
func SucceededChunk(id ID, output string) []byte {
	return appendDeliver(nil, []*deliverItem{{Kind: itemFinal, ID: id, State: StateSucceeded, Status: DefaultStatus, Output: []byte(output)}})
}
