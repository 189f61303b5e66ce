package mesh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/membership"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// Handshakes.
//
// The initiator's side is a dial: one per Connect call, rekey or dead-peer
// recovery. A dial is one Noise handshake (one ephemeral key, timestamp
// and receiver index) whose initiation is resent unchanged every
// HandshakeRetransmit (with backoff and jitter) until an answer arrives or
// HandshakeGiveUp passes. Resending the same message, as TCP resends a
// SYN, means any answer completes the dial, however late: were each resend
// a new handshake, a round trip longer than the retransmit interval (a
// starved CPU, a slow link) would always bring the answer to a replaced
// one, and the dial could never complete. The responder answers a repeat
// of the IK initiation behind its pending session with the response it
// already sent (an XX repeat gets a new pending handshake, and the
// initiator takes whichever answer comes first). The timer loop drives
// retransmits. Every handshake message
// leaves the socket reader at once for a queue (under load, after taking
// a token of its source's bucket); the handshake workers check its MACs,
// answer it with a cookie under load, and do the Diffie-Hellman work. So
// a flood of handshake messages costs the reader, which also decrypts the
// established sessions' data, a copy and a queue slot each at most.
//
// A dial's handshake stays in hs.pending until HandshakeGiveUp after it
// was sent, also once answered or once the dial ended (another session
// came up, or it failed), so that a late or second answer to it is
// recognised and ignored rather than counted as unknown_index. When both
// nodes start a handshake at once, both complete and both nodes keep the
// same one (keepsOwnLocked).
//
//	IK: initiator --init-ik--> responder: session pending ("next")
//	    initiator <-response-- responder
//	    initiator: session current; sends a ping, which confirms the
//	    responder's pending session.
//	XX: initiator --init-xx--> responder (no identity yet)
//	    initiator <-response-- responder (responder's identity)
//	    initiator --final----> responder: session current
//	    initiator <-keepalive- responder: confirms; the initiator resends
//	    final until it arrives.

// Pin names the peer that Connect expects. The zero Pin accepts whichever
// node answers at the address. With Key set, the handshake is the
// one-round-trip IK; with only ID set it is XX and the answer must carry
// that NodeID.
type Pin struct {
	Key ed25519.PublicKey
	ID  identity.NodeID
}

// handshakes is the session lifecycle's state and its lock (see
// transport): dials, the handshakes waiting for an answer, and the queue
// to the handshake workers.
type handshakes struct {
	// mu guards the fields below, the state of every dial and handshake,
	// and every Peer's session slots, dial, up and lastInit. Methods
	// named ...Locked expect the caller to hold it.
	mu      sync.Mutex
	pending map[uint32]*handshake // by our receiver index
	// confirming are the XX dials that sent their final message and
	// wait for the responder to confirm the session (several may wait
	// for one peer); the timer loop drives them.
	confirming map[*dial]struct{}

	// recent remembers the initiation times of peers the node forgot.
	recent initMemory

	queue chan *hsJob // to the workers; never closed
}

func (h *handshakes) init(queue int) {
	h.pending = make(map[uint32]*handshake)
	h.confirming = make(map[*dial]struct{})
	h.recent.init()
	h.queue = make(chan *hsJob, queue)
}

// initMemory remembers the newest IK initiation time of peers the node
// forgot, oldest out first: a peer's entry used to hold the time, so
// once it was forgotten (ForgetAfter) an initiation recorded earlier was
// accepted again. Peers that once came up and peers that never did are
// remembered apart, so that strangers' initiations cannot push a real
// peer's time out.
type initMemory struct {
	proven, strangers fifoTimes
}

func (im *initMemory) init() {
	im.proven.init(initMemorySize)
	im.strangers.init(initMemoryStrangers)
}

// get returns the initiation time remembered for id, or 0.
func (im *initMemory) get(id identity.NodeID) uint64 {
	return max(im.proven.times[id], im.strangers.times[id])
}

// put remembers ts for id, a peer that came up (proven) or not.
func (im *initMemory) put(id identity.NodeID, ts uint64, proven bool) {
	if proven {
		im.proven.put(id, ts)
	} else {
		im.strangers.put(id, ts)
	}
}

