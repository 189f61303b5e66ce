//go:build nat

package nat

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/netmesh/netmesh/identity"
)

// fakeNode is a Transport with one STUN server that answers every Binding
// request with a fixed mapped address, and local addresses the test moves.
type fakeNode struct {
	e      *Engine
	mapped netip.AddrPort
	stun   atomic.Int64 // Binding requests sent

	mu     sync.Mutex
	locals []netip.AddrPort
}

func (f *fakeNode) SendRaw(addr netip.AddrPort, b []byte) error {
	f.stun.Add(1)
	req := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := req.Decode(); err != nil {
		return err
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: net.IP(f.mapped.Addr().AsSlice()), Port: int(f.mapped.Port())})
	if err != nil {
		return err
	}
	go f.e.HandleSTUN(resp.Raw, addr) // as the socket reader would, later
	return nil
}

func (f *fakeNode) Send(identity.NodeID, []byte) error          { return nil }
func (f *fakeNode) Path(identity.NodeID) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
func (f *fakeNode) DirectPeers() []identity.NodeID              { return nil }
func (f *fakeNode) Probe(identity.NodeID, netip.AddrPort) error { return nil }
func (f *fakeNode) SetPathReason(identity.NodeID, string)       {}
func (f *fakeNode) setLocals(a ...netip.AddrPort)               { f.mu.Lock(); f.locals = a; f.mu.Unlock() }
func (f *fakeNode) LocalAddrs() []netip.AddrPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]netip.AddrPort(nil), f.locals...)
}

// Issue 8: the NAT is classified again when the node's local address
// changes (a laptop moving networks), and not otherwise before
// ReclassifyInterval.
func TestReclassifyOnLocalAddressChange(t *testing.T) {
	f := &fakeNode{mapped: netip.MustParseAddrPort("198.51.100.7:4000")}
	f.setLocals(netip.MustParseAddrPort("10.0.1.2:4000"))
	f.e = New(f, Config{STUNServers: []string{"192.0.2.1:3478", "192.0.2.2:3478"}, ReclassifyInterval: time.Hour})
	f.e.Start()
	defer f.e.Close()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait("the first classification", func() bool { return f.e.Type() != Unknown })
	sent := f.stun.Load()
	time.Sleep(3 * tickInterval)
	if f.stun.Load() != sent {
		t.Fatalf("reclassified with nothing changed (%d -> %d STUN requests)", sent, f.stun.Load())
	}
	f.setLocals(netip.MustParseAddrPort("10.0.9.5:4000"))
	wait("a reclassification after the address change", func() bool { return f.stun.Load() > sent })
}

// TestReachChangeRetriesPunches: when what peers learn of how to reach
// this node changes, the punches that failed are tried again at the next
// tick rather than after their backoff: those this node asked for, and
// those a peer asked for, which this node now asks for itself through the
// same coordinator. A port mapping at the address the node already had
// (a cone NAT keeps the port) changes no address but makes the node open,
// which is enough. A punch that is direct is left alone, and
// OnReflexChange hears of every change of the address, and only of those.
func TestReachChangeRetriesPunches(t *testing.T) {
	var heard []netip.AddrPort
	f := &fakeNode{}
	f.e = New(f, Config{OnReflexChange: func(a netip.AddrPort) { heard = append(heard, a) }})
	e := f.e
	reflex := netip.MustParseAddrPort("198.51.100.11:7001")
	e.typ, e.reflex = Cone, reflex
	mine, askedPeer, coord := identity.NodeID{1}, identity.NodeID{2}, identity.NodeID{3}
	failed := &retryState{failures: 1, next: time.Now().Add(time.Hour)}
	direct := &retryState{direct: true}
	e.retries[mine] = failed
	e.retries[identity.NodeID{4}] = direct
	// A punch the peer asked for through coord fails here.
	r := &run{peer: askedPeer, askedBy: coord, done: make(chan struct{})}
	e.runs[askedPeer] = r
	e.finish(r, &Error{Kind: KindPunchFailed, Peer: askedPeer, Reason: "no direct answer"})

	if err := e.SetReflexOverride(reflex); err != nil { // mapped at the reflex
		t.Fatal(err)
	}
	if time.Until(failed.next) > time.Second || !direct.next.IsZero() {
		t.Fatalf("failed punch next at %v, direct one at %v", failed.next, direct.next)
	}
	if a := e.retries[askedPeer]; a == nil || a.coord != coord || time.Until(a.next) > time.Second {
		t.Fatalf("the punch the peer asked for is not tried again through its coordinator: %+v", a)
	}
	if len(heard) != 0 {
		t.Fatalf("OnReflexChange heard %v with the address unchanged", heard)
	}
	failed.next = time.Now().Add(time.Hour)
	if err := e.SetReflexOverride(reflex); err != nil { // the same again
		t.Fatal(err)
	}
	if time.Until(failed.next) < time.Minute {
		t.Fatalf("nothing changed, yet the punch is retried at %v", failed.next)
	}
	other := netip.MustParseAddrPort("198.51.100.11:40000")
	if err := e.SetReflexOverride(other); err != nil {
		t.Fatal(err)
	}
	e.ClearReflexOverride()
	if len(heard) != 2 || heard[0] != other || heard[1] != reflex {
		t.Fatalf("OnReflexChange heard %v, want [%v %v]", heard, other, reflex)
	}
}
