package main

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/noise"
)

func TestParsePeerFlag(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	key := hex.EncodeToString(id.PublicKey())
	for _, ok := range []string{"127.0.0.1:7946", "[::1]:7946,key=" + key, "id=" + id.NodeID().String(), "relay.example.com:7946"} {
		ps, err := parsePeerFlag(ok)
		if err != nil {
			t.Errorf("parsePeerFlag(%q): %v", ok, err)
			continue
		}
		if _, err := ps.dialAddr(); err != nil {
			t.Errorf("parsePeerFlag(%q).dialAddr(): %v", ok, err)
		}
	}
	for _, bad := range []string{"127.0.0.1:1,colour=blue", "127.0.0.1:1,127.0.0.2:1", "id=cd", ""} {
		if _, err := parsePeerFlag(bad); err == nil {
			t.Errorf("parsePeerFlag(%q) accepted it", bad)
		}
	}
}

func TestCheckHostPort(t *testing.T) {
	for _, ok := range []string{":7946", "127.0.0.1:0", "[::]:1", "0.0.0.0:65535"} {
		if err := checkHostPort(ok); err != nil {
			t.Errorf("checkHostPort(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "7946", "127.0.0.1", ":65536", ":-1", ":http", "localhost:1", "1.2.3:4"} {
		if err := checkHostPort(bad); err == nil {
			t.Errorf("checkHostPort(%q) accepted it", bad)
		}
	}
}

func TestPeerSpec(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	key := hex.EncodeToString(id.PublicKey())
	da, err := peerSpec{Addr: "127.0.0.1:1", Key: key}.dialAddr()
	if err != nil || da.NodeID() != id.NodeID() || !da.Key.Equal(id.PublicKey()) {
		t.Errorf("key pin: %+v, %v", da, err)
	}
	da, err = peerSpec{ID: id.NodeID().String()}.dialAddr()
	if err != nil || da.Host != "" || da.NodeID() != id.NodeID() || da.String() != "id="+id.NodeID().String() {
		t.Errorf("id only: %+v, %v", da, err)
	}
	// A dial string in the file is the same peer as the table.
	var fromText peerSpec
	if err := fromText.UnmarshalText([]byte("127.0.0.1:1,key=" + key)); err != nil {
		t.Fatal(err)
	}
	if da, err := fromText.dialAddr(); err != nil || da.NodeID() != id.NodeID() {
		t.Errorf("dial string: %+v, %v", da, err)
	}
	for _, bad := range []peerSpec{
		{},
		{Addr: "127.0.0.1:0"},
		{Addr: "127.0.0.1:1", Key: key[2:]},
		{Addr: "127.0.0.1:1", Key: key, ID: other.NodeID().String()},
	} {
		if _, err := bad.dialAddr(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := (peerSpec{ID: id.NodeID().String()}).relay(); err == nil {
		t.Error("a relay without an address was accepted")
	}
	if r, err := (peerSpec{Addr: "127.0.0.1:7946", Key: key}).relay(); err != nil || r.Addr.String() != "127.0.0.1:7946" || r.Pin.ID != id.NodeID() {
		t.Errorf("relay: %+v, %v", r, err)
	}
}

func TestValidateDefaults(t *testing.T) {
	rc, err := fileConfig{KeyFile: "k"}.validate(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rc.listen != defaultListen || !rc.relay || rc.control != defaultControlPath() || rc.metrics != "" || rc.logger == nil {
		t.Errorf("defaults: %+v", rc)
	}
	off := false
	rc, err = fileConfig{KeyFile: "k", Relay: &off}.validate(io.Discard)
	if err != nil || rc.relay {
		t.Errorf("relay = false: %+v, %v", rc, err)
	}
	if _, err := (fileConfig{}).validate(io.Discard); err == nil || !strings.Contains(err.Error(), "key_file") {
		t.Errorf("no key file: %v", err)
	}
}

func TestCipherSuiteKey(t *testing.T) {
	for in, want := range map[string]noise.Suite{"": 0, "auto": 0, "AESGCM": noise.SuiteAESGCM, "chachapoly": noise.SuiteChaChaPoly} {
		rc, err := fileConfig{KeyFile: "k", CipherSuite: in}.validate(io.Discard)
		if err != nil || rc.suite != want {
			t.Errorf("cipher_suite %q: %v, %v; want %v", in, rc, err, want)
		}
	}
	if _, err := (fileConfig{KeyFile: "k", CipherSuite: "rot13"}).validate(io.Discard); err == nil || !strings.Contains(err.Error(), "cipher_suite") {
		t.Errorf("cipher_suite rot13: %v", err)
	}
}

// TestFlagsOverrideFile runs `netnode run` in process with settings that
// fail validation, to see which of file and flag won.
func TestFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "n.toml")
	err := os.WriteFile(cfg, []byte(`
key_file = "from-file.key"
listen = "127.0.0.1:0"
log_format = "xml"
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) error {
		root := newRoot()
		root.SetArgs(append([]string{"run", "--config", cfg}, args...))
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		return root.ExecuteContext(context.Background())
	}
	// The file's bad log_format fails...
	if err := run(); err == nil || !strings.Contains(err.Error(), "log_format") {
		t.Errorf("file only: %v", err)
	}
	// ...unless the flag replaces it; then the file's key file is missing...
	err = run("--log-format", "json")
	if err == nil || !strings.Contains(err.Error(), "from-file.key") {
		t.Errorf("--log-format: %v", err)
	}
	// ...unless --key replaces it; and --listen replaces a good listen.
	err = run("--log-format", "json", "--key", "from-flag.key", "--listen", "nowhere")
	var ue usageError
	if err == nil || !strings.Contains(err.Error(), `listen "nowhere"`) || !errors.As(err, &ue) {
		t.Errorf("--listen: %v", err)
	}
}

func TestValidateFeatures(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	issuer := hex.EncodeToString(id.PublicKey())
	rc, err := fileConfig{
		KeyFile:      "k",
		Capabilities: []string{"gpu", "region:eu"},
		Metadata:     map[string]string{"gpu_mem_gb": "24"},
		Telemetry:    true,
		Subnet:       "3.1.0.0",
		SubnetPolicy: []subnetRuleSpec{{Tag: "rack:7", Subnet: "3.1.7.0"}, {Tag: "region:eu", Subnet: "3.0.0.0"}},
		Channels: []channelSpec{
			{Name: "jobs"},
			{Name: "eu/temp", Visibility: "parent-visible", SubscribeCaps: "gpu && gpu_mem_gb>=24", PublishCaps: "region:eu",
				RequireToken: true, TokenIssuers: []string{issuer}, MaxSubscribers: 5, PendingLimit: 7, PublishWait: "250ms"},
			{Name: "eu/firehose", PublishWait: "never"},
		},
		MDNS: true,
		NAT:  &natSpec{}, // an empty section is accepted in every build
	}.validate(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !rc.caps.HasTag("gpu") || rc.caps.Metadata["gpu_mem_gb"] != "24" || !rc.telemetry || !rc.mdns || rc.subnet.String() != "3.1.0.0" {
		t.Errorf("features: %+v", rc)
	}
	if len(rc.policy.Rules) != 2 || rc.policy.Rules[0].Subnet.String() != "3.1.7.0" || rc.policy.Rules[1].Tag != "region:eu" {
		t.Errorf("policy: %+v", rc.policy)
	}
	if len(rc.channels) != 3 || rc.channels[0].name != "jobs" || rc.channels[0].cfg.Visibility != channel.Global || rc.channels[0].cfg.PublishWait != 0 {
		t.Fatalf("channels: %+v", rc.channels)
	}
	c := rc.channels[1].cfg
	gpu := capability.Node{Set: capability.Set{Tags: []string{"gpu"}, Metadata: map[string]string{"gpu_mem_gb": "32"}}}
	if c.Visibility != channel.ParentVisible || !c.RequireToken || c.MaxSubscribers != 5 || c.PendingLimit != 7 || c.PublishWait != 250*time.Millisecond ||
		len(c.TokenIssuers) != 1 || !c.TokenIssuers[0].Equal(id.PublicKey()) ||
		!c.SubscribeCaps.Match(gpu) || c.PublishCaps.Match(gpu) {
		t.Errorf("eu/temp: %+v", c)
	}
	if w := rc.channels[2].cfg.PublishWait; w >= 0 {
		t.Errorf("eu/firehose: publish_wait \"never\" gave PublishWait %v, want negative", w)
	}
}

// TestSTUNFlagKeepsNATSection checks that --stun-server replaces only
// nat.stun_servers, not the file's other nat keys.
func TestSTUNFlagKeepsNATSection(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "n.toml")
	err := os.WriteFile(cfg, []byte(`
key_file = "absent.key"
listen = "127.0.0.1:0"

[nat]
port_map = true
punch = false
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := loadConfigFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rf := runFlags{stun: []string{"192.0.2.1:3478"}}
	if err := rf.apply(&fc, func(name string) bool { return name == "stun-server" }); err != nil {
		t.Fatal(err)
	}
	if fc.NAT == nil || !fc.NAT.PortMap || fc.NAT.Punch == nil || *fc.NAT.Punch || len(fc.NAT.STUNServers) != 1 {
		t.Errorf("nat section after --stun-server: %+v", fc.NAT)
	}

	// The same through the command: a build that cannot map ports must
	// still refuse the file's port_map (or, without nat, its punch).
	if portmapCompiled {
		return
	}
	root := newRoot()
	root.SetArgs([]string{"run", "--config", cfg, "--stun-server", "192.0.2.1:3478"})
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	if err := root.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "nat.p") {
		t.Errorf("port_map with --stun-server in a build without portmap: %v", err)
	}
}

// TestKeyFileRelativeToConfig: a relative key_file names a file next to
// the config file, whatever the working directory; a missing one is
// reported without suggesting keygen, which would make another identity.
func TestKeyFileRelativeToConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(cfg, []byte("key_file = \"keys/node.key\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := loadConfigFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "keys", "node.key"); fc.KeyFile != want {
		t.Fatalf("key_file resolved to %q, want %q", fc.KeyFile, want)
	}
	_, err = loadKey(fc.KeyFile)
	if err == nil || !strings.Contains(err.Error(), fc.KeyFile) || strings.Contains(err.Error(), "keygen") {
		t.Fatalf("missing key: %v; want the resolved path and no keygen hint", err)
	}
}
