package meshnet

import (
	"fmt"
	"net"

	"github.com/netmesh/netmesh/identity"
)

// Addr is the net.Addr of a node: its NodeID, on the network "netmesh".
type Addr struct {
	Node identity.NodeID
}

// Network returns "netmesh".
func (Addr) Network() string { return Network }

// String returns the NodeID in its text form.
func (a Addr) String() string { return a.Node.String() }

// nodeOf returns the NodeID a net.Addr names: an Addr, or any address
// whose String is a NodeID (a Dialer's address has its port cut first).
func nodeOf(addr net.Addr) (identity.NodeID, error) {
	switch a := addr.(type) {
	case Addr:
		return a.Node, nil
	case *Addr:
		if a != nil {
			return a.Node, nil
		}
	case nil:
	default:
		return identity.ParseNodeID(a.String())
	}
	return identity.NodeID{}, fmt.Errorf("meshnet: no address")
}

// ParseAddress returns the NodeID of a dial address: a NodeID, or
// "<node-id>:<port>" as net/http and gRPC pass it (the port is ignored).
func ParseAddress(address string) (identity.NodeID, error) {
	if host, _, err := net.SplitHostPort(address); err == nil {
		address = host
	}
	return identity.ParseNodeID(address)
}
