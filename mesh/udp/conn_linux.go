//go:build linux

package udp

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// maxSendHdrs is how many mmsghdrs one sendmmsg call carries; longer
	// batches take several calls.
	maxSendHdrs = 64
	// maxSendIovs bounds the datagrams (one iovec each) in one sendmmsg
	// call: 64 full GSO runs of 16 datagrams.
	maxSendIovs = 1024
	// defaultGROBuffers and defaultReadBuffers are the receive buffer counts
	// with and without GRO; see ListenConfig.ReadBuffers.
	defaultGROBuffers  = 8
	defaultReadBuffers = 64
)

// ctrlSize is the control buffer per message: room for one int-sized cmsg
// (UDP_GRO on receive, the 2-byte UDP_SEGMENT on send).
var ctrlSize = unix.CmsgSpace(4)

// BatchConn is a UDP socket that reads and writes in batches. See the
// package comment for the modes it picks. It implements Conn.
type BatchConn struct {
	uc     *net.UDPConn
	rc     syscall.RawConn
	v6     bool // AF_INET6 socket
	laddr  netip.AddrPort
	gro    bool        // UDP_GRO enabled on the socket; fixed at Listen
	df     bool        // don't-fragment probing mode set; fixed at Listen
	gso    atomic.Bool // cleared for good if the kernel rejects GSO sends
	mmsg   atomic.Bool // cleared for good if recvmmsg/sendmmsg is ENOSYS
	closed atomic.Bool

	readCalls  atomic.Uint64
	writeCalls atomic.Uint64
	truncated  atomic.Uint64

	r recvState // owned by the single ReadBatch caller

	wmu sync.Mutex // guards w and gsoWorked
	w   sendState

	mtuMu sync.Mutex // guards mtuFD's connected address
	mtuFD int        // a spare UDP socket in the same network namespace, for PathMTU; -1 if none
	// gsoWorked records that a GSO send succeeded once, so a later EINVAL
	// is blamed on the datagram, not on missing kernel support.
	gsoWorked bool
}

// recvState is the preallocated receive side: one mmsghdr, iovec, sockaddr,
// control buffer and receive buffer per slot.
type recvState struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte
	slab  []byte // receive buffers, bufSize each
	addrs []netip.AddrPort
	segs  []int // GRO segment size per slot, 0 if not coalesced

	bufSize int
	vlen    int // slots offered to the last receive call
	n       int // slots filled by the last receive call
	next    int // next slot to hand out
	off     int // offset of the next datagram within slot next
	errno   syscall.Errno
	fn      func(fd uintptr) bool // c.rawRead, bound once
	zones   map[uint32]string     // IPv6 scope id to zone, cached
}

// sendState is the preallocated send side, guarded by BatchConn.wmu.
type sendState struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte
	first []int // index in the batch of each hdr's first message
	count []int // messages carried by each hdr

	start, end int // hdrs[start:end] go to the next send call
	niov       int // iovs in use by hdrs[:end]
	n          int // hdrs sent by the last send call
	errno      syscall.Errno
	fn         func(fd uintptr) bool // c.rawWrite, bound once
}

// Listen opens a UDP socket on laddr. network is "udp4" or "udp6"; an
// invalid laddr means any address and an ephemeral port. It enables the
// offloads the kernel supports unless lc disables them.
func (lc *ListenConfig) Listen(network string, laddr netip.AddrPort) (*BatchConn, error) {
	uc, local, err := listenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, err
	}
	c := &BatchConn{uc: uc, rc: rc, v6: network == "udp6", laddr: local}
	gso, gro, df := false, false, false
	err = rc.Control(func(fd uintptr) {
		if c.v6 {
			df = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE) == nil
		} else {
			df = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE) == nil
		}
		if sb := lc.socketBuffer(); sb > 0 {
			setBuffer(int(fd), unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, sb)
			setBuffer(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sb)
		}
		if !lc.DisableGSO {
			_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			gso = err == nil
		}
		if !lc.DisableGRO {
			gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
		}
		if lc.Accept != nil {
			prog := acceptFilter(*lc.Accept, lc.Match)
			_ = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
				&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
		}
	})
	if err != nil {
		uc.Close()
		return nil, err
	}
	c.gso.Store(gso)
	c.df = df
	c.gro = gro
	c.mmsg.Store(!lc.DisableMMsg)
	c.initRecv(lc)
	c.initSend()
	// Sockets belong to the network namespace they were made in, which
	// is the one Listen runs in: make PathMTU's socket now.
	family := unix.AF_INET
	if c.v6 {
		family = unix.AF_INET6
	}
	c.mtuFD, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		c.mtuFD = -1
	}
	return c, nil
}

