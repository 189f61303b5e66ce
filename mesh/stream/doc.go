// Package stream is netmesh's per-peer stream engine: reliable and
// unreliable message streams multiplexed over one peer's encrypted
// session, with fragmentation, selective acknowledgements, RFC 6298
// retransmission timeouts, fast retransmit, a NewReno congestion
// controller shared by all streams of a peer, per-stream flow control, and
// back-pressure reported to the caller as ErrBackpressure.
//
// The engine does not import package mesh. It sees the session as a Link
// (send one frame body, report the frame budget); mesh implements Link,
// creates one Mux per peer, feeds it the peer's stream frames with
// HandleFrame, and re-exports Open, Accept and the Stream API.
//
// A Stream carries whole messages: Send copies a message and returns at
// once (ErrBackpressure when the send window is full), Recv returns the
// next whole message, Close ends the sending side gracefully and Reset
// ends the stream with a code the peer sees. docs/STREAMS.md describes
// the wire format byte by byte, the congestion and flow control, and the
// memory bounds.
package stream
