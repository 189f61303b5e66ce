// Package compare benchmarks netmesh against raw UDP, quic-go and NATS in
// one run and in the same shape, so benchstat can put them side by side:
//
//   - BenchmarkDatagrams/impl={quic,netmesh,udp-gso,udp-plain}: unreliable
//     datagrams over loopback, one sender pushing as fast as the transport
//     lets it, one receiver. Reports packets/s and MB/s received and loss.
//   - BenchmarkHandshake/conc={1,8}/impl={quic,quic-x25519,netmesh}: full
//     handshakes between clients and servers that have never met (quic-go:
//     TLS 1.3 with a self-signed ECDSA P-256 certificate the client
//     verifies; netmesh: Noise IK), one at a time (latency) or eight at once
//     (capacity of the machine). Reports ns/op and handshakes/s.
//   - BenchmarkRTT64/impl={quic,netmesh,udp-plain}: 64-byte request/response on
//     an open connection (quic-go: a bidirectional stream; netmesh:
//     datagrams on an established session). Reports p50 and p99 in µs.
//   - BenchmarkStreamBulk/impl={quic,netmesh}: bulk transfer on one
//     reliable stream (quic-go: 64 KiB writes and io.ReadFull reads;
//     netmesh: 64 KiB messages, SendBlocking and ReadMessage), timed until
//     the receiver has every byte. Reports MB/s. Issue 3's target: at
//     least 2x quic-go.
//   - BenchmarkStreamRTT64/impl={quic,netmesh}: 64-byte request/response on
//     one already open reliable stream (quic-go: the same measurement as
//     BenchmarkRTT64/impl=quic; netmesh: a mesh stream, where BenchmarkRTT64
//     uses datagrams). Reports p50 and p99 in µs. Target: netmesh's p50 at
//     most half quic-go's.
//   - BenchmarkUnary/callers={1,64}/impl={quic,nats,netmesh}: unary calls
//     with a 16-byte request and reply, from 1 or 64 concurrent callers
//     sharing one connection (quic-go: a new stream per call, as gRPC
//     does; NATS: a request through an embedded nats-server; netmesh:
//     rpc.Client.Call). Reports calls/s and p50 and p99 in µs. Issue 7's
//     target is netmesh's own: a unary p50 at most 1.5x the raw session
//     round trip (BenchmarkRTT64/impl=netmesh in the same run, or rpc's
//     BenchmarkRawRTT); the others are there for comparison.
//   - BenchmarkFanOut/mode={window,flood}/impl={nats,netmesh}: one
//     publisher, ten subscribers, 256-byte messages (netmesh: a channel;
//     NATS: a subject, through an embedded nats-server v2.15 with nats.go
//     clients, plaintext, every client a connection of its own), the
//     publisher at most 32 messages ahead of the slowest subscriber or
//     unthrottled. Reports deliveries/s and loss-%.
//
// The stream and rpc benchmarks fail, instead of hanging, when nothing
// progresses for 10 s; the round-trip benchmarks when one round trip takes
// over a second.
//
// It is its own module (github.com/netmesh/netmesh/bench/compare, with a
// replace directive pointing at the repository root) so the netmesh library
// never depends on quic-go or NATS. Run it from this directory with
//
//	go test -run '^$' -bench . -benchmem -count 6 | tee /tmp/cmp.txt
//	benchstat -col /impl /tmp/cmp.txt
//
// The first column is benchstat's baseline (quic, or nats for the
// benchmarks without quic-go), so the percentages are netmesh (and raw
// UDP) relative to it.
//
// docs/PERFORMANCE.md has the numbers and how to read them.
package compare