// SO_MEMINFO's counters (include/uapi/linux/sock_diag.h): how many there
// are, and the index of the socket's drops.
const (
	skMeminfoVars  = 9
	skMeminfoDrops = 8
)

// stunMagicCookie is the fixed value at bytes 4..7 of every STUN message
// (RFC 5389 section 6).
const stunMagicCookie = 0x2112A442

// acceptFilter is the socket filter of ListenConfig.Accept and Match, in
// classic BPF: absolute loads from the UDP header (8 bytes) on, forward
// jumps only. A load beyond the datagram ends the program: dropped.
func acceptFilter(r ByteRange, m *WordMatch) []unix.SockFilter {
	const (
		ldb  = unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
		ldw  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		and  = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jgt  = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		udph = 8 // the UDP header before the payload
	)
	// Jumps name their targets by label; the labels are resolved to
	// relative offsets at the end.
	const (
		next = iota
		lStun
		lDrop
		lAccept
		lWord
	)
	type insn struct {
		code   uint16
		jt, jf int // labels, for jumps
		k      uint32
		label  int // the label of this instruction, or next
	}
	prog := []insn{
		{code: ldb, k: udph},                     // A = first byte
		{code: jge, k: uint32(r.Min), jf: lStun}, // below Min: perhaps STUN
		{code: jgt, k: uint32(r.Max), jt: lDrop}, // above Max: drop
	}
	if m != nil {
		prog = append(prog,
			insn{code: jeq, k: uint32(m.First), jt: lWord, jf: lAccept},
			insn{code: ldw, k: udph + m.Offset, label: lWord},
			insn{code: and, k: m.Mask},
			insn{code: jeq, k: m.Value, jt: lAccept, jf: lDrop},
		)
	} else {
		prog[len(prog)-1].jf = lAccept
	}
	prog = append(prog,
		insn{code: jge, k: 4, jt: lDrop, label: lStun},              // 4 or more is not STUN
		insn{code: ldw, k: udph + 4},                                // A = bytes 4..7
		insn{code: jeq, k: stunMagicCookie, jf: lDrop, jt: lAccept}, // the magic cookie
		insn{code: ret, k: 0, label: lDrop},
		insn{code: ret, k: 0xFFFFFFFF, label: lAccept}, // whole
	)
	at := map[int]int{}
	for i, in := range prog {
		if in.label != next {
			at[in.label] = i
		}
	}
	rel := func(i, label int) uint8 {
		if label == next {
			return 0
		}
		return uint8(at[label] - i - 1)
	}
	out := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		out[i] = unix.SockFilter{Code: in.code, K: in.k, Jt: rel(i, in.jt), Jf: rel(i, in.jf)}
	}
	return out
}

// setBuffer asks for size bytes with the privileged option, then the plain
// one. Failures are ignored: the kernel default still works, only slower.
func setBuffer(fd, force, plain, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
	}
}

func (c *BatchConn) initRecv(lc *ListenConfig) {
	r := &c.r
	nbuf := lc.ReadBuffers
	switch {
	case lc.DisableMMsg:
		nbuf = 1
	case nbuf > 0:
	case c.gro:
		nbuf = defaultGROBuffers
	default:
		nbuf = defaultReadBuffers
	}
	r.bufSize = lc.maxDatagramSize()
	if c.gro {
		r.bufSize = groBufferSize
	}
	r.hdrs = make([]unix.Mmsghdr, nbuf)
	r.iovs = make([]unix.Iovec, nbuf)
	r.names = make([]unix.RawSockaddrInet6, nbuf)
	r.ctrl = make([]byte, nbuf*ctrlSize)
	r.slab = make([]byte, nbuf*r.bufSize)
	r.addrs = make([]netip.AddrPort, nbuf)
	r.segs = make([]int, nbuf)
	for i := range r.hdrs {
		r.iovs[i].Base = &r.slab[i*r.bufSize]
		r.iovs[i].SetLen(r.bufSize)
		h := &r.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		if c.gro {
			h.Control = &r.ctrl[i*ctrlSize]
		}
	}
	r.fn = c.rawRead
	r.zones = make(map[uint32]string)
}

