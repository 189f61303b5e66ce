//go:build !linux

package udp

import (
	"errors"
	"net/netip"
)

// PathMTU returns the MTU, in bytes of IP packet, that the kernel would
// use for packets from c to addr. This portable version cannot ask the
// kernel and returns errors.ErrUnsupported.
func (c *BatchConn) PathMTU(addr netip.AddrPort) (int, error) {
	return 0, errors.ErrUnsupported
}
