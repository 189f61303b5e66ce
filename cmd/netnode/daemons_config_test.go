package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The daemons section is checked at start.
func TestDaemonsConfig(t *testing.T) {
	dir := t.TempDir()
	load := func(s string) (*runConfig, error) {
		path := filepath.Join(dir, "n.toml")
		if err := os.WriteFile(path, []byte("key_file = \"k\"\n"+s), 0o600); err != nil {
			t.Fatal(err)
		}
		fc, err := loadConfigFile(path)
		if err != nil {
			return nil, err
		}
		return fc.validate(io.Discard)
	}
	rc, err := load("[daemons]\nmax_daemons = 8\ninbox_size = 64\n")
	if err != nil {
		t.Fatal(err)
	}
	if rc.daemons.MaxDaemons != 8 || rc.daemons.InboxSize != 64 {
		t.Fatalf("daemons %+v", rc.daemons)
	}
	for _, tc := range []struct{ config, want string }{
		{"[daemons]\nmax_daemons = -1", "max_daemons"},
		{"[daemons]\nkinds = [\"x\"]", "unknown key"},
	} {
		if _, err := load(tc.config); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want one containing %q", tc.config, err, tc.want)
		}
	}
}