func (lc *ListenConfig) maxDatagramSize() int {
	if lc.MaxDatagramSize <= 0 {
		return DefaultMaxDatagramSize
	}
	return min(lc.MaxDatagramSize, groBufferSize)
}

func (c *BatchConn) initSend() {
	w := &c.w
	w.hdrs = make([]unix.Mmsghdr, maxSendHdrs)
	w.iovs = make([]unix.Iovec, maxSendIovs)
	w.names = make([]unix.RawSockaddrInet6, maxSendHdrs)
	w.ctrl = make([]byte, maxSendHdrs*ctrlSize)
	w.first = make([]int, maxSendHdrs)
	w.count = make([]int, maxSendHdrs)
	w.fn = c.rawWrite
}

// Features reports the offloads in use. GSO can turn off after Listen if
// the kernel or device rejects segmented sends.
func (c *BatchConn) Features() Features {
	return Features{GSO: c.gso.Load(), GRO: c.gro, MMsg: c.mmsg.Load(), DF: c.df}
}

// Mode names the mode in use; see Features.String.
func (c *BatchConn) Mode() string { return c.Features().String() }

// Stats returns counters since Listen.
func (c *BatchConn) Stats() Stats {
	st := Stats{
		ReadCalls:  c.readCalls.Load(),
		WriteCalls: c.writeCalls.Load(),
		Truncated:  c.truncated.Load(),
	}
	c.rc.Control(func(fd uintptr) {
		// SO_MEMINFO: the socket's memory counters, SK_MEMINFO_DROPS last.
		var mi [skMeminfoVars]uint32
		n := uint32(len(mi) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mi[0])), uintptr(unsafe.Pointer(&n)), 0)
		if errno == 0 && n >= (skMeminfoDrops+1)*4 {
			st.Dropped = uint64(mi[skMeminfoDrops])
		}
	})
	return st
}

// LocalAddr returns the address the socket is bound to.
func (c *BatchConn) LocalAddr() netip.AddrPort { return c.laddr }

// Close closes the socket. A pending ReadBatch returns net.ErrClosed.
func (c *BatchConn) Close() error {
	if c.closed.Swap(true) {
		return c.uc.Close() // reports the double close
	}
	c.mtuMu.Lock()
	if c.mtuFD >= 0 {
		unix.Close(c.mtuFD)
		c.mtuFD = -1
	}
	c.mtuMu.Unlock()
	return c.uc.Close()
}

// ReadBatch implements Conn. Each returned Buf has its capacity capped at its
// length, so appending to it never overwrites a neighbouring datagram.
func (c *BatchConn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	r := &c.r
	for {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		if n := c.drain(msgs); n > 0 {
			return n, nil
		}
		r.vlen = min(len(msgs), len(r.hdrs))
		for i := range r.vlen {
			h := &r.hdrs[i].Hdr
			h.Namelen = unix.SizeofSockaddrInet6
			h.Flags = 0
			if c.gro {
				h.SetControllen(ctrlSize)
			}
		}
		if err := c.rc.Read(r.fn); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return 0, net.ErrClosed
			}
			return 0, err
		}
		if r.errno != 0 {
			return 0, os.NewSyscallError("recvmmsg", r.errno)
		}
		c.readCalls.Add(1)
		for i := range r.n {
			h := &r.hdrs[i].Hdr
			r.addrs[i] = r.decodeAddr(&r.names[i])
			r.segs[i] = 0
			if c.gro {
				clen := min(int(h.Controllen), ctrlSize)
				r.segs[i] = groSegment(r.ctrl[i*ctrlSize : i*ctrlSize+clen])
			}
		}
		r.next, r.off = 0, 0
	}
}

