package main

import (
	"net"
	"os"
	"path/filepath"
)

// defaultControlPath is the control socket a node listens on and the
// other commands dial when --control is not given:
// %LOCALAPPDATA%\netnode\netnode.sock, inside the user's profile.
func defaultControlPath() string {
	dir := os.Getenv("LOCALAPPDATA")
	if dir == "" {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "netnode", "netnode.sock")
}

// prepareControlDir creates the socket's directory. Windows has no peer
// credentials for AF_UNIX sockets: what keeps other users out is the
// directory, which inherits the user's profile ACL under %LOCALAPPDATA%
// (docs/OPERATIONS.md says to keep --control in such a directory).
func prepareControlDir(path string) error {
	return os.MkdirAll(filepath.Dir(path), 0o700)
}

// peerUID reports the caller's own uid (-1 on Windows): the socket's
// directory, not a credential check, keeps other users out here.
func peerUID(*net.UnixConn) (int, error) { return os.Getuid(), nil }

// waitHangUp returns at once: Windows cannot tell a client that shut down
// its writing side from one that hung up, so the end of the requests ends
// the connection's work.
func waitHangUp(*net.UnixConn) {}
