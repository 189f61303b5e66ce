package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/daemon"
	"github.com/netmesh/netmesh/dialaddr"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/noise"
)

// fileConfig is the TOML configuration file of `netnode run`, decoded
// strictly: a key it does not name is an error. docs/OPERATIONS.md
// documents every key; keep the two in step.
type fileConfig struct {
	KeyFile   string     `toml:"key_file"`
	Listen    string     `toml:"listen"`
	Peers     []peerSpec `toml:"peers"`
	Relays    []peerSpec `toml:"relays"`
	Relay     *bool      `toml:"relay"`
	LogFormat string     `toml:"log_format"`
	LogLevel  string     `toml:"log_level"`
	Control   string     `toml:"control"`
	Metrics   string     `toml:"metrics"`
	Name      string     `toml:"name"`
	// CipherSuite is the AEAD of the sessions the node starts.
	CipherSuite string `toml:"cipher_suite"`

	// Capability announcement and channels.
	Capabilities []string          `toml:"capabilities"`
	Metadata     map[string]string `toml:"metadata"`
	Telemetry    bool              `toml:"telemetry"`
	Subnet       string            `toml:"subnet"`
	SubnetPolicy []subnetRuleSpec  `toml:"subnet_policy"`
	Channels     []channelSpec     `toml:"channels"`

	// Discovery and NAT traversal.
	MDNS bool     `toml:"mdns"`
	NAT  *natSpec `toml:"nat"`

	// RPC.
	RPCBuiltin *bool `toml:"rpc_builtin"`

	// Tasks: the worker, the submitter and the skills run by executables.
	Tasks  *tasksSpec  `toml:"tasks"`
	Skills []skillSpec `toml:"skills"`

	// Daemons: the daemon runtime.
	Daemons *daemonsSpec `toml:"daemons"`

	// Membership: a closed mesh (membership.go).
	Membership *membershipSpec `toml:"membership"`
}

// subnetRuleSpec is one rule of subnet_policy: nodes that announce Tag
// are in Subnet.
type subnetRuleSpec struct {
	Tag    string `toml:"tag"`
	Subnet string `toml:"subnet"`
}

// channelSpec is one channel the node publishes, an entry of channels.
type channelSpec struct {
	Name           string   `toml:"name"`
	Visibility     string   `toml:"visibility"`
	SubscribeCaps  string   `toml:"subscribe_caps"`
	PublishCaps    string   `toml:"publish_caps"`
	RequireToken   bool     `toml:"require_token"`
	TokenIssuers   []string `toml:"token_issuers"`
	MaxSubscribers int      `toml:"max_subscribers"`
	PendingLimit   int      `toml:"pending_limit"`
	// PublishWait is channel.Config.PublishWait as a duration ("1s");
	// "never" for a negative one.
	PublishWait string `toml:"publish_wait"`
	// Groups a subscriber's (this node's) membership certificate must
	// name one of: closed meshes only.
	SubscribeGroups []string `toml:"subscribe_groups"`
	PublishGroups   []string `toml:"publish_groups"`
}

// natSpec is the nat section. It is accepted only by a netnode built with
// the nat build tag (see natCompiled).
type natSpec struct {
	STUNServers []string `toml:"stun_servers"`
	// PortMap asks the router for a UDP port mapping (NAT-PMP, then
	// UPnP-IGD), removed again at shutdown; needs -tags nat,portmap.
	PortMap bool `toml:"port_map"`
	// Punch, when false, stops the node from asking to turn relayed
	// sessions direct (it still answers peers that ask); default true.
	Punch *bool `toml:"punch"`
}

// peerSpec names another node: its address and, optionally, the key or
// NodeID it must have. In the file it is a dial string (package dialaddr:
// "HOST:PORT[,key=HEX][,id=NODEID]") or a table {addr, key, id}; on the
// command line it is a dial string.
type peerSpec struct {
	Addr string `toml:"addr"`
	Key  string `toml:"key"`
	ID   string `toml:"id"`
	dial string // the dial string, when the file gave one
}

// UnmarshalText takes a peer written as a dial string.
func (ps *peerSpec) UnmarshalText(b []byte) error {
	ps.dial = string(b)
	return nil
}

// dialAddr validates ps. An address is required unless an id or key names
// the node (it is then reached through a relay).
func (ps peerSpec) dialAddr() (dialaddr.Addr, error) {
	s := ps.dial
	if s == "" {
		var parts []string
		if ps.Addr != "" {
			parts = append(parts, ps.Addr)
		}
		if ps.Key != "" {
			parts = append(parts, "key="+ps.Key)
		}
		if ps.ID != "" {
			parts = append(parts, "id="+ps.ID)
		}
		s = strings.Join(parts, ",")
	}
	return dialaddr.Parse(s)
}