// fifoTimes maps NodeIDs to times, holding at most size, oldest out
// first. It grows as it fills: most nodes never remember more than a
// few peers, and a node that made its full size up front would carry
// about 350 KiB of empty tables.
type fifoTimes struct {
	times map[identity.NodeID]uint64
	ring  []identity.NodeID // in order of arrival, up to size
	size  int
	next  int // once full, the oldest entry in ring
}

func (f *fifoTimes) init(size int) {
	f.times = make(map[identity.NodeID]uint64)
	f.size = size
}

func (f *fifoTimes) put(id identity.NodeID, ts uint64) {
	if old, ok := f.times[id]; ok {
		f.times[id] = max(old, ts)
		return
	}
	if len(f.ring) < f.size {
		f.ring = append(f.ring, id)
	} else {
		delete(f.times, f.ring[f.next])
		f.ring[f.next] = id
		f.next = (f.next + 1) % f.size
	}
	f.times[id] = ts
}

// dial is the initiator's side of a handshake.
type dial struct {
	path    *endpoint
	pin     Pin
	started int64
	// paused is how long the timer loop did not run while the dial
	// was under way (see transport.tick): it does not count toward
	// HandshakeGiveUp. pausedAt is the tick that last added to it.
	paused, pausedAt int64
	nextAt           int64      // mono ns of the next retransmit
	tries            int        // initiations sent, the first included
	hs               *handshake // the dial's handshake, until its answer arrives
	// suite is the cipher suite of the dial's initiations: the node's,
	// until an AES-GCM initiation goes unanswered (see fallBackLocked).
	suite noise.Suite
	// who is an XX handshake the dial sends besides its unanswered IK
	// one, to ask the address who answers there (see askLocked); ask
	// says the dial may.
	who     *handshake
	ask     bool
	session *session // XX: sent final, waiting for the responder's confirmation
	// owner is the peer whose dial this is (Peer.dial), if any.
	owner *Peer
	// pair is set for a pairing dial (Mesh.Pair): XX, with a pairing
	// proof in the final message.
	pair *pairing

	done   chan struct{}
	peer   *Peer
	err    error
	closed bool
}

// pause adds a pause of the timer loop, found by the tick at now, to the
// dial's; a tick adds it once however many ways it reaches the dial.
func (d *dial) pause(now, paused int64) {
	if paused > 0 && d.pausedAt != now {
		d.paused += paused
		d.pausedAt = now
	}
}

// handshake is one in-progress Noise handshake, either side.
type handshake struct {
	local   uint32
	remote  uint32 // responder: the initiator's index
	noise   *noise.Handshake
	dial    *dial // nil for the responder
	path    *endpoint
	created int64
	pkt     []byte // initiator: the initiation, for retransmits and cookie resends
	mac1    [wire.MACSize]byte
	// cookieKey is the key of the node an initiator's cookie replies come
	// from (nil: whoever answers an XX initiation).
	cookieKey ed25519.PublicKey
	// claimed: a worker is reading the answer to it (the Noise state
	// takes one message at a time).
	claimed bool
	// binding is an XX responder's handshake hash after its response,
	// which a pairing proof in the final message is bound to; kept only
	// by a node that can pair (admission.go).
	binding []byte
}

// hsJob is a handshake message or cookie reply waiting for a worker,
// copied out of the socket's buffer into a pooled one.
type hsJob struct {
	buf [maxHandshakePacket]byte
	n   int
	src endpoint
}

var jobPool = sync.Pool{New: func() any { return new(hsJob) }}

func (j *hsJob) pkt() []byte { return j.buf[:j.n] }

// connect establishes a session with the node at addr (see Mesh.Connect).
func (t *transport) connect(ctx context.Context, addr netip.AddrPort, pin Pin) (*Peer, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.IsValid() || addr.Port() == 0 {
		return nil, fmt.Errorf("mesh: connect: invalid address %v", addr)
	}
	if pin.Key != nil {
		if len(pin.Key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("mesh: connect: pinned key is %d bytes, want %d", len(pin.Key), ed25519.PublicKeySize)
		}
		id := identity.NodeIDFromKey(pin.Key)
		if !pin.ID.IsZero() && pin.ID != id {
			return nil, fmt.Errorf("%w: pinned key has id %s, pinned id is %s", ErrPeerMismatch, id, pin.ID)
		}
		pin.ID = id
	}
	sock := t.sockFor(addr)
	if sock == nil {
		return nil, fmt.Errorf("%w: %v", ErrNoAddress, addr)
	}
	path := &endpoint{addr: addr, sock: sock}
	t.hs.mu.Lock()
	if p := t.findPeer(addr, pin.ID); p != nil && p.current != nil {
		t.hs.mu.Unlock()
		if ep := p.ep.Load(); ep != nil && ep.relay != nil {
			t.probeDirect(p, path)
		}
		return p, nil
	}
	if pin.Key == nil && !pin.ID.IsZero() {
		if p := t.peers.get(pin.ID); p != nil {
			pin.Key = p.key // seen before: IK saves a round trip
		}
	}
	d := t.newDialLocked(path, pin)
	d.ask = pin.Key != nil
	t.hs.mu.Unlock()
	return t.waitDial(ctx, d)
}

