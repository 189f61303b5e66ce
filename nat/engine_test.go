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
