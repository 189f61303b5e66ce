// Package nat is netmesh's NAT traversal engine: it learns the node's
// reflexive address (the address a NAT maps its socket to), classifies the
// NAT, and upgrades relayed sessions to direct ones by coordinated hole
// punching through a peer both sides are connected to.
//
// # Build tags
//
// The engine is compiled only with build tags, so a node that does not
// want NAT traversal carries none of its code or dependencies (the types
// it shares with package mesh, in api.go, build always):
//
//   - nat: reflex discovery, classification and hole punching (this
//     engine, with github.com/pion/stun/v3).
//   - portmap: with nat, port mapping on the router (NAT-PMP, then
//     UPnP-IGD), switched on by Config.PortMap; see PortMapper.
//
// Without the tags the mesh's NAT methods exist and return
// mesh.ErrUnsupported; relayed paths work unchanged.
//
// # How it works
//
// Reflex discovery sends STUN Binding requests to configured servers from
// the mesh's own socket (the mesh hands STUN replies to HandleSTUN) and asks
// directly connected peers "what address do you see me at?" with a
// ReflexRequest frame. The NAT is Open when a reflex equals a local
// address, Symmetric when two destinations see different mappings, Cone
// when they see the same one, and Unknown until two destinations answered;
// destinations with private addresses (a peer on the same LAN) count only
// when no public one answered.
//
// ConnectDirect asks a coordinator, a peer both sides have sessions with,
// to introduce the two nodes. The coordinator forwards an Offer to the
// target, collects its Accept, then sends both a Punch message at the same
// moment, each carrying the other's NAT type and candidate addresses (its
// reflex as the coordinator sees it first, then its own STUN reflex, port
// mapping and local addresses). Decide, a pair-type matrix, says whether
// to punch; if so each side at once sends authenticated probes (pings on
// the existing end-to-end session) to every candidate, and repeats them
// until the path is direct or the punch window ends. The engine never moves
// a path itself: the mesh switches to the direct path when the first
// authenticated packet arrives directly, and falls back to the relay when
// it goes silent. A failed or skipped punch leaves the session relayed,
// with the reason shown in the peer's stats, and is retried with backoff.
//
// The engine does not import the mesh: it talks through Transport, and
// the mesh feeds it frames (HandleFrame) and STUN messages (HandleSTUN).
// docs/NAT.md explains the choices and shows the measurements.
package nat
