//go:build unix

package main

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// defaultControlPath is the control socket a node listens on and the
// other commands dial when --control is not given:
// $XDG_RUNTIME_DIR/netnode.sock, else /tmp/netnode-<uid>.sock.
func defaultControlPath() string {
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		return dir + "/netnode.sock"
	}
	return fmt.Sprintf("/tmp/netnode-%d.sock", os.Getuid())
}

// prepareControlDir has nothing to do on unix: the socket file's mode and
// the peer credential checks keep other users out, wherever it lives.
func prepareControlDir(string) error { return nil }

// waitHangUp returns when the client has closed its end of c, not only
// shut down its writing side, or when c is closed here.
func waitHangUp(c *net.UnixConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	// A read wait wakes at every event on the socket; a peer that closes
	// leaves POLLHUP set, one that shut down writing only POLLRDHUP.
	raw.Read(func(fd uintptr) bool {
		for {
			fds := []unix.PollFd{{Fd: int32(fd)}}
			n, err := unix.Poll(fds, 0)
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				return true
			}
			return n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
		}
	})
}
