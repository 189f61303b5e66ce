// Package grpc shows gRPC-Go running over the mesh: grpc.NewServer serves
// a meshnet.Listener, and a client reaches the server by NodeID through
// grpc.WithContextDialer and a meshnet.Dialer, on a direct and a relayed
// path. It is a module of its own so that the library's go.mod does not
// depend on gRPC; its tests are the example (go test ./... here).
package grpc
