//go:build nat

package nat

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// peerNode is a Transport whose peers and paths the test sets; it records
// the frames and probes the engine sends.
type peerNode struct {
	mu     sync.Mutex
	paths  map[identity.NodeID]netip.AddrPort // up; invalid address: relayed
	locals []netip.AddrPort
	probes []netip.AddrPort
	sent   []Message
	// answer, if set, is called for every frame sent (outside mu), as the
	// peer would answer it later.
	answer func(to identity.NodeID, m Message)
}

func newPeerNode() *peerNode {
	return &peerNode{paths: map[identity.NodeID]netip.AddrPort{}}
}

func (f *peerNode) SendRaw(netip.AddrPort, []byte) error { return nil }
func (f *peerNode) Send(to identity.NodeID, b []byte) error {
	m, err := ParseMessage(b)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.sent = append(f.sent, m)
	ans := f.answer
	f.mu.Unlock()
	if ans != nil {
		ans(to, m)
	}
	return nil
}
func (f *peerNode) Path(id identity.NodeID) (netip.AddrPort, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.paths[id]
	return a, ok
}
func (f *peerNode) DirectPeers() []identity.NodeID {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []identity.NodeID
	for id, a := range f.paths {
		if a.IsValid() {
			out = append(out, id)
		}
	}
	return out
}
func (f *peerNode) Probe(_ identity.NodeID, a netip.AddrPort) error {
	f.mu.Lock()
	f.probes = append(f.probes, a)
	f.mu.Unlock()
	return nil
}
func (f *peerNode) LocalAddrs() []netip.AddrPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]netip.AddrPort(nil), f.locals...)
}
func (f *peerNode) SetPathReason(identity.NodeID, string) {}

func (f *peerNode) probeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.probes)
}

