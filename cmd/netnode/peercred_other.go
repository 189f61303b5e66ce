//go:build unix && !linux && !darwin && !freebsd

package main

import (
	"errors"
	"net"
)

// peerUID fails: netnode knows how to read a unix socket's peer
// credentials on Linux, macOS and FreeBSD only, and without them the
// control socket cannot tell its owner from another local user.
func peerUID(*net.UnixConn) (int, error) {
	return 0, errors.New("reading a unix socket's peer credentials is not supported on this system")
}