// waitDial waits for d to finish or ctx to end, which abandons it.
func (t *transport) waitDial(ctx context.Context, d *dial) (*Peer, error) {
	select {
	case <-d.done:
		return d.peer, d.err
	case <-ctx.Done():
		t.hs.mu.Lock()
		t.finishDialLocked(d, nil, ctx.Err())
		t.hs.mu.Unlock()
		return nil, ctx.Err()
	}
}

// findPeer returns the peer with id, or without an id the peer whose
// endpoint is addr.
func (t *transport) findPeer(addr netip.AddrPort, id identity.NodeID) *Peer {
	if !id.IsZero() {
		return t.peers.get(id)
	}
	var found *Peer
	t.peers.each(func(p *Peer) {
		if found == nil && p.Endpoint() == addr {
			found = p
		}
	})
	return found
}

func (t *transport) newDialLocked(path *endpoint, pin Pin) *dial {
	d := &dial{path: path, pin: pin, started: t.now(), done: make(chan struct{})}
	if p := t.peers.get(pin.ID); p != nil && p.dial == nil && !pin.ID.IsZero() {
		p.dial, d.owner = d, p
	}
	t.attemptLocked(d)
	return d
}

// attemptLocked starts d's handshake and sends its initiation.
func (t *transport) attemptLocked(d *dial) {
	now := t.now()
	d.tries = 1
	d.nextAt = now + int64(noise.RetransmitDelay(t.t.retransmit, 0, nil))
	d.suite = t.suite
	h, err := t.initiateLocked(d, d.pin)
	if err != nil {
		t.finishDialLocked(d, nil, err)
		return
	}
	d.hs = h
	t.sendTo(d.path, h.pkt)
}

// initiateLocked makes a handshake for d that expects pin (IK with its
// key, else XX), in d's suite, and files it with the pending ones.
func (t *transport) initiateLocked(d *dial, pin Pin) (*handshake, error) {
	hs, err := noise.NewInitiator(noise.Config{Identity: t.id, PeerKey: pin.Key, PeerID: pin.ID, Incarnation: t.incarnation, Suite: d.suite}, time.Now())
	if err != nil {
		return nil, err
	}
	t.vouchFor(hs)
	if err := hs.SetExtensions(t.initiationExt(hs.Pattern())); err != nil {
		return nil, err
	}
	msg, err := hs.WriteMessage(nil)
	if err != nil {
		return nil, err
	}
	typ, key := wire.TypeInitXX, &t.guard.mac1Anon
	if pin.Key != nil {
		typ, key = wire.TypeInitIK, &macKey{key: mac1Key(pin.Key)}
	}
	h := &handshake{local: t.newIndexLocked(), noise: hs, dial: d, path: d.path, created: t.now(), cookieKey: pin.Key}
	h.pkt = wire.AppendHandshake(nil, wire.Handshake{Type: typ, Suite: wireSuite(hs.Suite()), Sender: h.local, Noise: msg})
	h.mac1 = setMAC1(h.pkt, key)
	t.hs.pending[h.local] = h
	t.stats.handshakesInitiated.Add(1)
	return h, nil
}

// askLocked asks the address of d, a dial pinned to a key that got no
// answer for a retransmit interval, who is there: it sends an XX
// initiation besides the IK one. An IK initiation to a key the node at
// the address does not hold is dropped unanswered (its MAC cannot
// verify), so without asking a wrong pin looks exactly like a dead host.
// The XX answer carries the identity of whoever answers: the pinned node
// (the dial then completes through it, as if the IK answer had been
// lost), or another, and the dial fails at once with a
// *PinMismatchError that names it.
func (t *transport) askLocked(d *dial) {
	d.ask = false
	h, err := t.initiateLocked(d, Pin{})
	if err != nil {
		return // the IK attempt goes on
	}
	d.who = h
	t.sendTo(d.path, h.pkt)
}

