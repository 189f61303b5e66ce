package rpc

// Internal limits, for the tests of package rpc_test.
const (
	NodeTableMin  = nodeTableMin
	BreakerMemory = breakerMemory
)
