//go:build !linux

package udp

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
)

// BatchConn is a UDP socket with the Conn interface. This portable version
// moves one datagram per system call.
type BatchConn struct {
	uc     *net.UDPConn
	laddr  netip.AddrPort
	buf    []byte
	closed atomic.Bool

	readCalls  atomic.Uint64
	writeCalls atomic.Uint64
}

// Listen opens a UDP socket on laddr. network is "udp4" or "udp6"; an
// invalid laddr means any address and an ephemeral port. Offload options,
// ReadBuffers and MaxDatagramSize are ignored on this platform: one 64 KiB
// buffer receives one datagram per call.
func (lc *ListenConfig) Listen(network string, laddr netip.AddrPort) (*BatchConn, error) {
	uc, local, err := listenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	if sb := lc.socketBuffer(); sb > 0 {
		_ = uc.SetReadBuffer(sb)
		_ = uc.SetWriteBuffer(sb)
	}
	return &BatchConn{uc: uc, laddr: local, buf: make([]byte, groBufferSize)}, nil
}

// Features reports the offloads in use: none on this platform.
func (c *BatchConn) Features() Features { return Features{} }

// Mode names the mode in use; see Features.String.
func (c *BatchConn) Mode() string { return c.Features().String() }

// Stats returns counters since Listen.
func (c *BatchConn) Stats() Stats {
	return Stats{ReadCalls: c.readCalls.Load(), WriteCalls: c.writeCalls.Load()}
}

// LocalAddr returns the address the socket is bound to.
func (c *BatchConn) LocalAddr() netip.AddrPort { return c.laddr }

// Close closes the socket. A pending ReadBatch returns net.ErrClosed.
func (c *BatchConn) Close() error {
	c.closed.Store(true)
	return c.uc.Close()
}

// ReadBatch implements Conn; it returns one datagram per call.
func (c *BatchConn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	n, addr, err := c.uc.ReadFromUDPAddrPort(c.buf)
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return 0, net.ErrClosed
		}
		return 0, err
	}
	c.readCalls.Add(1)
	msgs[0] = Message{Buf: c.buf[:n:n], Addr: unmap(addr)}
	return 1, nil
}

// WriteBatch implements Conn; it sends one datagram per call.
func (c *BatchConn) WriteBatch(msgs []Message) (int, error) {
	sent := 0
	var first error
	for _, m := range msgs {
		if !m.Addr.IsValid() {
			if first == nil {
				first = ErrBadAddr
			}
			continue
		}
		if _, err := c.uc.WriteToUDPAddrPort(m.Buf, m.Addr); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return sent, net.ErrClosed
			}
			if first == nil {
				first = err
			}
			continue
		}
		c.writeCalls.Add(1)
		sent++
	}
	return sent, first
}
