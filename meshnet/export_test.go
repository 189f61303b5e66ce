package meshnet

import (
	"net"

	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// ShrinkLinger sets the linger time for the rest of the test.
func ShrinkLinger(t *testing.T, d time.Duration) {
	old := lingerTimeout
	lingerTimeout = d
	t.Cleanup(func() { lingerTimeout = old })
}

// KeptReadBuffer returns the capacity of the read buffer c keeps.
func KeptReadBuffer(c *Conn) int {
	c.rlock <- struct{}{}
	defer release(c.rlock)
	return cap(c.rbuf)
}

// MaxKeptReadBuffer is maxKeptReadBuffer.
const MaxKeptReadBuffer = maxKeptReadBuffer

// StreamOf returns the stream under c.
func StreamOf(c net.Conn) *mesh.Stream { return c.(*Conn).s }
