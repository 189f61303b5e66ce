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

// Example_leave names a node, lets a layer announce its own part beside
// the application's, and withdraws the announcement when the node leaves:
// the other node hears "left" at once instead of waiting for the TTL.
func Example_leave() {
	workerID, _ := identity.Generate()
	watcherID, _ := identity.Generate()
	toWatcher := &pipe{self: workerID.NodeID(), id: watcherID.NodeID()}
	toWorker := &pipe{self: watcherID.NodeID(), id: workerID.NodeID()}
	worker, _ := capability.New(workerID, toWatcher, capability.Config{Name: "worker-7"})
	watcher, _ := capability.New(watcherID, toWorker, capability.Config{})
	toWatcher.peer, toWorker.peer = watcher, worker
	events := watcher.Subscribe(0)
	defer events.Close()

	_ = worker.AnnounceLayer("rpc", capability.Set{Tags: []string{"rpc:summarize"}})
	_ = worker.Announce(capability.Set{Tags: []string{"cpu"}}) // keeps the rpc layer's tag
	self, _ := worker.Index().Lookup(workerID.NodeID())
	fmt.Println(self.Name(), self.Set.Tags)
	for _, n := range watcher.Index().LookupName("WORKER-7") {
		fmt.Println(n.ID == workerID.NodeID())
	}
	worker.Withdraw()
	for len(events.C) > 0 {
		ev := <-events.C
		fmt.Println(ev.Kind, ev.Node.Name())
	}
	// Output:
	// worker-7 [cpu rpc:summarize]
	// true
	// registered worker-7
	// left worker-7
}
