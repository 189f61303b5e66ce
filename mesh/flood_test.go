package mesh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/meshtest"
	"github.com/netmesh/netmesh/mesh/udp"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// The attacks of issue 24 (handshake flood, junk flood, replayed and
// reflected handshakes), each as a test that asserts what must hold. How
// much throughput the established traffic keeps is measured by the flood
// benchmarks (flood_bench_test.go), not asserted here.

// xxInitiation builds a valid, MAC1-correct XX initiation from a fresh
// ephemeral key.
func xxInitiation(t testing.TB, sender uint32) []byte {
	id, _ := identity.Generate()
	hs, err := noise.NewInitiator(noise.Config{Identity: id}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := hs.WriteMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	pkt := wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeInitXX, Suite: wireSuite(hs.Suite()), Sender: sender, Noise: msg})
	setMAC1(pkt, &macKey{key: mac1Key(nil)})
	return pkt
}

// flood sends pkts, round robin, from one socket to dst as fast as the
// socket takes them until stop is closed, and returns how many it sent.
func flood(t testing.TB, dst netip.AddrPort, pkts [][]byte, stop <-chan struct{}) <-chan int {
	raw := rawSocket(t)
	to := net.UDPAddrFromAddrPort(dst)
	sent := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				sent <- n
				return
			default:
			}
			for range 64 {
				raw.WriteToUDP(pkts[n%len(pkts)], to)
				n++
			}
		}
	}()
	return sent
}

