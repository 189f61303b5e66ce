// Package bench holds netmesh's end-to-end benchmarks: two or more
// [github.com/netmesh/netmesh/mesh] nodes talking over real UDP sockets on
// 127.0.0.1. It has no code of its own besides this comment; the benchmarks
// live in its _test.go files, and start their nodes with package
// mesh/meshtest/testnode. mesh_test.go holds the transport's:
//
//   - BenchmarkDatagramThroughput: one sender pushing datagrams as fast as
//     back-pressure allows, one receiver reading them. Reports packets/s and
//     MB/s received, loss and back-pressure events.
//   - BenchmarkHandshakeIK: a full Noise IK Connect between fresh nodes.
//     Reports latency (ns/op) and handshakes/s.
//   - BenchmarkRoundTrip64: 64-byte request/response over datagrams on an
//     established session. Reports p50 and p99 round-trip latency.
//
// The other files add benchmarks for streams, relayed paths, channels and
// tasks (task_test.go: BenchmarkTasks, submit to result with one submitter
// and two workers next to an rpc unary call, and BenchmarkTaskQueueMemory,
// the memory of 100,000 queued tasks) and daemons (daemon_test.go:
// BenchmarkDaemonEvents next to an rpc unary call, BenchmarkDaemonMigration,
// a 1 MiB daemon moved while 10,000 events/s flow to it, and
// BenchmarkStandbyFailover), and scale_test.go BenchmarkScale: a round of
// capability announcements among 100 and 1,000 nodes in one process, each
// linked to 8 random others.
//
// Run them with
//
//	go test -run '^$' -bench . -benchmem ./bench/
//
// The side-by-side comparison with raw UDP and quic-go lives in the separate
// module bench/compare, so the library never depends on quic-go. The numbers
// and the commands that produced them are in docs/PERFORMANCE.md.
package bench
