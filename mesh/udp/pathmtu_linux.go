package udp

import (
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// PathMTU returns the MTU, in bytes of IP packet, that the kernel would
// use for packets from c to addr: the MTU of the route's interface, or a
// smaller path MTU the kernel has learned for addr. It connects a spare
// socket of c's family and network namespace to addr, which sends
// nothing, and reads IP_MTU or IPV6_MTU.
func (c *BatchConn) PathMTU(addr netip.AddrPort) (int, error) {
	a := addr.Addr()
	if !a.IsValid() || addr.Port() == 0 {
		return 0, ErrBadAddr
	}
	var (
		sa         unix.Sockaddr
		level, opt int
	)
	switch {
	case c.v6:
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_MTU
		sa6 := &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return 0, err
			}
			sa6.ZoneId = uint32(ifi.Index)
		}
		sa = sa6
	case a.Unmap().Is4():
		level, opt = unix.IPPROTO_IP, unix.IP_MTU
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.Unmap().As4()}
	default:
		return 0, ErrBadAddr // IPv6 from an IPv4 socket
	}
	c.mtuMu.Lock()
	defer c.mtuMu.Unlock()
	if c.mtuFD < 0 {
		return 0, net.ErrClosed
	}
	if err := unix.Connect(c.mtuFD, sa); err != nil {
		return 0, os.NewSyscallError("connect", err)
	}
	mtu, err := unix.GetsockoptInt(c.mtuFD, level, opt)
	if err != nil {
		return 0, os.NewSyscallError("getsockopt", err)
	}
	return mtu, nil
}