// live reports whether h is a handshake that can still complete its
// dial: not answered yet, and the dial not ended. The caller holds hs.mu.
func (h *handshake) live() bool { return (h.dial.hs == h || h.dial.who == h) && !h.dial.closed }

// finishDialLocked completes d with a result, waking Connect. An XX
// session of d that another session beat is retired rather than
// forgotten: the responder may have made it current and seal on it.
func (t *transport) finishDialLocked(d *dial, p *Peer, err error) {
	if d.closed {
		return
	}
	d.closed = true
	d.peer, d.err = p, err
	delete(t.hs.confirming, d)
	switch s := d.session; {
	case s == nil || p != nil && p.current == s:
	case p != nil:
		t.retireLocked(p, s)
	default:
		t.index.remove(s)
	}
	if o := d.owner; o != nil && o.dial == d {
		o.dial = nil
	}
	close(d.done)
}

// newIndexLocked returns a random receiver index in use by nothing else,
// with the node's index tag.
// Every index is handed out here, under hs.mu, so none is handed out
// twice.
func (t *transport) newIndexLocked() uint32 {
	for {
		i := rand.Uint32()&^indexTagMask | t.indexTag
		if i == 0 || t.index.has(i) {
			continue
		}
		if _, ok := t.hs.pending[i]; ok {
			continue
		}
		return i
	}
}

// receiveHandshake runs on a socket reader: it queues a handshake
// message or cookie reply for the workers and does nothing else that
// costs, so a flood of them leaves the reader free for data. Under load,
// an initiation first takes a token of its source's bucket, so that one
// source cannot fill the queue that everyone's handshakes wait in.
func (t *transport) receiveHandshake(b []byte, src *endpoint) {
	typ := wire.Type(b[0])
	if len(b) > maxHandshakePacket {
		t.stats.drop(DropOversized)
		return
	}
	if typ == wire.TypeInitXX && t.cfg.IKOnly {
		t.stats.drop(DropXXRefused)
		return
	}
	if typ.IsInitiation() && t.leaving.Load() {
		t.stats.drop(DropLeaving)
		return
	}
	now := t.now()
	if typ.IsInitiation() && t.guard.underLoad(now) {
		var ok bool
		if src.relay != nil {
			ok = t.guard.relayLimit.allow(src.relay.id, now)
		} else {
			ok = t.guard.limit.allow(sourceKey(src.addr.Addr()), now)
		}
		if !ok {
			t.stats.drop(DropRateLimited)
			return
		}
	}
	j := jobPool.Get().(*hsJob)
	j.n = copy(j.buf[:], b)
	j.src = *src
	select {
	case t.hs.queue <- j:
	default:
		putJob(j)
		t.stats.drop(DropQueueFull)
	}
	t.checkQueue(now)
}

func putJob(j *hsJob) {
	j.src = endpoint{}
	jobPool.Put(j)
}

// checkQueue puts the node under load while the handshake queue is more
// than an eighth full: the workers fall behind.
func (t *transport) checkQueue(now int64) {
	if len(t.hs.queue) >= cap(t.hs.queue)/8 {
		t.guard.loaded(now)
	}
}

// underLoad reports whether initiations need a cookie now.
func (t *transport) underLoad() bool { return t.guard.underLoad(t.now()) }

// checkPendingLocked puts the node under load while the pending table is
// half full (see maxResponderPending).
func (t *transport) checkPendingLocked() {
	if len(t.hs.pending) >= maxResponderPending/2 {
		t.guard.loaded(t.now())
	}
}

// evictPendingLocked forgets the oldest responder's XX handshake. It scans
// the table, but runs only when the table is full, which takes the node
// under load first.
func (t *transport) evictPendingLocked() {
	var oldest *handshake
	for _, h := range t.hs.pending {
		if h.dial == nil && (oldest == nil || h.created < oldest.created) {
			oldest = h
		}
	}
	if oldest != nil {
		delete(t.hs.pending, oldest.local)
	}
}