// streamDelivers sends msgs messages of size bytes from a to b on a
// reliable stream and checks b reads every one of them, in order. It
// fails when a message takes longer than streamStall: how long all of
// them take depends on how much of the machine the flood leaves.
func streamDelivers(t *testing.T, a *Mesh, pb *Peer, b *Mesh, msgs, size int) {
	t.Helper()
	const streamStall = 10 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := a.OpenStream(ctx, pb, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	errc := make(chan error, 1)
	go func() {
		msg := make([]byte, size)
		for i := range msgs {
			msg[0] = byte(i)
			if err := s.SendBlocking(ctx, msg); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	actx, acancel := context.WithTimeout(ctx, streamStall)
	rs, _, err := b.AcceptStream(actx)
	acancel()
	if err != nil {
		t.Fatalf("accept during the flood: %v", err)
	}
	for i := range msgs {
		rctx, rcancel := context.WithTimeout(ctx, streamStall)
		got, err := rs.Recv(rctx)
		rcancel()
		if err != nil {
			t.Fatalf("message %d of %d during the flood: %v", i, msgs, err)
		}
		if len(got) != size || got[0] != byte(i) {
			t.Fatalf("message %d: %d bytes starting %d", i, len(got), got[0])
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// startNodeAt starts a node on another loopback address: a source the
// flood's per-source limit does not cover.
func startNodeAt(t testing.TB, ip string) *Mesh {
	return startNode(t, func(c *Config) { c.ListenAddr = ip + ":0" })
}

// Guards issue 24 item 3: an unpaced flood of valid-looking IK
// initiations from one socket. The established stream keeps delivering,
// a new node from another address connects, and the flood costs the
// victim almost no Diffie-Hellman work (its source's bucket runs dry and
// the rest is dropped before the queue).
func TestHandshakeFloodFromOneSocket(t *testing.T) {
	a, b, pb := pair(t)
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = ikInitiation(t, b.id.PublicKey(), uint32(i+1))
	}
	stop := make(chan struct{})
	sent := flood(t, b.Addr(), pkts, stop)
	defer func() {
		if stop != nil {
			close(stop)
			<-sent
		}
	}()
	waitDrop(t, b, DropRateLimited, 0) // the flood put b under load

	streamDelivers(t, a, pb, b, 1000, 4096)
	c := startNodeAt(t, "127.0.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()}); err != nil {
		t.Fatalf("a new node could not connect during the flood (drops %v): %v", b.Stats().Drops, err)
	}
	close(stop)
	n := <-sent
	stop = nil
	processed := b.tr.stats.handshakesProcessed.Load()
	t.Logf("%d initiations sent: %d cost DH work, drops %v", n, processed, b.Stats().Drops)
	if max := uint64(4 * defaultHandshakeRate); processed > max {
		t.Errorf("%d initiations cost DH work, want at most %d (the source's bucket and a few more)", processed, max)
	}
}

// Guards issue 24 item 4: an unpaced flood of junk, of unknown types
// (which the kernel drops for the node) and of data packets naming no
// session, is dropped and counted, and the established stream keeps
// delivering.
func TestJunkFloodKeepsSession(t *testing.T) {
	a, b, pb := pair(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	pkts := make([][]byte, 64)
	for i := range pkts {
		p := make([]byte, 64+rnd.IntN(1100))
		for j := range p {
			p[j] = byte(rnd.Uint32())
		}
		switch i % 3 {
		case 0:
			p[0] = 0x42 // unknown type
		case 1: // shaped like data, the receiver index without b's tag
			wire.PutDataHeader(p, wire.DataHeader{Receiver: rnd.Uint32()&^indexTagMask | ^b.tr.indexTag&indexTagMask, Counter: rnd.Uint64()})
		case 2: // with the tag, as from someone who saw b's traffic
			wire.PutDataHeader(p, wire.DataHeader{Receiver: rnd.Uint32()&^indexTagMask | b.tr.indexTag, Counter: rnd.Uint64()})
		}
		pkts[i] = p
	}
	stop := make(chan struct{})
	sent := flood(t, b.Addr(), pkts, stop)
	waitDrop(t, b, DropUnknownIndex, 0)
	streamDelivers(t, a, pb, b, 1000, 4096)
	close(stop)
	n := <-sent
	st := b.Stats()
	t.Logf("%d junk packets sent, drops %v, %d by the socket", n, st.Drops, st.SocketDrops)
	if st.SocketDrops == 0 {
		t.Error("the socket let junk of unknown type and untagged data through")
	}
}

// Guards issue 24 item 7: an IK initiation recorded on the wire and
// replayed after the responder forgot the peer is refused as stale, and
// makes no peer.
func TestReplayedInitiationAfterForget(t *testing.T) {
	fast := func(c *Config) {
		c.KeepaliveInterval = 100 * time.Millisecond
		c.HandshakeGiveUp = 500 * time.Millisecond
		c.ForgetAfter = 200 * time.Millisecond
	}
	b := startNode(t, fast)
	tap := meshtest.Listen(t, meshtest.Options{})
	var recorded atomic.Pointer[[]byte]
	tap.SetOnSend(func(m udp.Message) {
		if wire.Type(m.Buf[0]) == wire.TypeInitIK && recorded.Load() == nil {
			pkt := bytes.Clone(m.Buf)
			recorded.Store(&pkt)
		}
	})
	a := startNode(t, fast, func(c *Config) { c.Conn = tap })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	for p := b.Peer(a.ID()); p == nil || !p.IsUp(); p = b.Peer(a.ID()) {
		if ctx.Err() != nil {
			t.Fatal("b never confirmed the session")
		}
		time.Sleep(time.Millisecond)
	}
	a.Close()
	deadline := time.Now().Add(10 * time.Second)
	for b.Peer(a.ID()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("b never forgot a")
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := drops(b, DropStaleInitiation)
	raw := rawSocket(t)
	raw.WriteToUDP(*recorded.Load(), net.UDPAddrFromAddrPort(b.Addr()))
	waitDrop(t, b, DropStaleInitiation, before)
	if b.Peer(a.ID()) != nil {
		t.Fatal("the replayed initiation made a peer")
	}
}

// replies sends pkt to dst from a fresh socket and returns the sizes of
// the datagrams that come back: the first within wait, any more within
// 100 ms of the one before.
func replies(t *testing.T, dst netip.AddrPort, pkt []byte, wait time.Duration) []int {
	t.Helper()
	raw := rawSocket(t)
	if _, err := raw.WriteToUDP(pkt, net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	buf := make([]byte, 2048)
	for {
		raw.SetReadDeadline(time.Now().Add(wait))
		n, _, err := raw.ReadFromUDP(buf)
		if err != nil {
			return sizes
		}
		sizes = append(sizes, n)
		wait = 100 * time.Millisecond
	}
}

// Guards issue 24 item 7: nothing the node sends to an address it has
// not verified is larger than the packet that made it send (a spoofed
// source cannot make it amplify a flood): an XX initiation is padded to
// the size of its response, an IK response is smaller than its
// initiation, a cookie reply smaller than either.
func TestNoReplyLargerThanRequest(t *testing.T) {
	b := startNode(t)
	wait := 2 * time.Second
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"xx initiation", xxInitiation(t, 1)},
		{"ik initiation", ikInitiation(t, b.id.PublicKey(), 2)},
	} {
		got := replies(t, b.Addr(), c.pkt, wait)
		if len(got) != 1 {
			t.Fatalf("%s: %d replies %v, want one", c.name, len(got), got)
		}
		if got[0] > len(c.pkt) {
			t.Errorf("%s of %d bytes answered with %d", c.name, len(c.pkt), got[0])
		}
	}
	// An XX initiation without its padding is not answered at all.
	short := xxInitiation(t, 3)
	short = append(short[:wire.HandshakeHeaderSize+32], make([]byte, 2*wire.MACSize)...)
	setMAC1(short, &macKey{key: mac1Key(nil)})
	if got := replies(t, b.Addr(), short, 300*time.Millisecond); len(got) != 0 {
		t.Errorf("an unpadded XX initiation of %d bytes got replies %v", len(short), got)
	}
	// Under load: cookie replies.
	b.tr.guard.underLoadUntil.Store(b.tr.now() + int64(time.Hour))
	for _, pkt := range [][]byte{xxInitiation(t, 4), ikInitiation(t, b.id.PublicKey(), 5)} {
		got := replies(t, b.Addr(), pkt, wait)
		if len(got) != 1 || got[0] != wire.CookieReplySize || got[0] > len(pkt) {
			t.Errorf("under load, an initiation of %d bytes got replies %v, want one cookie reply", len(pkt), got)
		}
	}
}

// Guards Config.IKOnly: an XX initiation gets no answer at all, while
// initiators that know the node's key connect as usual.
func TestIKOnlyIgnoresXX(t *testing.T) {
	b := startNode(t, func(c *Config) { c.IKOnly = true })
	if got := replies(t, b.Addr(), xxInitiation(t, 1), 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("an XX initiation got replies %v", got)
	}
	if drops(b, DropXXRefused) == 0 {
		t.Fatal("the XX initiation was not counted as xx_refused")
	}
	a := startNode(t)
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := a.Connect(short, b.Addr(), Pin{}); err == nil {
		t.Fatal("an XX handshake completed with an IK-only node")
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := a.Connect(ctx, b.Addr(), Pin{Key: b.id.PublicKey()}); err != nil {
		t.Fatalf("IK to an IK-only node: %v", err)
	}
}

// Guards the per-source grouping: an IPv6 /64 is one source, as is an
// IPv4 address (mapped or not); neighbouring blocks are not.
func TestSourceKey(t *testing.T) {
	same := [][2]string{
		{"192.0.2.1", "::ffff:192.0.2.1"},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
	}
	for _, c := range same {
		if sourceKey(netip.MustParseAddr(c[0])) != sourceKey(netip.MustParseAddr(c[1])) {
			t.Errorf("%s and %s are different sources", c[0], c[1])
		}
	}
	differ := [][2]string{
		{"192.0.2.1", "192.0.2.2"},
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
	}
	for _, c := range differ {
		if sourceKey(netip.MustParseAddr(c[0])) == sourceKey(netip.MustParseAddr(c[1])) {
			t.Errorf("%s and %s are one source", c[0], c[1])
		}
	}
	// A /64 gets one bucket, however many addresses it sends from.
	r := newRateLimiter[netip.Addr](5)
	allowed := 0
	for i := range 100 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		if r.allow(sourceKey(a), 0) {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("a /64 got %d tokens at once, want 5", allowed)
	}
}

// Guards the rate limiter's bound: a flood from more sources than
// maxBuckets leaves new sources without a token until idle buckets are
// forgotten, instead of growing without bound.
func TestRateLimiterBounded(t *testing.T) {
	r := newRateLimiter[uint32](1)
	for i := range maxBuckets {
		r.allow(uint32(i), 0)
	}
	if r.allow(maxBuckets, 0) {
		t.Fatal("a source beyond maxBuckets got a token")
	}
	r.gc(int64(2 * bucketIdle))
	if !r.allow(maxBuckets, int64(2*bucketIdle)) || len(r.buckets) != 1 {
		t.Fatalf("after gc: %d buckets", len(r.buckets))
	}
}

// Guards the memory of forgotten peers' initiation times: bounded, oldest
// out first, newest time kept, and strangers apart from peers that came
// up, so that they cannot push them out.
func TestInitMemoryBounded(t *testing.T) {
	var im initMemory
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	im.init()
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<10 {
		t.Errorf("an empty memory took %d bytes", n) // every node makes one
	}
	id := func(i int) identity.NodeID { return identity.NodeID{byte(i), byte(i >> 8), 0xAA} }
	stranger := func(i int) identity.NodeID { return identity.NodeID{byte(i), byte(i >> 8), 0xBB} }
	for i := range initMemorySize + 10 {
		im.put(id(i), uint64(i+1), true)
	}
	for i := range 10 * initMemoryStrangers {
		im.put(stranger(i), 1, false)
	}
	if len(im.proven.times) != initMemorySize || len(im.strangers.times) != initMemoryStrangers {
		t.Fatalf("%d and %d entries, bounds %d and %d", len(im.proven.times), len(im.strangers.times), initMemorySize, initMemoryStrangers)
	}
	if im.get(id(0)) != 0 || im.get(id(10)) != 11 || im.get(id(initMemorySize+9)) != initMemorySize+10 {
		t.Fatal("not oldest out first")
	}
	im.put(id(10), 5, true)
	if im.get(id(10)) != 11 {
		t.Fatal("an older time replaced a newer one")
	}
	if im.get(stranger(10*initMemoryStrangers-1)) != 1 || im.get(stranger(0)) != 0 {
		t.Fatal("strangers not oldest out first")
	}
}

// cookieCase is the worker's cost per initiation under load without a
// valid MAC2: check MAC1 and MAC2, write the cookie reply.
func cookieCase(tb testing.TB) func() {
	var g floodGuard
	id, _ := identity.Generate()
	g.init(id.PublicKey(), 1)
	pkt := ikInitiation(tb, id.PublicKey(), 7)
	src := netip.MustParseAddrPort("192.0.2.1:4242")
	out := make([]byte, wire.CookieReplySize)
	rnd := rand.NewChaCha8([32]byte{})
	return func() {
		cookie := g.cookieFor(src, 1)
		if !validMAC1(pkt, &g.mac1Own) || validMAC2(pkt, &cookie) {
			panic("MACs")
		}
		g.putCookieReply(out, pkt, wire.TypeInitIK, 7, &cookie, rnd)
	}
}

// Guards the cookie reply's cost: it allocates nothing (its time is
// BenchmarkCookieReply's).
func TestCookieReplyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	f := cookieCase(t)
	if n := testing.AllocsPerRun(100, f); n != 0 {
		t.Fatalf("%v allocations per cookie reply, want 0", n)
	}
}

// A cookie reply is what an initiation costs a node under load that the
// source did not prove its address for: the target is at most 3 µs.
func BenchmarkCookieReply(b *testing.B) {
	f := cookieCase(b)
	b.ReportAllocs()
	for b.Loop() {
		f()
	}
}

// The reply opens on the initiator's side: the cookie it gets back makes
// a MAC2 the responder accepts.
func TestCookieReplyOpens(t *testing.T) {
	var g floodGuard
	id, _ := identity.Generate()
	g.init(id.PublicKey(), 1)
	for _, typ := range []wire.Type{wire.TypeInitIK, wire.TypeInitXX} {
		pkt := ikInitiation(t, id.PublicKey(), 9)
		var pin ed25519.PublicKey
		if typ == wire.TypeInitIK {
			pin = id.PublicKey()
		} else {
			pkt = xxInitiation(t, 9)
		}
		src := netip.MustParseAddrPort("[2001:db8::1]:9")
		out := make([]byte, wire.CookieReplySize)
		c0 := g.cookieFor(src, 1)
		g.putCookieReply(out, pkt, typ, 9, &c0, rand.NewChaCha8([32]byte{1}))
		c, err := wire.ParseCookieReply(out)
		if err != nil || c.Receiver != 9 {
			t.Fatalf("%v: reply %x: %v", typ, out, err)
		}
		seal := cookieKey(pin)
		cookie, ok := openCookie(c, &seal, pkt[len(pkt)-2*wire.MACSize:len(pkt)-wire.MACSize])
		if !ok {
			t.Fatalf("%v: the initiator cannot open the reply", typ)
		}
		setMAC2(pkt, &cookie)
		if !validMAC2(pkt, &c0) {
			t.Fatalf("%v: MAC2 from the cookie does not verify", typ)
		}
	}
}
