package main

import (
	"os/exec"
	"testing"
)

// asNobody skips: running a command as another user is a unix test.
func asNobody(t *testing.T) (func(*exec.Cmd), int) {
	t.Helper()
	t.Skip("runs a command as another user: unix only")
	return nil, 0
}

// runAs is never reached on Windows: the tests that use it call asNobody
// first, which skips.
func runAs(uid, gid int) func(*exec.Cmd) {
	panic("runAs: unix only")
}