// dropWire counts a wire decoding error.
func (t *transport) dropWire(err error) {
	switch {
	case errors.Is(err, wire.ErrSize):
		t.stats.drop(DropOversized)
	case errors.Is(err, wire.ErrType):
		t.stats.drop(DropUnknownType)
	default:
		t.stats.drop(DropShort)
	}
}

// dropNoise counts a failed Noise step by its cause.
func (t *transport) dropNoise(err error) {
	switch {
	case errors.Is(err, noise.ErrKeyMismatch):
		t.stats.drop(DropPinMismatch)
	case errors.Is(err, noise.ErrBadSignature):
		t.stats.drop(DropBadIdentity)
	default:
		t.stats.drop(DropBadHandshake)
	}
}

// receiveCookie handles a cookie reply to one of our initiations: it stores
// nothing and resends the same initiation with MAC2 set.
func (t *transport) receiveCookie(b []byte) {
	c, err := wire.ParseCookieReply(b)
	if err != nil {
		t.dropWire(err)
		return
	}
	t.hs.mu.Lock()
	defer t.hs.mu.Unlock()
	h := t.hs.pending[c.Receiver]
	if h == nil || h.dial == nil {
		t.stats.drop(DropUnknownIndex)
		return
	}
	seal := cookieKey(h.cookieKey)
	cookie, ok := openCookie(c, &seal, h.mac1[:])
	if !ok {
		t.stats.drop(DropBadMAC)
		return
	}
	if !h.live() {
		return // for an attempt that was replaced or whose dial ended
	}
	setMAC2(h.pkt, &cookie)
	t.sendTo(h.path, h.pkt)
}

// handshakeWorkers returns how many handshake workers a node runs: one
// per two CPUs, so that handshakes, however many arrive, never take more
// than half the machine from the established sessions.
func handshakeWorkers() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// hsWorker is one handshake worker's state: its nonce source for cookie
// replies.
type hsWorker struct {
	t   *transport
	rnd *rand.ChaCha8
}

func (t *transport) handshakeWorker() {
	defer t.wg.Done()
	var seed [32]byte
	crand.Read(seed[:])
	w := &hsWorker{t: t, rnd: rand.NewChaCha8(seed)}
	for {
		select {
		case j := <-t.hs.queue:
			t.checkQueue(t.now())
			w.process(j)
			putJob(j)
		case <-t.ctx.Done():
			return
		}
	}
}

// process handles one queued message. An initiation is checked here, in
// order of cost: MAC1 (one keyed hash), then under load MAC2, and one
// without a valid MAC2 is answered with a cookie reply, which costs a
// keyed hash and a seal of 16 bytes and allocates nothing.
func (w *hsWorker) process(j *hsJob) {
	t := w.t
	pkt := j.pkt()
	if wire.Type(pkt[0]) == wire.TypeCookie {
		t.receiveCookie(pkt)
		return
	}
	h, err := wire.ParseHandshake(pkt)
	if err != nil {
		t.dropWire(err)
		return
	}
	switch h.Type {
	case wire.TypeInitIK, wire.TypeInitXX:
		g := &t.guard
		key := &g.mac1Anon
		if h.Type == wire.TypeInitIK {
			key = &g.mac1Own
		}
		if !validMAC1(pkt, key) {
			t.stats.drop(DropBadMAC)
			return
		}
		// Relayed handshakes arrive over an authenticated session with
		// the relay; cookies prove source addresses, so they apply to
		// direct ones only.
		if now := t.now(); j.src.relay == nil && g.underLoad(now) {
			cookie := g.cookieFor(j.src.addr, now)
			if !validMAC2(pkt, &cookie) {
				w.sendCookie(pkt, h, &j.src, &cookie)
				t.stats.drop(DropCookieRequired)
				return
			}
		}
		t.respond(h, pkt, j.src)
	case wire.TypeResponse:
		t.handleResponse(h, pkt, j.src)
	case wire.TypeFinal:
		t.handleFinal(h, pkt, j.src)
	}
}

// sendCookie answers initiation pkt from src with a cookie reply.
func (w *hsWorker) sendCookie(pkt []byte, h wire.Handshake, src *endpoint, cookie *[wire.CookieSize]byte) {
	t := w.t
	out := getOut(wire.CookieReplySize)
	t.guard.putCookieReply(out.buf, pkt, h.Type, h.Sender, cookie, w.rnd)
	out.n, out.addr = wire.CookieReplySize, src.addr
	if t.enqueue(src.sock, out) == nil {
		t.stats.cookiesSent.Add(1)
	}
}