func frame(t *testing.T, m Message) []byte {
	t.Helper()
	b, err := m.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// offerAndPunch plays a coordinator that introduces peer to the engine:
// an Offer, then the go signal with cands.
func offerAndPunch(t *testing.T, e *Engine, coord, peer identity.NodeID, tx uint64, cands []netip.AddrPort) {
	t.Helper()
	e.HandleFrame(coord, frame(t, Message{Type: MsgOffer, TxID: tx, Peer: peer, NAT: Cone}))
	e.HandleFrame(coord, frame(t, Message{Type: MsgPunch, TxID: tx, Peer: peer, NAT: Cone, Candidates: cands}))
}

// A go signal that arrives after Close (the mesh stops the engine while
// its socket readers still run) must not probe, nor start a goroutine
// Close no longer waits for.
func TestNoPunchAfterClose(t *testing.T) {
	f := newPeerNode()
	coord, peer := identity.NodeID{1}, identity.NodeID{2}
	f.paths[coord] = netip.MustParseAddrPort("198.51.100.1:4000")
	f.paths[peer] = netip.AddrPort{} // relayed
	e := New(f, Config{RetryAfter: -1})
	e.Start()
	e.HandleFrame(coord, frame(t, Message{Type: MsgOffer, TxID: 7, Peer: peer, NAT: Cone}))
	e.Close()
	e.HandleFrame(coord, frame(t, Message{Type: MsgPunch, TxID: 7, Peer: peer, NAT: Cone,
		Candidates: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.5:4000")}}))
	if n := f.probeCount(); n != 0 {
		t.Fatalf("%d probes sent after Close", n)
	}
	e.mu.Lock()
	n := len(e.runs)
	e.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d punch runs left after Close", n)
	}
}

// A coordinator that introduces this node to every peer it has a session
// with must not make it probe addresses of the coordinator's choosing for
// all of them at once: at most maxPending punches run at a time.
func TestPunchRunsBounded(t *testing.T) {
	f := newPeerNode()
	coord := identity.NodeID{0xc0}
	f.paths[coord] = netip.MustParseAddrPort("198.51.100.1:4000")
	var victims []netip.AddrPort
	for i := range MaxCandidates {
		victims = append(victims, netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), uint16(1000+i)))
	}
	const peers = 3 * maxPending
	e := New(f, Config{RetryAfter: -1, PunchTimeout: time.Hour, ProbeInterval: time.Hour})
	defer e.Close()
	for i := range peers {
		p := identity.NodeID{1, byte(i >> 8), byte(i)}
		f.mu.Lock()
		f.paths[p] = netip.AddrPort{}
		f.mu.Unlock()
		offerAndPunch(t, e, coord, p, uint64(i+1), victims)
	}
	e.mu.Lock()
	runs := len(e.runs)
	e.mu.Unlock()
	if runs > maxPending {
		t.Errorf("%d punches running, want at most %d", runs, maxPending)
	}
	if n := f.probeCount(); n > maxPending*MaxCandidates {
		t.Errorf("%d probes in the first round, want at most %d", n, maxPending*MaxCandidates)
	}
}

// Candidates come from a peer (the coordinator): a multicast or broadcast
// address is never a peer's endpoint, and probing it would spray every
// host on the link.
func TestPunchSkipsMulticastCandidates(t *testing.T) {
	f := newPeerNode()
	coord, peer := identity.NodeID{1}, identity.NodeID{2}
	f.paths[coord] = netip.MustParseAddrPort("198.51.100.1:4000")
	f.paths[peer] = netip.AddrPort{}
	e := New(f, Config{RetryAfter: -1, PunchTimeout: time.Hour, ProbeInterval: time.Hour})
	defer e.Close()
	good := netip.MustParseAddrPort("203.0.113.5:4000")
	offerAndPunch(t, e, coord, peer, 9, []netip.AddrPort{
		netip.MustParseAddrPort("224.0.0.1:4000"),
		netip.MustParseAddrPort("239.255.255.250:1900"),
		netip.MustParseAddrPort("255.255.255.255:4000"),
		netip.MustParseAddrPort("[ff02::1]:4000"),
		good,
	})
	f.mu.Lock()
	probes := append([]netip.AddrPort(nil), f.probes...)
	f.mu.Unlock()
	if len(probes) != 1 || probes[0] != good {
		t.Fatalf("probed %v, want only %v", probes, good)
	}
}

// A peer on the node's own LAN (or host) sees the node's private address,
// which is one of its local addresses: that is no evidence that the node
// has no NAT when public destinations saw another mapping.
func TestClassifyIgnoresLANPeer(t *testing.T) {
	local := netip.MustParseAddrPort("10.0.1.2:4000")
	mapped := netip.MustParseAddrPort("198.51.100.7:4000")
	obs := []observation{
		{dst: netip.MustParseAddrPort("192.0.2.1:3478"), mapped: mapped},
		{dst: netip.MustParseAddrPort("192.0.2.2:3478"), mapped: mapped},
		{dst: netip.MustParseAddrPort("10.0.1.3:4000"), mapped: local},
	}
	for i := range obs { // every arrival order
		o := append(append([]observation(nil), obs[i:]...), obs[:i]...)
		if typ, reflex := classify(o, []netip.AddrPort{local}); typ != Cone || reflex != mapped {
			t.Errorf("order %d: %v %v, want cone %v", i, typ, reflex, mapped)
		}
	}
	// A symmetric NAT with a LAN peer is symmetric, not open.
	sym := []observation{
		{dst: netip.MustParseAddrPort("10.0.1.3:4000"), mapped: local},
		{dst: netip.MustParseAddrPort("192.0.2.1:3478"), mapped: mapped},
		{dst: netip.MustParseAddrPort("192.0.2.2:3478"), mapped: netip.MustParseAddrPort("198.51.100.7:4001")},
	}
	if typ, _ := classify(sym, []netip.AddrPort{local}); typ != Symmetric {
		t.Errorf("symmetric NAT with a LAN peer: %v", typ)
	}
	// Without public destinations (a LAN-only mesh, tests on loopback) the
	// private ones still count.
	lan := []observation{
		{dst: netip.MustParseAddrPort("10.0.1.3:4000"), mapped: local},
		{dst: netip.MustParseAddrPort("10.0.1.4:4000"), mapped: local},
	}
	if typ, _ := classify(lan, []netip.AddrPort{local}); typ != Open {
		t.Errorf("LAN only: %v, want open", typ)
	}
	// A public node is open, whoever else answered.
	pub := netip.MustParseAddrPort("198.51.100.9:4000")
	open := []observation{
		{dst: netip.MustParseAddrPort("10.0.1.3:4000"), mapped: netip.MustParseAddrPort("10.0.1.2:4000")},
		{dst: netip.MustParseAddrPort("192.0.2.1:3478"), mapped: pub},
	}
	if typ, _ := classify(open, []netip.AddrPort{pub, local}); typ != Open {
		t.Errorf("public node: %v, want open", typ)
	}
}