// runConfig is the validated configuration `netnode run` starts from.
type runConfig struct {
	keyFile string
	listen  string
	peers   []dialaddr.Addr
	relays  []mesh.Relay
	relay   bool
	logger  *slog.Logger
	control string
	metrics string
	name    string      // the node's name: a label others may find it by
	suite   noise.Suite // of the sessions the node starts; zero: the CPU's faster

	caps      capability.Set // announced at start
	telemetry bool
	subnet    channel.SubnetID // zero: not pinned
	policy    channel.SubnetPolicy
	channels  []namedChannel
	mdns      bool
	punch     bool // hole-punch relayed sessions (nat builds)
	nat       mesh.NATConfig

	rpcBuiltin bool // serve the built-in rpc services

	tasks taskSettings

	daemons daemon.Config

	member memberSettings
}

// namedChannel is a channel the node registers at start.
type namedChannel struct {
	name string
	cfg  channel.Config
}

// channelNames returns the names of the channels the node publishes, in
// config order.
func (rc *runConfig) channelNames() []string {
	names := make([]string, 0, len(rc.channels))
	for _, c := range rc.channels {
		names = append(names, c.name)
	}
	return names
}

// loadConfigFile reads and strictly decodes a TOML config file. Its errors
// are one line and name the file, and the line where the document says so.
func loadConfigFile(path string) (fileConfig, error) {
	var fc fileConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return fc, fmt.Errorf("config: %w", err)
	}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	err = dec.Decode(&fc)
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &strict) && len(strict.Errors) > 0:
		e := strict.Errors[0]
		row, _ := e.Position()
		return fc, fmt.Errorf("config %s:%d: unknown key %q", path, row, strings.Join(e.Key(), "."))
	case errors.As(err, &de):
		row, col := de.Position()
		return fc, fmt.Errorf("config %s:%d:%d: %s", path, row, col, strings.TrimPrefix(de.Error(), "toml: "))
	case err != nil:
		return fc, fmt.Errorf("config %s: %w", path, err)
	}
	fc.KeyFile = resolveRelative(path, fc.KeyFile)
	return fc, nil
}

// resolveRelative returns file, a path the config file at config names,
// resolved against the config file's directory when it is relative, so
// that a config means the same files whatever the working directory.
func resolveRelative(config, file string) string {
	if file == "" || filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(filepath.Dir(config), file)
}

// validate checks fc and turns it into a runConfig. Every error names the
// offending key. Log output goes to logOut.
func (fc fileConfig) validate(logOut io.Writer) (*runConfig, error) {
	rc := &runConfig{
		keyFile: fc.KeyFile,
		listen:  fc.Listen,
		relay:   fc.Relay == nil || *fc.Relay,
		punch:   natCompiled,
		control: fc.Control,
		metrics: fc.Metrics,

		rpcBuiltin: fc.RPCBuiltin == nil || *fc.RPCBuiltin,
	}
	if rc.keyFile == "" {
		return nil, errors.New("key_file is required (--key or key_file in the config); create one with netnode keygen")
	}
	if rc.listen == "" {
		rc.listen = defaultListen
	}
	if err := checkHostPort(rc.listen); err != nil {
		return nil, fmt.Errorf("listen %q: %w", rc.listen, err)
	}
	if rc.metrics != "" {
		if err := checkHostPort(rc.metrics); err != nil {
			return nil, fmt.Errorf("metrics %q: %w", rc.metrics, err)
		}
	}
	if rc.control == "" {
		rc.control = controlPath()
	}
	for i, ps := range fc.Peers {
		da, err := ps.dialAddr()
		if err != nil {
			return nil, fmt.Errorf("peers[%d]: %w", i, err)
		}
		rc.peers = append(rc.peers, da)
	}
	for i, ps := range fc.Relays {
		r, err := ps.relay()
		if err != nil {
			return nil, fmt.Errorf("relays[%d]: %w", i, err)
		}
		rc.relays = append(rc.relays, r)
	}
	suite, err := parseSuite(fc.CipherSuite)
	if err != nil {
		return nil, err
	}
	rc.suite = suite
	if err := fc.validateFeatures(rc); err != nil {
		return nil, err
	}
	if err := fc.validateTasks(rc); err != nil {
		return nil, err
	}
	if err := fc.validateDaemons(rc); err != nil {
		return nil, err
	}
	if err := fc.validateMembership(rc); err != nil {
		return nil, err
	}
	logger, err := newLogger(logOut, fc.LogFormat, fc.LogLevel)
	if err != nil {
		return nil, err
	}
	rc.logger = logger
	return rc, nil
}

