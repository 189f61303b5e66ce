package main

import (
	"errors"

	"github.com/netmesh/netmesh/daemon"
)

// daemonsSpec is the daemons section of the config: the node's daemon
// runtime, which runs the built-in kind counter.
type daemonsSpec struct {
	// MaxDaemons bounds the daemons the node hosts; InboxSize one
	// daemon's events waiting (0: the defaults).
	MaxDaemons int `toml:"max_daemons"`
	InboxSize  int `toml:"inbox_size"`
}

// validateDaemons checks the daemons section into rc.
func (fc fileConfig) validateDaemons(rc *runConfig) error {
	if d := fc.Daemons; d != nil {
		if d.MaxDaemons < 0 || d.InboxSize < 0 {
			return errors.New("daemons: max_daemons and inbox_size must not be negative")
		}
		rc.daemons = daemon.Config{MaxDaemons: d.MaxDaemons, InboxSize: d.InboxSize}
	}
	return nil
}
