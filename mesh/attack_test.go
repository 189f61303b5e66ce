package mesh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	flynn "github.com/flynn/noise"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// These tests play the attacker: they need the MAC keys and session indexes
// that the package keeps to itself.

func startNode(t testing.TB, mod ...func(*Config)) *Mesh {
	t.Helper()
	cfg := Config{ListenAddr: "127.0.0.1:0", HandshakeRetransmit: 50 * time.Millisecond, HandshakeGiveUp: 2 * time.Second}
	for _, f := range mod {
		f(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func pair(t testing.TB) (a, b *Mesh, pb *Peer) {
	a, b = startNode(t), startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pb, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until b has promoted the session (a's ping confirms it).
	deadline := time.Now().Add(5 * time.Second)
	for b.Peer(a.ID()) == nil || !b.Peer(a.ID()).IsUp() {
		if time.Now().After(deadline) {
			t.Fatal("b never confirmed the session")
		}
		time.Sleep(time.Millisecond)
	}
	return a, b, pb
}

// ikInitiation builds a valid, MAC1-correct IK initiation to the holder of
// pub from a fresh identity.
func ikInitiation(t testing.TB, pub ed25519.PublicKey, sender uint32) []byte {
	id, _ := identity.Generate()
	return ikInitiationAt(t, id, pub, sender, time.Now())
}

// ikInitiationAt is an IK initiation from id with timestamp at.
func ikInitiationAt(t testing.TB, id *identity.Identity, pub ed25519.PublicKey, sender uint32, at time.Time) []byte {
	hs, err := noise.NewInitiator(noise.Config{Identity: id, PeerKey: pub}, at)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := hs.WriteMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	pkt := wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeInitIK, Suite: wireSuite(hs.Suite()), Sender: sender, Noise: msg})
	setMAC1(pkt, &macKey{key: mac1Key(pub)})
	return pkt
}

func rawSocket(t testing.TB) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func drops(m *Mesh, r DropReason) uint64 { return m.tr.stats.drops[r].Load() }

func waitDrop(t testing.TB, m *Mesh, r DropReason, before uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for drops(m, r) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("drop %q not counted (drops: %v)", r, m.Stats().Drops)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestBadInputIsDroppedAndCounted(t *testing.T) {
	a, b, pb := pair(t)
	// Capture one real data packet from a to b for the replay case.
	s := pb.cur.Load()
	sess := b.Peer(a.ID()).cur.Load()
	var captured []byte
	{
		p := getOut(64)
		hdr := wire.PutDataHeader(p.buf[:], wire.DataHeader{Receiver: s.remote, Counter: s.sendCounter.Add(1) - 1})
		wire.PutFrameHeader(p.buf[16:], protoDatagram.id)
		copy(p.buf[18:], "replay me")
		ct := s.send.Seal(p.buf[16:16], &p.nonce, binary.LittleEndian.Uint64(hdr[8:]), p.buf[16:27], hdr)
		captured = append([]byte(nil), p.buf[:16+len(ct)]...)
	}
	raw := rawSocket(t)
	dst := net.UDPAddrFromAddrPort(b.Addr())
	send := func(b []byte) {
		if _, err := raw.WriteToUDP(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	data := func(index uint32, n int) []byte {
		pkt := wire.PutDataHeader(make([]byte, n), wire.DataHeader{Receiver: index, Counter: 5})
		return pkt[:n]
	}
	badMAC := ikInitiation(t, b.id.PublicKey(), 77)
	badMAC[len(badMAC)-20] ^= 1
	wrongIdentity := forgedIK(t, b.id.PublicKey())
	oversized := wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeInitXX, Noise: make([]byte, wire.MaxNoiseMessage+1)})
	// An initiation's suite byte, changed and MAC1 made again: a byte no
	// suite has is refused before any crypto; the other suite's byte
	// makes the initiation's payload fail to open.
	withSuite := func(suite uint8) []byte {
		pkt := ikInitiation(t, b.id.PublicKey(), 78)
		pkt[1] = suite
		setMAC1(pkt, &macKey{key: mac1Key(b.id.PublicKey())})
		return pkt
	}
	otherSuite, switched := wire.SuiteChaChaPoly, DropBadHandshake
	if b.tr.suite == noise.SuiteChaChaPoly {
		otherSuite = wire.SuiteAESGCM
		if b.tr.refuseAESGCM.Load() {
			switched = DropSuiteRefused // a CPU without AES instructions
		}
	}
	cases := []struct {
		name string
		pkt  []byte
		want DropReason
	}{
		{"truncated data", data(sess.local, wire.DataOverhead-1), DropShort},
		{"truncated handshake", []byte{byte(wire.TypeInitIK), 0, 0, 0, 1}, DropShort},
		{"oversized handshake", oversized, DropOversized},
		{"wrong receiver index", data(sess.local^0xbeef, 64), DropUnknownIndex}, // the node's index tag kept
		{"bad tag", data(sess.local, 64), DropBadTag},
		{"bad handshake MAC", badMAC, DropBadMAC},
		{"bad identity signature", wrongIdentity, DropBadIdentity},
		{"unknown cipher suite", withSuite(7), DropBadHandshake},
		{"cipher suite switched", withSuite(otherSuite), switched},
	}
	for _, c := range cases {
		before := drops(b, c.want)
		send(c.pkt)
		waitDrop(t, b, c.want, before)
	}
	// A datagram of no netmesh type, a data packet whose receiver index
	// lacks the node's index tag, and one too short to hold an index
	// never reach the node: the kernel drops them (the sockets' filter)
	// and counts them.
	for name, pkt := range map[string][]byte{
		"unknown type":         {0x99, 1, 2, 3, 4, 5, 6, 7},
		"index without tag":    data(sess.local^(indexTagMask&^(indexTagMask-1)), 64),
		"no room for an index": {byte(wire.TypeData), 0, 0},
	} {
		before := b.Stats().SocketDrops
		send(pkt)
		for deadline := time.Now().Add(3 * time.Second); b.Stats().SocketDrops == before; {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not dropped by the socket", name)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	// A replayed packet is accepted once and dropped the second time, even
	// from another source address.
	send(captured)
	buf := make([]byte, MaxDatagramSize)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, _, err := b.ReadDatagram(ctx, buf)
	if err != nil || string(buf[:n]) != "replay me" {
		t.Fatalf("original packet: %q, %v", buf[:n], err)
	}
	before := drops(b, DropReplay)
	send(captured)
	waitDrop(t, b, DropReplay, before)
	// Nothing of the junk reached the user.
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, _, err := b.ReadDatagram(short, buf); err == nil {
		t.Fatalf("junk was delivered: %q", buf)
	}
	// And the real session still works.
	if err := a.SendDatagram(context.Background(), pb, []byte("still fine")); err != nil {
		t.Fatal(err)
	}
	if n, _, err := b.ReadDatagram(ctx, buf); err != nil || string(buf[:n]) != "still fine" {
		t.Fatalf("after the attack: %q, %v", buf[:n], err)
	}
}

// forgedIK is an IK initiation whose identity payload is signed by the
// wrong key: Noise decrypts it, the signature check fails.
func forgedIK(t testing.TB, to ed25519.PublicKey) []byte {
	id, _ := identity.Generate()
	other, _ := identity.Generate()
	static, _ := identity.X25519PublicKey(id.PublicKey())
	peerStatic, _ := identity.X25519PublicKey(to)
	hs, err := flynn.NewHandshakeState(flynn.Config{
		CipherSuite:   flynn.NewCipherSuite(flynn.DH25519, flynn.CipherChaChaPoly, flynn.HashBLAKE2s),
		Pattern:       flynn.HandshakeIK,
		Initiator:     true,
		Prologue:      []byte("netmesh v1"),
		StaticKeypair: flynn.DHKey{Private: id.X25519(), Public: static},
		PeerStatic:    peerStatic,
	})
	if err != nil {
		t.Fatal(err)
	}
	signed := append([]byte("netmesh static v1"), static...)
	payload := append(append([]byte(nil), id.PublicKey()...), other.Sign(signed)...)
	payload = binary.BigEndian.AppendUint64(payload, 1) // incarnation
	payload = binary.BigEndian.AppendUint64(payload, uint64(time.Now().UnixNano()))
	msg, _, _, err := hs.WriteMessage(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	pkt := wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeInitIK, Sender: 5, Noise: msg})
	setMAC1(pkt, &macKey{key: mac1Key(to)})
	return pkt
}

// TestReplayedInitiation: a captured IK initiation sent again makes
// nothing new. A copy of the initiation behind the responder's pending
// session gets the same response again (the initiator resends its
// initiation when the answer is slow; see handshake.go), and the pending
// session stays; an older initiation of the same node is refused as
// stale.
func TestReplayedInitiation(t *testing.T) {
	b := startNode(t)
	raw := rawSocket(t)
	dst := net.UDPAddrFromAddrPort(b.Addr())
	id, _ := identity.Generate()
	now := time.Now()
	older := ikInitiationAt(t, id, b.id.PublicKey(), 8, now.Add(-time.Second))
	pkt := ikInitiationAt(t, id, b.id.PublicKey(), 9, now)
	answer := func() []byte {
		t.Helper()
		if _, err := raw.WriteToUDP(pkt, dst); err != nil {
			t.Fatal(err)
		}
		raw.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 2048)
		n, _, err := raw.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return buf[:n]
	}
	pending := func() *session {
		b.tr.hs.mu.Lock()
		defer b.tr.hs.mu.Unlock()
		if p := b.tr.peers.get(id.NodeID()); p != nil {
			return p.next
		}
		return nil
	}
	first := answer()
	next := pending()
	if next == nil {
		t.Fatal("no pending session after the initiation")
	}
	if again := answer(); !bytes.Equal(again, first) {
		t.Errorf("the copy got another answer:\n%x\n%x", again, first)
	}
	if pending() != next {
		t.Error("the copy replaced the pending session")
	}
	before := drops(b, DropStaleInitiation)
	if _, err := raw.WriteToUDP(older, dst); err != nil {
		t.Fatal(err)
	}
	waitDrop(t, b, DropStaleInitiation, before)
	if pending() != next {
		t.Error("the older initiation replaced the pending session")
	}
}

func TestHandshakeFlood(t *testing.T) {
	a, b, pb := pair(t)
	const floodSize = 4000
	pkts := make([][]byte, floodSize)
	for i := range pkts {
		pkts[i] = ikInitiation(t, b.id.PublicKey(), uint32(i+1))
	}
	socks := make([]*net.UDPConn, 32) // many source ports
	for i := range socks {
		socks[i] = rawSocket(t)
	}
	dst := net.UDPAddrFromAddrPort(b.Addr())
	before := b.tr.stats.handshakesProcessed.Load()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, p := range pkts {
			socks[i%len(socks)].WriteToUDP(p, dst)
		}
	}()
	// The established pair keeps talking through the flood.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	buf := make([]byte, MaxDatagramSize)
	delivered := 0
	for i := 0; i < 200 && ctx.Err() == nil; i++ {
		a.SendDatagram(ctx, pb, []byte("through the flood"))
		rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		if _, _, err := b.ReadDatagram(rctx, buf); err == nil {
			delivered++
		}
		rcancel()
	}
	wg.Wait()
	processed := b.tr.stats.handshakesProcessed.Load() - before
	cookies := b.tr.stats.cookiesSent.Load()
	t.Logf("flood of %d initiations: %d processed with DH, %d cookie replies, %d/200 datagrams delivered, drops %v",
		floodSize, processed, cookies, delivered, b.Stats().Drops)
	if delivered < 190 {
		t.Errorf("only %d/200 datagrams got through the flood", delivered)
	}
	if cookies == 0 {
		t.Error("the node never asked for cookies")
	}
	if processed > floodSize/4 {
		t.Errorf("%d of %d flood initiations cost DH work, want under a quarter", processed, floodSize)
	}
}

func TestCookieRoundTrip(t *testing.T) {
	// A real initiator under a node that is under load gets a cookie,
	// resends with MAC2 and completes.
	a, b := startNode(t), startNode(t)
	b.tr.guard.underLoadUntil.Store(b.tr.now() + int64(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	if b.tr.stats.cookiesSent.Load() == 0 {
		t.Fatal("no cookie was needed")
	}
	// XX too: the cookie is sealed under the anonymous key.
	c := startNode(t)
	if _, err := c.Connect(ctx, b.Addr(), Pin{}); err != nil {
		t.Fatal(err)
	}
}

func TestSTUNDemux(t *testing.T) {
	b := startNode(t)
	raw := rawSocket(t)
	msg := make([]byte, 20)
	msg[1] = 1                                      // Binding request
	binary.BigEndian.PutUint32(msg[4:], 0x2112A442) // magic cookie
	dst := net.UDPAddrFromAddrPort(b.Addr())
	raw.WriteToUDP(msg, dst)
	waitDrop(t, b, DropUnknownType, 0) // no NAT engine: dropped and counted
	got := make(chan []byte, 1)
	h := func(p []byte, from netip.AddrPort) { got <- append([]byte(nil), p...) }
	b.tr.stun.Store(&h)
	raw.WriteToUDP(msg, dst)
	select {
	case p := <-got:
		if !bytes.Equal(p, msg) {
			t.Fatalf("STUN handler got %x", p)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("STUN message not demultiplexed to its handler")
	}
}

// A watcher that stops reading loses events beyond its queue, counted,
// and never blocks the node.
func TestSlowWatcherDropsCounted(t *testing.T) {
	m := startNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := m.WatchPeers(ctx) // registered, never iterated
	_ = events
	for range watcherQueue + 10 {
		m.notifyWatchers(PeerEvent{Up: true})
	}
	if got := m.Stats().PeerEventsDropped; got != 10 {
		t.Fatalf("PeerEventsDropped = %d, want 10", got)
	}
}

// Only a CPU without AES instructions refuses AES-GCM, and not when its
// operator asked for AES-GCM.
func TestRefusesAESGCM(t *testing.T) {
	for _, c := range []struct {
		hw         bool
		configured noise.Suite
		want       bool
	}{
		{true, 0, false},
		{true, noise.SuiteChaChaPoly, false},
		{true, noise.SuiteAESGCM, false},
		{false, 0, true},
		{false, noise.SuiteChaChaPoly, true},
		{false, noise.SuiteAESGCM, false},
	} {
		if got := refusesAESGCM(c.hw, c.configured); got != c.want {
			t.Errorf("hardware AES %v, configured %v: refuses %v, want %v", c.hw, c.configured, got, c.want)
		}
	}
}

// TestForgedSignatureGetsNothing: an IK initiation whose identity
// signature is forged is dropped as bad_identity with nothing sent back
// and no peer made for the identity it claims.
func TestForgedSignatureGetsNothing(t *testing.T) {
	b := startNode(t)
	raw := rawSocket(t)
	before, written := drops(b, DropBadIdentity), b.Stats().PacketsWritten
	if _, err := raw.WriteToUDP(forgedIK(t, b.id.PublicKey()), net.UDPAddrFromAddrPort(b.Addr())); err != nil {
		t.Fatal(err)
	}
	waitDrop(t, b, DropBadIdentity, before)
	if n := b.Stats().PacketsWritten; n != written {
		t.Errorf("the node wrote %d packets after a forged initiation", n-written)
	}
	if peers := b.Peers(); len(peers) != 0 {
		t.Errorf("the node keeps %d peers after a forged initiation", len(peers))
	}
}