// validateFeatures checks the capability, subnet, channel, mDNS and NAT
// keys into rc.
func (fc fileConfig) validateFeatures(rc *runConfig) error {
	rc.caps = capability.Set{Tags: fc.Capabilities, Metadata: fc.Metadata}
	if err := rc.caps.Validate(); err != nil {
		var ve *capability.ValidationError
		switch {
		case errors.As(err, &ve) && ve.Field == "tag":
			return fmt.Errorf("capabilities: %w", err)
		case errors.As(err, &ve) && ve.Field == "set":
			return fmt.Errorf("capabilities and metadata: %w", err)
		}
		return fmt.Errorf("metadata: %w", err)
	}
	rc.telemetry = fc.Telemetry
	rc.mdns = fc.MDNS
	if fc.Name != "" {
		if err := capability.ValidateName(fc.Name); err != nil {
			return fmt.Errorf("name %q: %w", fc.Name, err)
		}
		rc.name = fc.Name
	}
	if fc.Subnet != "" {
		s, err := channel.ParseSubnetID(fc.Subnet)
		if err != nil {
			return fmt.Errorf("subnet %q: %w", fc.Subnet, err)
		}
		rc.subnet = s
	}
	for i, r := range fc.SubnetPolicy {
		if r.Tag == "" {
			return fmt.Errorf("subnet_policy[%d]: tag is required", i)
		}
		s, err := channel.ParseSubnetID(r.Subnet)
		if err != nil || s.IsZero() {
			return fmt.Errorf("subnet_policy[%d]: subnet %q: want a non-zero subnet like 3.1.0.0", i, r.Subnet)
		}
		rc.policy.Rules = append(rc.policy.Rules, channel.SubnetRule{Tag: r.Tag, Subnet: s})
	}
	if err := rc.policy.Validate(); err != nil {
		return fmt.Errorf("subnet_policy: %w", err)
	}
	seen := make(map[string]bool)
	for i, cs := range fc.Channels {
		nc, err := cs.namedChannel()
		if err != nil {
			return fmt.Errorf("channels[%d]: %w", i, err)
		}
		if seen[nc.name] {
			return fmt.Errorf("channels[%d]: channel %q is listed twice", i, nc.name)
		}
		seen[nc.name] = true
		rc.channels = append(rc.channels, nc)
	}
	if fc.NAT != nil && fc.NAT.Punch != nil {
		if !natCompiled {
			return errors.New("nat.punch: NAT traversal is not compiled into this netnode; build it with -tags nat, or remove the key")
		}
		rc.punch = *fc.NAT.Punch
	}
	if fc.NAT != nil && fc.NAT.PortMap {
		if !portmapCompiled {
			return errors.New("nat.port_map: port mapping is not compiled into this netnode; build it with -tags nat,portmap")
		}
		rc.nat.PortMap = true
	}
	if fc.NAT != nil && len(fc.NAT.STUNServers) > 0 {
		if !natCompiled {
			return errors.New("nat: NAT traversal is not compiled into this netnode; build it with -tags nat, or remove the nat section")
		}
		for i, s := range fc.NAT.STUNServers {
			if err := checkSTUNServer(s); err != nil {
				return fmt.Errorf("nat.stun_servers[%d] %q: %w", i, s, err)
			}
		}
		rc.nat.STUNServers = fc.NAT.STUNServers
	}
	return nil
}

