//go:build unix

package main

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
	"testing"
)

// asNobody returns a command setup that runs it as the user nobody, and
// nobody's uid, or skips the test if that is not possible.
func asNobody(t *testing.T) (func(*exec.Cmd), int) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to run a command as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody:", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	return runAs(uid, gid), uid
}

// runAs returns a command setup that runs it as uid and gid.
func runAs(uid, gid int) func(*exec.Cmd) {
	return func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
}
