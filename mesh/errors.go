package mesh

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/netmesh/netmesh/identity"

	"github.com/netmesh/netmesh/mesh/stream"
)

// PinMismatchError reports that the node that answered is not the one
// pinned: its handshake proved it is Node, with Key. It matches
// ErrPeerMismatch (errors.Is).
type PinMismatchError struct {
	// Path is where the answer came from: an address, or "via <relay>".
	Path string
	Node identity.NodeID
	Key  ed25519.PublicKey
	// Pinned is what the caller pinned.
	Pinned Pin
}

// Error says who answered, in the words of docs/OPERATIONS.md.
func (e *PinMismatchError) Error() string {
	what := "id " + e.Pinned.ID.String()
	if e.Pinned.Key != nil {
		what = "key"
	}
	return fmt.Sprintf("pin mismatch: %s is node %s with key %x, not the pinned %s", e.Path, e.Node, []byte(e.Key), what)
}

// Is makes the error match ErrPeerMismatch.
func (e *PinMismatchError) Is(target error) bool { return target == ErrPeerMismatch }

// Sentinel errors returned by Mesh and Peer methods.
var (
	// ErrClosed is returned by calls on a closed mesh.
	ErrClosed = errors.New("mesh: closed")
	// ErrNotStarted is returned by calls that need Start first.
	ErrNotStarted = errors.New("mesh: not started")
	// ErrBackpressure means a bounded queue or window is full. It is a
	// signal, not a failure: nothing was sent, and the caller decides
	// whether to retry, wait or drop. Streams return the same value.
	ErrBackpressure = stream.ErrBackpressure
	// ErrTooLarge means a payload exceeds the size the path or stream
	// accepts. Streams return the same value.
	ErrTooLarge = stream.ErrTooLarge
	// ErrNoSession means the peer has no established session (it is down or
	// still handshaking).
	ErrNoSession = errors.New("mesh: no session with peer")
	// ErrHandshakeTimeout means a handshake got no answer before the
	// give-up time or the caller's deadline.
	ErrHandshakeTimeout = errors.New("mesh: handshake timed out")
	// ErrPeerMismatch means the node that answered is not the one the caller
	// pinned.
	ErrPeerMismatch = errors.New("mesh: peer identity does not match the pinned key or id")
	// ErrUnknownPeer means no peer with that NodeID is known.
	ErrUnknownPeer = errors.New("mesh: unknown peer")
	// ErrProtoInUse means a protocol's number already has a handler or
	// listener on this node.
	ErrProtoInUse = errors.New("mesh: protocol already registered")
	// ErrNoRoute means no direct session or route leads to the node.
	ErrNoRoute = errors.New("mesh: no route to node")
	// ErrPeerLeft means the peer said goodbye (Mesh.Leave) while a dial
	// to it was under way.
	ErrPeerLeft = errors.New("mesh: the peer left")
	// ErrNoAddress means the address family of the destination has no
	// socket.
	ErrNoAddress = errors.New("mesh: no socket for the destination's address family")
)