// checkSTUNServer checks that s is "host:port" with a numeric port. Host
// names are allowed: the node resolves them at each query.
func checkSTUNServer(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return errors.New("want host:port")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// visibilities are the values of a channel's visibility key.
var visibilities = map[string]channel.Visibility{
	"":               channel.Global,
	"global":         channel.Global,
	"subnet-local":   channel.SubnetLocal,
	"parent-visible": channel.ParentVisible,
}

// namedChannel validates cs.
func (cs channelSpec) namedChannel() (namedChannel, error) {
	nc := namedChannel{name: cs.Name}
	if err := channel.ValidateName(cs.Name); err != nil {
		return nc, fmt.Errorf("name %q: %w", cs.Name, err)
	}
	vis, ok := visibilities[cs.Visibility]
	if !ok {
		return nc, fmt.Errorf("visibility %q: want global, subnet-local or parent-visible", cs.Visibility)
	}
	nc.cfg = channel.Config{
		Visibility:     vis,
		RequireToken:   cs.RequireToken,
		MaxSubscribers: cs.MaxSubscribers,
		PendingLimit:   cs.PendingLimit,
	}
	nc.cfg.SubscribeGroups, nc.cfg.PublishGroups = cs.SubscribeGroups, cs.PublishGroups
	var err error
	if nc.cfg.SubscribeCaps, err = parseFilter(cs.SubscribeCaps); err != nil {
		return nc, fmt.Errorf("subscribe_caps: %w", err)
	}
	if nc.cfg.PublishCaps, err = parseFilter(cs.PublishCaps); err != nil {
		return nc, fmt.Errorf("publish_caps: %w", err)
	}
	if cs.MaxSubscribers < 0 || cs.MaxSubscribers > channel.MaxSubscribersLimit {
		return nc, fmt.Errorf("max_subscribers %d: want 0 (the default, %d) to %d", cs.MaxSubscribers, channel.DefaultMaxSubscribers, channel.MaxSubscribersLimit)
	}
	if cs.PendingLimit < 0 || cs.PendingLimit > channel.MaxPendingLimit {
		return nc, fmt.Errorf("pending_limit %d: want 0 (the default, %d) to %d", cs.PendingLimit, channel.DefaultPendingLimit, channel.MaxPendingLimit)
	}
	switch cs.PublishWait {
	case "":
	case "never":
		nc.cfg.PublishWait = -1
	default:
		d, err := time.ParseDuration(cs.PublishWait)
		if err != nil || d <= 0 {
			return nc, fmt.Errorf("publish_wait %q: want a duration like 500ms (the default, %v), or \"never\"", cs.PublishWait, channel.DefaultPublishWait)
		}
		nc.cfg.PublishWait = d
	}
	for i, k := range cs.TokenIssuers {
		key, err := parsePublicKey(k)
		if err != nil {
			return nc, fmt.Errorf("token_issuers[%d]: %w", i, err)
		}
		nc.cfg.TokenIssuers = append(nc.cfg.TokenIssuers, key)
	}
	return nc, nil
}

// parseFilter parses a capability filter; the empty string is the zero
// Filter, which matches every node.
func parseFilter(s string) (capability.Filter, error) {
	if strings.TrimSpace(s) == "" {
		return capability.Filter{}, nil
	}
	f, err := capability.ParseFilter(s)
	if err != nil {
		return f, fmt.Errorf("%q: %w", s, err)
	}
	return f, nil
}

// parsePublicKey parses an ed25519 public key in hex, as netnode id
// prints it.
func parsePublicKey(s string) (ed25519.PublicKey, error) {
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %q: want %d hex digits (an ed25519 public key, as netnode id prints it)", s, 2*ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// defaultListen is the UDP address a node listens on when none is given.
const defaultListen = ":7946"

// checkHostPort checks that s is "ip:port" or ":port". Host names are not
// accepted: an address in the config must not depend on DNS at start-up.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want ip:port or :port")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (port != "0" && n == 0) {
		return fmt.Errorf("bad port %q", port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("host %q is not an IP address", host)
		}
	}
	return nil
}

// relay validates ps as a relay, which needs an address. A DNS name is
// resolved once, here: the mesh keeps its relays by address.
func (ps peerSpec) relay() (mesh.Relay, error) {
	da, err := ps.dialAddr()
	if err != nil {
		return mesh.Relay{}, err
	}
	if da.Host == "" {
		return mesh.Relay{}, fmt.Errorf("%s: a relay needs an address", da)
	}
	ctx, cancel := context.WithTimeout(context.Background(), relayResolveTimeout)
	defer cancel()
	addrs, err := da.Resolve(ctx, nil)
	if err != nil {
		return mesh.Relay{}, fmt.Errorf("%s: %w", da, err)
	}
	return mesh.Relay{Addr: addrs[0], Pin: mesh.Pin{Key: da.Key, ID: da.NodeID()}}, nil
}

// relayResolveTimeout bounds the DNS lookup of a relay's name at start.
const relayResolveTimeout = 10 * time.Second

// parsePeerFlag parses the command-line form of a peer, a dial string.
func parsePeerFlag(s string) (peerSpec, error) {
	if _, err := dialaddr.Parse(s); err != nil {
		return peerSpec{}, err
	}
	return peerSpec{dial: s}, nil
}

// newLogger builds the node's slog logger from log_format and log_level.
func newLogger(out io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "", "info":
		lv = slog.LevelInfo
	case "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("log_level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(out, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(out, opts)), nil
	default:
		return nil, fmt.Errorf("log_format %q: want text or json", format)
	}
}

// parseSuite reads the cipher_suite key: "" or "auto" (zero: the faster
// suite on this CPU), "aesgcm" or "chachapoly", in any case.
func parseSuite(s string) (noise.Suite, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return 0, nil
	case "aesgcm":
		return noise.SuiteAESGCM, nil
	case "chachapoly":
		return noise.SuiteChaChaPoly, nil
	}
	return 0, fmt.Errorf("cipher_suite %q: want auto, aesgcm or chachapoly", s)
}
