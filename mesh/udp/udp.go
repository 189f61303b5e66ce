// Package udp is netmesh's batched UDP transport.
//
// A [Conn] reads and writes datagrams in batches. On Linux, [Listen] returns a
// [BatchConn] that picks the fastest path the kernel offers, detected at run
// time:
//
//   - UDP GSO (UDP_SEGMENT) on send: a run of same-size datagrams to one
//     destination leaves in a single send; UDP GRO (UDP_GRO) on receive: the
//     kernel hands over coalesced datagrams, which ReadBatch splits again
//     without copying.
//   - sendmmsg/recvmmsg: many datagrams per system call.
//   - one datagram per system call.
//
// Elsewhere a portable implementation over [net.UDPConn] moves one datagram
// per call.
//
// In steady state neither ReadBatch nor WriteBatch allocates.
package udp

import (
	"errors"
	"net"
	"net/netip"
	"strings"
)

// Limits of the Linux implementation. GSO limits come from the kernel
// (include/linux/udp.h and the 16-bit IP length field).
const (
	// maxGSOSegments is the most datagrams one GSO send carries. Kernels
	// since 6.9 accept 128; 64 works everywhere GSO exists.
	maxGSOSegments = 64
	// maxGSOBytes is the most payload one GSO send carries: 65535 minus the
	// IPv4 (20) and UDP (8) headers. Also used for IPv6, conservatively.
	maxGSOBytes = 65507
	// groBufferSize is the size of each receive buffer when GRO is on (a
	// coalesced read carries up to 64 KiB of payload), and of the single
	// buffer of the portable implementation.
	groBufferSize = 1 << 16
	// DefaultMaxDatagramSize is the receive buffer size per datagram when GRO
	// is off: 9216 bytes covers jumbo frames (9000-byte MTU).
	DefaultMaxDatagramSize = 9216
	// DefaultSocketBuffer is the SO_RCVBUF and SO_SNDBUF size Listen asks
	// for: 4 MiB absorbs bursts of several thousand 1200-byte datagrams.
	DefaultSocketBuffer = 4 << 20
)

// Message is one datagram.
type Message struct {
	// Buf is the datagram. After ReadBatch it points into memory the Conn
	// owns and stays valid until the next ReadBatch call. For WriteBatch it
	// is the datagram to send; the Conn does not keep it after the call.
	Buf []byte
	// Addr is the source after ReadBatch and the destination for WriteBatch.
	// Addresses a Conn returns are always unmapped: an IPv4 peer has a 4-byte
	// address, even on an IPv6 socket.
	Addr netip.AddrPort
}

// Conn is a batched UDP socket.
type Conn interface {
	// ReadBatch blocks until at least one datagram arrives, fills msgs[:n]
	// and returns n. Only one goroutine may call it at a time.
	// GRO-coalesced reads are split into one Message per datagram, as
	// sub-slices of the receive buffer (no copy). After Close it returns
	// net.ErrClosed; any other error is transient and the caller may read
	// again.
	ReadBatch(msgs []Message) (n int, err error)
	// WriteBatch sends every message. Consecutive messages to the same Addr
	// with the same length (the last of a run may be shorter) are coalesced
	// into one GSO send where supported. A message that cannot be sent (bad
	// address, unreachable network, full device queue) is skipped and the
	// rest are still sent. It returns how many messages were sent and the
	// first error. Safe for concurrent use.
	WriteBatch(msgs []Message) (int, error)
	// LocalAddr is the address the socket is bound to.
	LocalAddr() netip.AddrPort
	// Close closes the socket and unblocks a pending ReadBatch.
	Close() error
}

// Features tells which kernel offloads a BatchConn uses.
type Features struct {
	GSO  bool // UDP generic segmentation offload on send (UDP_SEGMENT)
	GRO  bool // UDP generic receive offload on receive (UDP_GRO)
	MMsg bool // sendmmsg/recvmmsg: many datagrams per system call
	// DF: datagrams leave with don't-fragment set and the kernel's path MTU
	// cache ignored (IP_PMTUDISC_PROBE), so a datagram larger than the path
	// is lost rather than fragmented: what path MTU probing needs.
	DF bool
}

// String names the mode for logs and stats: the enabled features joined by
// "+" (for example "gso+gro+mmsg"), or "plain" for one datagram per call.
func (f Features) String() string {
	var parts []string
	if f.GSO {
		parts = append(parts, "gso")
	}
	if f.GRO {
		parts = append(parts, "gro")
	}
	if f.MMsg {
		parts = append(parts, "mmsg")
	}
	if f.DF {
		parts = append(parts, "df")
	}
	if len(parts) == 0 {
		return "plain"
	}
	return strings.Join(parts, "+")
}

