package mesh

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/netmesh/netmesh/mesh/wire"
)

// Guards the protocol numbers: derived from the name (so they must never
// change, or nodes of two versions stop understanding each other), above
// the mesh's own, and refused for names that are not names.
func TestProtocolNumbers(t *testing.T) {
	rpc := MustProtocol("netmesh/rpc")
	if rpc.Number() != 38444 || rpc.Name() != "netmesh/rpc" {
		t.Fatalf("netmesh/rpc is %v; its number is part of the wire format", rpc)
	}
	for _, name := range []string{"", "with space", "tab\t", "ünicode", string(make([]byte, maxProtocolName+1)), "netmesh/capability", "netmesh/stream"} {
		if _, err := NewProtocol(name); err == nil {
			t.Errorf("NewProtocol(%q) succeeded", name)
		}
	}
	for i := range 1000 {
		if p := MustProtocol(fmt.Sprint("p", i)); p.Number() < minNamedProto {
			t.Fatalf("%v is among the mesh's own numbers", p)
		}
	}
}

// Guards the registry: one registration per number, whichever name the
// number came from, and none for the zero Protocol.
func TestRegistryRefusesCollisions(t *testing.T) {
	seen := map[wire.Proto]string{}
	var a, b Protocol
	for i := 0; b.name == ""; i++ {
		p := MustProtocol(fmt.Sprint("collide/", i))
		if name, ok := seen[p.id]; ok {
			a, b = MustProtocol(name), p
		}
		seen[p.id] = p.name
	}
	var r registry
	if err := r.add(&registration{proto: a, frames: func(*Peer, []byte) {}}); err != nil {
		t.Fatal(err)
	}
	if err := r.add(&registration{proto: b, frames: func(*Peer, []byte) {}}); !errors.Is(err, ErrProtoInUse) {
		t.Fatalf("%v registered beside %v, which has its number: %v", b, a, err)
	}
	if err := r.add(&registration{proto: Protocol{}, frames: func(*Peer, []byte) {}}); err == nil {
		t.Fatal("the zero Protocol registered")
	}
	if got := r.lookup(a.id); got == nil || got.proto != a {
		t.Fatalf("lookup(%d) = %v", a.id, got)
	}
	// Nor does a node open streams on a name whose number it registered
	// for another: the peer's answers would reach the other's handler.
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Handle(a, func(*Peer, []byte) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.OpenStreamOn(context.Background(), nil, b, StreamConfig{}); !errors.Is(err, ErrProtoInUse) {
		t.Fatalf("streams on %v beside a handler for %v: %v", b, a, err)
	}
}
