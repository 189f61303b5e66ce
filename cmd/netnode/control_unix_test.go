//go:build unix

package main

import (
	"strings"
	"testing"
)

func TestDefaultControlPath(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/7")
	if got := defaultControlPath(); got != "/run/user/7/netnode.sock" {
		t.Errorf("with XDG_RUNTIME_DIR: %s", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if got := defaultControlPath(); !strings.HasPrefix(got, "/tmp/netnode-") {
		t.Errorf("without XDG_RUNTIME_DIR: %s", got)
	}
}