// respond answers an initiation from src.
func (t *transport) respond(h wire.Handshake, pkt []byte, src endpoint) {
	pattern := noise.PatternXX
	if h.Type == wire.TypeInitIK {
		pattern = noise.PatternIK
	}
	suite, ok := suiteOf(h.Suite)
	if !ok {
		t.stats.drop(DropBadHandshake)
		return
	}
	if suite == noise.SuiteAESGCM && t.refuseAESGCM.Load() {
		// Software AES is not constant time: the initiator falls back
		// to ChaCha20-Poly1305 when it retransmits (fallBackLocked).
		t.stats.drop(DropSuiteRefused)
		return
	}
	hs, err := noise.NewResponder(t.id, pattern, suite, t.incarnation)
	if err != nil {
		return
	}
	t.vouchFor(hs)
	t.stats.handshakesProcessed.Add(1)
	if err := hs.ReadMessage(h.Noise); err != nil {
		t.dropNoise(err)
		return
	}
	mac1 := &t.guard.mac1Anon
	var peer noise.Peer
	var member *memberCert
	if pattern == noise.PatternIK {
		peer = hs.Peer()
		// A closed mesh admits members only: checked before anything is
		// kept for the peer (admission.go).
		ext, err := parsePeerExt(hs.PeerExtensions())
		if err != nil {
			t.stats.drop(DropBadHandshake)
			return
		}
		var why membership.Reason
		if member, why = t.checkPeer(peer.Key, ext); why != membership.ReasonNone {
			t.refuse(why, peer.Key)
			t.refuseIK(hs, h, peer.Key, &src, why)
			return
		}
		// Drop a replayed initiation before doing the response's DH work
		// or making a peer for it: its time must be newer than any this
		// node accepted from the key, even before it forgot the peer.
		ts := uint64(peer.InitiationTime.UnixNano())
		t.hs.mu.Lock()
		last := t.hs.recent.get(peer.ID)
		p := t.peers.get(peer.ID)
		if p != nil {
			last = p.lastInit
		}
		if ts <= last {
			var again []byte
			if n := p.nextFor(h.Sender, h.Noise); n != nil {
				again = n.response
			}
			t.hs.mu.Unlock()
			if again != nil {
				// The initiator resent the initiation behind our pending
				// session: our answer was lost or is late. Answer the same.
				t.sendTo(&src, again)
				return
			}
			t.stats.drop(DropStaleInitiation)
			return
		}
		if !t.admitLocked(peer.ID) {
			t.hs.mu.Unlock()
			t.stats.drop(DropPeerLimit)
			return
		}
		np := t.peerLocked(peer.ID, peer.Key)
		np.lastInit = ts
		if member != nil {
			np.member.Store(member)
		}
		t.hs.mu.Unlock()
		mac1 = &macKey{key: mac1Key(peer.Key)}
		hs.SetExtensions(t.replyExt(len(h.Noise), noise.IKResponseSize))
	} else {
		hs.SetExtensions(t.replyExt(len(h.Noise), noise.XXResponseSize))
	}
	msg, err := hs.WriteMessage(nil)
	if err != nil {
		t.dropNoise(err)
		return
	}
	t.hs.mu.Lock()
	local := t.newIndexLocked()
	if pattern == noise.PatternXX {
		t.checkPendingLocked()
		if len(t.hs.pending) >= maxResponderPending {
			t.evictPendingLocked()
		}
		pending := &handshake{local: local, remote: h.Sender, noise: hs, path: &src, created: t.now()}
		if t.adm.issuer != nil {
			pending.binding = hs.Hash()
		}
		t.hs.pending[local] = pending
	} else {
		keys, err := hs.Keys()
		if err != nil {
			t.hs.mu.Unlock()
			t.dropNoise(err)
			return
		}
		p := t.peerLocked(peer.ID, peer.Key)
		s := t.newSession(p, local, h.Sender, keys, false, &src)
		if p.next != nil {
			t.index.remove(p.next)
		}
		p.next = s
		t.index.add(s)
		s.initiation = bytes.Clone(h.Noise)
		s.response = wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeResponse, Suite: h.Suite, Sender: local, Receiver: h.Sender, Noise: msg})
		setMAC1(s.response, mac1)
		t.hs.mu.Unlock()
		t.sendTo(&src, s.response)
		return
	}
	t.hs.mu.Unlock()
	out := wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeResponse, Suite: h.Suite, Sender: local, Receiver: h.Sender, Noise: msg})
	setMAC1(out, mac1)
	t.sendTo(&src, out)
}

