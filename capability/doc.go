// Package capability is netmesh's decentralised discovery: nodes announce
// what they can do (tags such as "gpu" or "skill:summarize", metadata such
// as "gpu_mem_gb" = "24"), every node keeps an index of every other node's
// newest announcement, and anyone can ask "which nodes have a GPU with at
// least 24 GB?" without a registry.
//
// Announcements are signed by their origin's ed25519 identity and flooded
// over the mesh: each node verifies, indexes and forwards a new version to
// its other neighbours (split horizon), bumping a hop count that travels
// outside the signature and stops at MaxHops. Beside it, also unsigned,
// every sender writes the lifetime the announcement has left with it, and
// the receiver expires it that long after receipt (never longer than the
// signed TTL), so a copy that arrives late does not live longer there.
// Receivers pin each NodeID to its key on first sight, drop versions they
// already have, and reject older ones, so a peer can neither forge nor roll
// back another node's announcement. Every origin a node has never heard of
// is charged to the neighbour that introduced it (a rate and a count per
// neighbour), so one peer making up identities cannot fill an index or
// flood the mesh through it. Origins re-announce every TTL/3; a node is
// Online while its announcement is fresh, Degraded after a missed refresh,
// and Offline (gone from the index) when it runs out, or at once when the
// node withdraws it (Withdraw) on leaving.
//
// A node's own set is made of parts: the application's (Announce), each
// layer's (AnnounceLayer; the mesh's and rpc's, say), telemetry, and its
// name (Config.Name), so no owner drops what another announced.
//
// The Engine does not import the mesh: the node hands it messages
// (HandleMessage), session changes (PeerUp, PeerDown) and time (Tick), and
// lends it a Transport to send through. docs/CAPABILITIES.md describes the
// wire format, the limits, the filter syntax and the security properties.
package capability