// rawRead is the receive call run by the runtime poller: false means "wait
// until readable and call again".
func (c *BatchConn) rawRead(fd uintptr) bool {
	r := &c.r
	for {
		var n uintptr
		var errno syscall.Errno
		if c.mmsg.Load() {
			n, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, fd,
				uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.vlen), 0, 0, 0)
			if errno == unix.ENOSYS {
				c.mmsg.Store(false)
				continue
			}
		} else {
			n, _, errno = unix.Syscall(unix.SYS_RECVMSG, fd,
				uintptr(unsafe.Pointer(&r.hdrs[0].Hdr)), 0)
			if errno == 0 {
				r.hdrs[0].Len = uint32(n)
				n = 1
			}
		}
		switch errno {
		case 0:
			r.n, r.errno = int(n), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.n, r.errno = 0, errno
			return true
		}
	}
}

// drain hands out received datagrams not yet returned, splitting GRO
// buffers, and returns how many it put in msgs.
func (c *BatchConn) drain(msgs []Message) int {
	r := &c.r
	k := 0
	for k < len(msgs) && r.next < r.n {
		i := r.next
		h := &r.hdrs[i]
		size := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			c.truncated.Add(1)
			r.next++
			continue
		}
		buf := r.slab[i*r.bufSize : i*r.bufSize+size]
		if size == 0 {
			msgs[k] = Message{Buf: buf[:0:0], Addr: r.addrs[i]}
			k++
			r.next++
			continue
		}
		seg := r.segs[i]
		if seg <= 0 || seg > size {
			seg = size
		}
		for k < len(msgs) && r.off < size {
			end := min(r.off+seg, size)
			msgs[k] = Message{Buf: buf[r.off:end:end], Addr: r.addrs[i]}
			k++
			r.off = end
		}
		if r.off >= size {
			r.next++
			r.off = 0
		}
	}
	return k
}

// groSegment returns the UDP_GRO segment size from a received control
// buffer, or 0 if there is none.
func groSegment(ctrl []byte) int {
	hdrLen := unix.CmsgLen(0)
	for len(ctrl) >= hdrLen {
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(cm.Len)
		if l < hdrLen || l > len(ctrl) {
			return 0
		}
		if cm.Level == unix.SOL_UDP && cm.Type == unix.UDP_GRO && l >= hdrLen+4 {
			return int(*(*int32)(unsafe.Pointer(&ctrl[hdrLen])))
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next > len(ctrl) {
			return 0
		}
		ctrl = ctrl[next:]
	}
	return 0
}

// decodeAddr converts a kernel sockaddr to an unmapped AddrPort without
// allocating (a link-local IPv6 zone is allocated once per scope id).
func (r *recvState) decodeAddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if a.Is4In6() {
			a = a.Unmap()
		} else if sa.Scope_id != 0 {
			zone, ok := r.zones[sa.Scope_id]
			if !ok {
				zone = strconv.FormatUint(uint64(sa.Scope_id), 10)
				r.zones[sa.Scope_id] = zone
			}
			a = a.WithZone(zone)
		}
		return netip.AddrPortFrom(a, ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// encodeAddr writes ap as a sockaddr for the socket's family and returns its
// length, or 0 if ap cannot be reached from this socket.
func encodeAddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	a := ap.Addr()
	if !a.IsValid() {
		return 0
	}
	if !v6 {
		if !a.Unmap().Is4() {
			return 0
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(ap.Port()), Addr: a.Unmap().As4()}
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		id, err := strconv.ParseUint(z, 10, 32)
		if err != nil {
			ifi, ierr := net.InterfaceByName(z)
			if ierr != nil {
				return 0
			}
			id = uint64(ifi.Index)
		}
		sa.Scope_id = uint32(id)
	}
	return unix.SizeofSockaddrInet6
}

// ntohs reads a port stored in network byte order in a sockaddr field.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// htons returns the value to store in a sockaddr port field so that its
// bytes are in network order.
func htons(port uint16) uint16 {
	var p uint16
	b := (*[2]byte)(unsafe.Pointer(&p))
	b[0], b[1] = byte(port>>8), byte(port)
	return p
}

// WriteBatch implements Conn.
func (c *BatchConn) WriteBatch(msgs []Message) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	w := &c.w
	sent := 0
	var first error
	useGSO := c.gso.Load()
	i := 0
outer:
	for i < len(msgs) {
		next, ferr := c.fill(msgs, i, useGSO)
		if first == nil {
			first = ferr
		}
		w.start = 0
		for w.start < w.end {
			if err := c.rc.Write(w.fn); err != nil {
				c.clearSend()
				if errors.Is(err, net.ErrClosed) {
					err = net.ErrClosed
				}
				return sent, err
			}
			for h := w.start; h < w.start+w.n; h++ {
				sent += w.count[h]
				if w.count[h] > 1 {
					c.gsoWorked = true
				}
			}
			w.start += w.n
			if w.errno == 0 {
				c.writeCalls.Add(1)
				continue
			}
			h := w.start
			if w.count[h] > 1 && (w.errno == unix.EIO || w.errno == unix.EINVAL) {
				// The kernel or device refused segmentation: resend from
				// this run without GSO. EIO (no checksum offload) or a
				// failure before any GSO send succeeded means GSO does not
				// work on this socket at all.
				if w.errno == unix.EIO || !c.gsoWorked {
					c.gso.Store(false)
				}
				useGSO = false
				i = w.first[h]
				c.clearSend()
				continue outer
			}
			if first == nil {
				first = os.NewSyscallError("sendmmsg", w.errno)
			}
			w.start++ // skip the message the kernel refused
		}
		c.clearSend()
		i = next
	}
	return sent, first
}

