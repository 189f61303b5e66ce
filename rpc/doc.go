// Package rpc is request/response over the mesh: named services, deadlines
// that travel with the request, streaming responses with credit-based flow
// control, cancellation end to end, discovery of servers through
// capabilities, load spreading across a queue group, retries and circuit
// breakers.
//
// A Server owns a mesh's stream listener for the protocol ProtocolName
// (one per Mesh) and dispatches calls to handlers by service name; each
// service is advertised as the capability tag "rpc:<service>". A Client
// calls a node by NodeID (Call, Stream) or any node advertising a service
// (CallService, Pick). HandleTyped, CallTyped and friends add a Codec
// (JSON by default) on top of the raw byte forms.
//
// Every call is one stream of package mesh/stream on that protocol: the
// request is its first message (opening a stream costs nothing more), the
// server answers on it, and a stream reset carries cancellation. Every
// call error is an *Error with a Kind; servers answer with a Status, whose
// band 0x8000–0xFFFF belongs to applications. docs/RPC.md describes the
// frames byte by byte and the design choices.
package rpc