// handleResponse completes (IK) or advances (XX) one of our dials.
func (t *transport) handleResponse(h wire.Handshake, pkt []byte, src endpoint) {
	t.hs.mu.Lock()
	hs := t.hs.pending[h.Receiver]
	if hs == nil || hs.dial == nil {
		t.hs.mu.Unlock()
		t.stats.drop(DropUnknownIndex)
		return
	}
	live := hs.live() && !hs.claimed
	t.hs.mu.Unlock()
	key := &t.guard.mac1Anon
	if hs.noise.Pattern() == noise.PatternIK {
		key = &t.guard.mac1Own
	}
	if !validMAC1(pkt, key) {
		t.stats.drop(DropBadMAC)
		return
	}
	if !live {
		// A second answer (to a resent initiation), a late one for a dial
		// that ended, or a copy of an answer a worker is already reading.
		return
	}
	t.hs.mu.Lock()
	if hs.claimed {
		t.hs.mu.Unlock()
		return
	}
	hs.claimed = true // the attempt takes this answer or none
	t.hs.mu.Unlock()
	t.stats.handshakesProcessed.Add(1)
	if err := hs.noise.ReadMessage(h.Noise); err != nil {
		t.dropNoise(err)
		t.hs.mu.Lock()
		hs.claimed = false // a message of the wrong size leaves the state usable
		if errors.Is(err, noise.ErrKeyMismatch) {
			t.finishDialLocked(hs.dial, nil, fmt.Errorf("%w: %v", ErrPeerMismatch, err))
		}
		t.hs.mu.Unlock()
		return
	}
	d := hs.dial
	ext, err := parsePeerExt(hs.noise.PeerExtensions())
	if err != nil {
		t.stats.drop(DropBadHandshake)
		return
	}
	responder := hs.noise.Peer()
	if ext.refusal != membership.ReasonNone {
		t.hs.mu.Lock()
		t.finishDialLocked(d, nil, &MembershipError{Peer: responder.ID, Reason: ext.refusal, Remote: true})
		t.hs.mu.Unlock()
		return
	}
	var member *memberCert
	if d.pair == nil {
		var why membership.Reason
		if member, why = t.checkPeer(responder.Key, ext); why != membership.ReasonNone {
			t.refuse(why, responder.Key)
			t.hs.mu.Lock()
			t.finishDialLocked(d, nil, &MembershipError{Peer: responder.ID, Reason: why})
			t.hs.mu.Unlock()
			return
		}
	}
	var final []byte
	if hs.noise.Pattern() == noise.PatternXX {
		if err := hs.noise.SetExtensions(t.finalExt(d, hs.noise.Hash())); err != nil {
			t.dropNoise(err)
			return
		}
		msg, err := hs.noise.WriteMessage(nil)
		if err != nil {
			t.dropNoise(err)
			return
		}
		final = wire.AppendHandshake(nil, wire.Handshake{Type: wire.TypeFinal, Suite: h.Suite, Sender: hs.local, Receiver: h.Sender, Noise: msg})
	}
	keys, err := hs.noise.Keys()
	if err != nil {
		t.dropNoise(err)
		return
	}
	t.hs.mu.Lock()
	if t.hs.pending[hs.local] != hs || !hs.live() {
		t.hs.mu.Unlock() // abandoned meanwhile
		return
	}
	// hs stays in hs.pending until the timer loop forgets it, so that a
	// second answer (to a resent initiation) is recognised, not counted.
	// The dial's other attempt, if any, is abandoned.
	d.hs, d.who = nil, nil
	if !d.pin.ID.IsZero() && d.pin.ID != keys.Peer.ID {
		t.stats.drop(DropPinMismatch)
		t.finishDialLocked(d, nil, &PinMismatchError{Path: src.String(), Node: keys.Peer.ID, Key: keys.Peer.Key, Pinned: d.pin})
		t.hs.mu.Unlock()
		return
	}
	p := t.peerLocked(keys.Peer.ID, keys.Peer.Key)
	if member != nil {
		p.member.Store(member)
	}
	if d.pair != nil {
		t.adm.pairs[p.id] = d.pair
	}
	path := &src
	if hs.path.same(path) {
		path = hs.path // keeps the reason the dial chose it
	}
	s := t.newSession(p, hs.local, h.Sender, keys, true, path)
	if final == nil {
		t.establishLocked(p, s)
		t.finishDialLocked(d, p, nil)
		t.hs.mu.Unlock()
		t.ping(p) // confirms the responder's session and measures RTT
		return
	}
	setMAC1(final, &macKey{key: mac1Key(keys.Peer.Key)})
	s.final, s.dial = final, d
	d.session = s
	t.hs.confirming[d] = struct{}{}
	if p.dial == nil {
		p.dial, d.owner = d, p
	}
	t.index.add(s)
	d.nextAt = t.now() + int64(t.t.retransmit)
	t.hs.mu.Unlock()
	t.sendTo(&src, final)
}