// Stats counts a BatchConn's work since Listen.
type Stats struct {
	ReadCalls  uint64 // receive system calls that returned data
	WriteCalls uint64 // send system calls that sent data
	Truncated  uint64 // datagrams dropped for being larger than the receive buffer
	// Dropped counts datagrams the kernel dropped for the socket before
	// a read saw them: refused by ListenConfig.Accept, or arrived with
	// the receive buffer full (Linux; 0 elsewhere).
	Dropped uint64
}

// ByteRange is an inclusive range of first bytes (see ListenConfig.Accept).
type ByteRange struct{ Min, Max byte }

// WordMatch is a condition on the datagrams that start with one byte
// (see ListenConfig.Match): the 4 bytes at Offset, read big-endian and
// masked with Mask, must equal Value.
type WordMatch struct {
	First       byte
	Offset      uint32
	Mask, Value uint32
}

// ListenConfig holds options for Listen. The zero value picks the fastest
// mode the kernel supports with default sizes.
type ListenConfig struct {
	// DisableGSO turns off UDP_SEGMENT on send.
	DisableGSO bool
	// DisableGRO turns off UDP_GRO on receive.
	DisableGRO bool
	// DisableMMsg turns off sendmmsg/recvmmsg: one datagram per system call
	// (GSO and GRO, if on, still move many datagrams per call).
	DisableMMsg bool
	// ReadBuffers is how many receive buffers one receive system call fills
	// at most. Zero means 8 with GRO (each 64 KiB, up to 64 datagrams each),
	// 64 without GRO, 1 without recvmmsg.
	ReadBuffers int
	// MaxDatagramSize is the receive buffer size when GRO is off; larger
	// datagrams are dropped and counted in Stats.Truncated. Zero means
	// DefaultMaxDatagramSize.
	MaxDatagramSize int
	// SocketBuffer is the SO_RCVBUF and SO_SNDBUF size to ask for (as root
	// the rmem_max/wmem_max limits are bypassed); failures are ignored.
	// Zero means DefaultSocketBuffer; negative leaves the kernel default.
	SocketBuffer int
	// Accept, if set, makes the kernel drop every datagram whose first
	// byte is outside the range, except STUN messages (first byte below
	// 4, the magic cookie at bytes 4 to 7), before it reaches the socket:
	// a flood of such junk then costs the receiving process nothing, not
	// even a wake-up. Stats.Dropped counts what it refused. Linux only (a
	// socket filter); elsewhere, and where attaching the filter fails,
	// everything arrives and the reader must check.
	Accept *ByteRange
	// Match, with Accept, makes the kernel also drop the datagrams whose
	// first byte is Match.First and that fail the match, or are too short
	// to hold its word. Linux only, like Accept.
	Match *WordMatch
}

// Errors.
var (
	// ErrBadAddr is returned by WriteBatch for a message whose Addr is
	// invalid or of a family the socket cannot reach.
	ErrBadAddr = errors.New("udp: invalid destination address")
	// ErrNetwork is returned by Listen for a network other than "udp4" or
	// "udp6".
	ErrNetwork = errors.New(`udp: network must be "udp4" or "udp6"`)
)

// Listen opens a UDP socket on laddr with the default ListenConfig.
// network is "udp4" or "udp6"; an invalid laddr means any address and an
// ephemeral port.
func Listen(network string, laddr netip.AddrPort) (*BatchConn, error) {
	var lc ListenConfig
	return lc.Listen(network, laddr)
}

func (lc *ListenConfig) socketBuffer() int {
	if lc.SocketBuffer == 0 {
		return DefaultSocketBuffer
	}
	return lc.SocketBuffer
}

// listenUDP opens the underlying socket and returns it with its unmapped
// local address.
func listenUDP(network string, laddr netip.AddrPort) (*net.UDPConn, netip.AddrPort, error) {
	if network != "udp4" && network != "udp6" {
		return nil, netip.AddrPort{}, ErrNetwork
	}
	var ua *net.UDPAddr
	if laddr.IsValid() {
		ua = net.UDPAddrFromAddrPort(laddr)
	} else {
		ua = &net.UDPAddr{Port: int(laddr.Port())}
	}
	uc, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	local := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	return uc, unmap(local), nil
}

// unmap turns an IPv4-mapped IPv6 address into a 4-byte IPv4 address.
func unmap(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}
