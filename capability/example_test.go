package capability_test

import (
	"fmt"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// pipe is a two-node transport for the example: it hands each message
// straight to the other engine. A real mesh queues it on the session.
type pipe struct {
	self identity.NodeID
	peer *capability.Engine
	id   identity.NodeID
}

func (p *pipe) Peers() []identity.NodeID { return []identity.NodeID{p.id} }

func (p *pipe) Send(_ identity.NodeID, msg []byte) error {
	return p.peer.HandleMessage(p.self, msg)
}

// Example announces a GPU node's capabilities and finds it from another
// node with a filter.
func Example() {
	gpuID, _ := identity.Generate()
	laptopID, _ := identity.Generate()
	toLaptop := &pipe{self: gpuID.NodeID(), id: laptopID.NodeID()}
	toGPU := &pipe{self: laptopID.NodeID(), id: gpuID.NodeID()}
	gpu, _ := capability.New(gpuID, toLaptop, capability.Config{})
	laptop, _ := capability.New(laptopID, toGPU, capability.Config{})
	toLaptop.peer, toGPU.peer = laptop, gpu

	err := gpu.Announce(capability.Set{
		Tags:     []string{"gpu", "cuda", "skill:summarize"},
		Metadata: map[string]string{"gpu_mem_gb": "24"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	f, _ := capability.ParseFilter("gpu && gpu_mem_gb>=24")
	for _, n := range laptop.Index().FindNodes(f) {
		fmt.Println(n.ID == gpuID.NodeID(), n.Set.Tags, n.Hops, n.Status)
	}
	// Output: true [cuda gpu skill:summarize] 1 online
}