// handleFinal completes an XX handshake on the responder.
func (t *transport) handleFinal(h wire.Handshake, pkt []byte, src endpoint) {
	if !validMAC1(pkt, &t.guard.mac1Own) {
		t.stats.drop(DropBadMAC)
		return
	}
	t.hs.mu.Lock()
	hs := t.hs.pending[h.Receiver]
	if hs == nil || hs.dial != nil || hs.remote != h.Sender {
		t.hs.mu.Unlock()
		// A resent final for a session we already have: the keepalive
		// that confirmed it was lost, so confirm again.
		s := t.index.get(h.Receiver)
		if s != nil && !s.initiator && s.remote == h.Sender {
			t.sendFrameOn(s, protoKeepalive.id, nil, nil, nil)
			return
		}
		t.stats.drop(DropUnknownIndex)
		return
	}
	delete(t.hs.pending, hs.local)
	t.hs.mu.Unlock()
	t.stats.handshakesProcessed.Add(1)
	if err := hs.noise.ReadMessage(h.Noise); err != nil {
		t.dropNoise(err)
		return
	}
	keys, err := hs.noise.Keys()
	if err != nil {
		t.dropNoise(err)
		return
	}
	ext, err := parsePeerExt(hs.noise.PeerExtensions())
	if err != nil {
		t.stats.drop(DropBadHandshake)
		return
	}
	// A closed mesh admits members only, and a node that can pair admits
	// one that proves it holds a pairing code (admission.go): decided
	// before anything is kept for the peer.
	var member *memberCert
	var confirm []byte
	why := membership.ReasonNone
	if ext.proof != nil {
		member, confirm, why = t.redeem(ext.proof, hs.binding, keys.Peer.Key, &src)
	} else {
		member, why = t.checkPeer(keys.Peer.Key, ext)
	}
	if why != membership.ReasonNone {
		t.refuse(why, keys.Peer.Key)
		t.sendRefusal(keys, hs.remote, &src, why)
		return
	}
	t.hs.mu.Lock()
	if !t.admitLocked(keys.Peer.ID) {
		t.hs.mu.Unlock()
		t.stats.drop(DropPeerLimit)
		return
	}
	p := t.peerLocked(keys.Peer.ID, keys.Peer.Key)
	if member != nil {
		p.member.Store(member)
	}
	s := t.newSession(p, hs.local, hs.remote, keys, false, &src)
	s.confirmed.Store(true)
	t.establishLocked(p, s)
	t.hs.mu.Unlock()
	t.sendFrameOn(s, protoKeepalive.id, nil, nil, nil)
	if confirm != nil {
		t.up.issued(p, member.cert, confirm)
	}
}

// wireSuite is the suite byte of a handshake message's header for s.
func wireSuite(s noise.Suite) uint8 {
	if s == noise.SuiteAESGCM {
		return wire.SuiteAESGCM
	}
	return wire.SuiteChaChaPoly
}

// suiteOf is the suite a handshake message's suite byte b names; false for
// a byte no suite has.
func suiteOf(b uint8) (noise.Suite, bool) {
	switch b {
	case wire.SuiteChaChaPoly:
		return noise.SuiteChaChaPoly, true
	case wire.SuiteAESGCM:
		return noise.SuiteAESGCM, true
	}
	return 0, false
}