// fill prepares hdrs for msgs[i:], coalescing runs into GSO sends if useGSO,
// until the batch or the preallocated arrays run out. It returns the index
// of the first message not prepared and ErrBadAddr if it skipped a message
// with an unusable address.
func (c *BatchConn) fill(msgs []Message, i int, useGSO bool) (int, error) {
	w := &c.w
	var err error
	nh, niov := 0, 0
	for i < len(msgs) && nh < len(w.hdrs) && niov < len(w.iovs) {
		m := &msgs[i]
		namelen := encodeAddr(&w.names[nh], m.Addr, c.v6)
		if namelen == 0 {
			err = ErrBadAddr
			i++
			continue
		}
		size := len(m.Buf)
		j, total := i+1, size
		if useGSO && size > 0 {
			for j < len(msgs) && j-i < maxGSOSegments && niov+j-i < len(w.iovs) {
				l := len(msgs[j].Buf)
				if l == 0 || l > size || total+l > maxGSOBytes || msgs[j].Addr != m.Addr {
					break
				}
				total += l
				j++
				if l < size {
					break
				}
			}
		}
		for k := i; k < j; k++ {
			iov := &w.iovs[niov+k-i]
			if b := msgs[k].Buf; len(b) > 0 {
				iov.Base = &b[0]
			}
			iov.SetLen(len(msgs[k].Buf))
		}
		h := &w.hdrs[nh].Hdr
		h.Name = (*byte)(unsafe.Pointer(&w.names[nh]))
		h.Namelen = namelen
		h.Iov = &w.iovs[niov]
		h.SetIovlen(j - i)
		h.Flags = 0
		if j-i > 1 {
			ctrl := w.ctrl[nh*ctrlSize : (nh+1)*ctrlSize]
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
			cm.Level = unix.SOL_UDP
			cm.Type = unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&ctrl[unix.CmsgLen(0)])) = uint16(size)
			h.Control = &ctrl[0]
			h.SetControllen(unix.CmsgSpace(2))
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		w.first[nh], w.count[nh] = i, j-i
		nh++
		niov += j - i
		i = j
	}
	w.end, w.niov = nh, niov
	return i, err
}

// clearSend drops the references to the caller's buffers.
func (c *BatchConn) clearSend() {
	clear(c.w.iovs[:c.w.niov])
	c.w.end, c.w.niov = 0, 0
}

// rawWrite is the send call run by the runtime poller: false means "wait
// until writable and call again".
func (c *BatchConn) rawWrite(fd uintptr) bool {
	w := &c.w
	for {
		var n uintptr
		var errno syscall.Errno
		if c.mmsg.Load() {
			n, _, errno = unix.Syscall6(unix.SYS_SENDMMSG, fd,
				uintptr(unsafe.Pointer(&w.hdrs[w.start])), uintptr(w.end-w.start), 0, 0, 0)
			if errno == unix.ENOSYS {
				c.mmsg.Store(false)
				continue
			}
		} else {
			_, _, errno = unix.Syscall(unix.SYS_SENDMSG, fd,
				uintptr(unsafe.Pointer(&w.hdrs[w.start].Hdr)), 0)
			n = 1
		}
		switch errno {
		case 0:
			w.n, w.errno = int(n), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			w.n, w.errno = 0, errno
			return true
		}
	}
}
