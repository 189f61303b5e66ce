package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// The environment and the build: where netnode looks for its control
// socket and config file when no flag says, and what --version prints.

// Environment variables that stand in for flags.
const (
	// controlEnv names the control socket, for --control: every command
	// that talks to a node dials it, and run listens on it, unless a flag
	// (or run's config file) says otherwise.
	controlEnv = "NETNODE_CONTROL"
	// configEnv names run's config file, for --config.
	configEnv = "NETNODE_CONFIG"
)

// controlPath is the control socket when --control is not given:
// $NETNODE_CONTROL, else the platform's default (defaultControlPath).
func controlPath() string {
	if p := os.Getenv(controlEnv); p != "" {
		return p
	}
	return defaultControlPath()
}

// defaultConfigPaths are where run looks for a config file when neither
// --config nor $NETNODE_CONFIG names one, in order: the user's
// ($XDG_CONFIG_HOME, else ~/.config), then the system's.
func defaultConfigPaths() []string {
	var paths []string
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".config")
		}
	}
	if dir != "" {
		paths = append(paths, filepath.Join(dir, "netnode", "node.toml"))
	}
	return append(paths, "/etc/netnode/node.toml")
}

// findConfig returns run's config file: flag if given, else
// $NETNODE_CONFIG, else the first default path that exists; "" for none.
func findConfig(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if p := os.Getenv(configEnv); p != "" {
		return p, nil
	}
	for _, p := range defaultConfigPaths() {
		_, err := os.Stat(p)
		switch {
		case err == nil:
			return p, nil
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("config %s: %w", p, err)
		}
	}
	return "", nil
}

// versionLine is what netnode --version prints after "netnode version":
// the module version the binary was built from, and the commit when the
// go command recorded it.
func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := []string{buildVersion()}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		c := "commit " + rev[:min(12, len(rev))]
		if modified == "true" {
			c += " (modified)"
		}
		v = append(v, c)
	}
	return strings.Join(append(v, bi.GoVersion), ", ")
}
