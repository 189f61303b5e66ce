package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/bootstrap"
	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/meshmdns"
	"github.com/netmesh/netmesh/rpc"
)

// Bounds of the steps of a graceful stop (see node.stop).
const (
	// shutdownTimeout bounds the graceful stop of the metrics server.
	shutdownTimeout = 5 * time.Second
	// rpcDrainTimeout bounds the rpc calls left running once the task
	// worker drained: the built-in services answer at once, and the
	// worker ended its results streams, so what remains is an
	// application's long call, which is cancelled and answered
	// unavailable.
	rpcDrainTimeout = 5 * time.Second
	// leaveTimeout bounds the goodbyes to the peers (mesh.Leave waits at
	// most 2 s itself).
	leaveTimeout = 2 * time.Second
)

// runFlags are the flags of netnode run that set configuration keys.
type runFlags struct {
	file       fileConfig // the flags of the scalar keys
	relay      bool
	rpcBuiltin bool
	peers      []string
	relays     []string
	caps       []string
	meta       []string
	rules      []string
	stun       []string
}

// apply overrides the keys of fc whose flags set reports as given.
func (rf *runFlags) apply(fc *fileConfig, set func(name string) bool) error {
	flags := rf.file
	if set("key") {
		fc.KeyFile = flags.KeyFile
	}
	if set("listen") {
		fc.Listen = flags.Listen
	}
	if set("relay") {
		fc.Relay = &rf.relay
	}
	if set("log-format") {
		fc.LogFormat = flags.LogFormat
	}
	if set("log-level") {
		fc.LogLevel = flags.LogLevel
	}
	if set("control") {
		fc.Control = flags.Control
	}
	if set("metrics") {
		fc.Metrics = flags.Metrics
	}
	if set("name") {
		fc.Name = flags.Name
	}
	if set("capability") {
		fc.Capabilities = rf.caps
	}
	if set("telemetry") {
		fc.Telemetry = flags.Telemetry
	}
	if set("subnet") {
		fc.Subnet = flags.Subnet
	}
	if set("mdns") {
		fc.MDNS = flags.MDNS
	}
	if set("rpc-builtin") {
		fc.RPCBuiltin = &rf.rpcBuiltin
	}
	if set("stun-server") {
		// Only nat.stun_servers: the file's other nat keys stay.
		nat := natSpec{}
		if fc.NAT != nil {
			nat = *fc.NAT
		}
		nat.STUNServers = rf.stun
		fc.NAT = &nat
	}
	var err error
	if set("meta") {
		if fc.Metadata, err = parseMetaFlags(rf.meta); err != nil {
			return err
		}
	}
	if set("subnet-rule") {
		if fc.SubnetPolicy, err = parseRuleFlags(rf.rules); err != nil {
			return err
		}
	}
	if set("peer") {
		if fc.Peers, err = parsePeerFlags("--peer", rf.peers); err != nil {
			return err
		}
	}
	if set("relay-node") {
		if fc.Relays, err = parsePeerFlags("--relay-node", rf.relays); err != nil {
			return err
		}
	}
	return nil
}

func newRun() *cobra.Command {
	var (
		configPath string
		rf         runFlags
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Join a mesh and run a node until SIGINT or SIGTERM",
		Long: `Run a node: load its key, listen for peers, keep sessions up with the
bootstrap peers and relays, and serve the control socket that the other
commands use. Settings come from a TOML file (--config) and flags; a flag
overrides the file, and a repeated flag (--peer, --relay-node) replaces the
file's list. See docs/OPERATIONS.md for every key.`,
		Example: `  netnode run --key node.key --listen :7946 --peer 192.0.2.10:7946
  netnode run --config /etc/netnode/netnode.toml --metrics 127.0.0.1:9100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fc := fileConfig{}
			configPath, err := findConfig(configPath)
			if err != nil {
				return usageError{err}
			}
			if configPath != "" {
				if fc, err = loadConfigFile(configPath); err != nil {
					return usageError{err}
				}
			}
			if err := rf.apply(&fc, cmd.Flags().Changed); err != nil {
				return usageError{err}
			}
			rc, err := fc.validate(cmd.ErrOrStderr())
			if err != nil {
				return usageError{err}
			}
			id, err := loadKey(rc.keyFile)
			if err != nil {
				return usageError{err}
			}
			return runNode(cmd.Context(), rc, id)
		},
	}
	flags := &rf.file
	f := cmd.Flags()
	f.StringVarP(&configPath, "config", "c", "", "TOML config file (default $"+configEnv+", else $XDG_CONFIG_HOME/netnode/node.toml or /etc/netnode/node.toml if one exists)")
	f.StringVarP(&flags.KeyFile, "key", "k", "", "identity key file (key_file), made by netnode keygen")
	f.StringVar(&flags.Listen, "listen", defaultListen, "UDP address to listen on (listen)")
	f.StringArrayVar(&rf.peers, "peer", nil, "bootstrap peer HOST:PORT[,key=HEX][,id=NODEID], repeatable (peers)")
	f.StringArrayVar(&rf.relays, "relay-node", nil, "relay to use, HOST:PORT[,key=HEX][,id=NODEID], repeatable (relays)")
	f.BoolVar(&rf.relay, "relay", true, "forward packets between other nodes (relay)")
	f.StringVar(&flags.LogFormat, "log-format", "text", "log format: text or json (log_format)")
	f.StringVar(&flags.LogLevel, "log-level", "info", "log level: debug, info, warn or error (log_level)")
	addControlFlag(cmd, &flags.Control)
	f.StringVar(&flags.Metrics, "metrics", "", "serve Prometheus metrics on this TCP address, e.g. 127.0.0.1:9100 (metrics)")
	f.StringVar(&flags.Name, "name", "", "this node's name, a label other nodes may name it by (name)")
	f.StringArrayVar(&rf.caps, "capability", nil, "capability tag to announce, repeatable (capabilities)")
	f.StringArrayVar(&rf.meta, "meta", nil, "metadata KEY=VALUE to announce, repeatable (metadata)")
	f.BoolVar(&flags.Telemetry, "telemetry", false, "announce CPU, memory and GPU load (telemetry)")
	f.StringVar(&flags.Subnet, "subnet", "", "pin this node's subnet, e.g. 3.1.0.0 (subnet)")
	f.StringArrayVar(&rf.rules, "subnet-rule", nil, "subnet policy rule TAG=SUBNET, repeatable, in order (subnet_policy)")
	f.BoolVar(&flags.MDNS, "mdns", false, "find and connect to nodes on the local network with mDNS (mdns)")
	f.BoolVar(&rf.rpcBuiltin, "rpc-builtin", true, "serve the built-in rpc services netnode.info and netnode.echo (rpc_builtin)")
	f.StringArrayVar(&rf.stun, "stun-server", nil, "STUN server HOST:PORT, repeatable; needs a build with -tags nat (nat.stun_servers)")
	return cmd
}

// parseMetaFlags parses the values of --meta KEY=VALUE.
func parseMetaFlags(vals []string) (map[string]string, error) {
	md := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--meta %q: want KEY=VALUE", v)
		}
		md[k] = val
	}
	return md, nil
}

// parseRuleFlags parses the values of --subnet-rule TAG=SUBNET.
func parseRuleFlags(vals []string) ([]subnetRuleSpec, error) {
	rules := make([]subnetRuleSpec, 0, len(vals))
	for _, v := range vals {
		tag, subnet, ok := strings.Cut(v, "=")
		if !ok {
			return nil, fmt.Errorf("--subnet-rule %q: want TAG=SUBNET", v)
		}
		rules = append(rules, subnetRuleSpec{Tag: tag, Subnet: subnet})
	}
	return rules, nil
}

// parsePeerFlags parses the values of a repeated peer flag.
func parsePeerFlags(flag string, vals []string) ([]peerSpec, error) {
	specs := make([]peerSpec, 0, len(vals))
	for _, v := range vals {
		ps, err := parsePeerFlag(v)
		if err != nil {
			return nil, fmt.Errorf("%s %w", flag, err)
		}
		specs = append(specs, ps)
	}
	return specs, nil
}

// loadKey loads the node's identity and explains the common failures.
func loadKey(path string) (*identity.Identity, error) {
	id, err := identity.Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Not a hint to run keygen: that makes another identity, and a
		// node that had one would come back as a stranger.
		return nil, fmt.Errorf("key file %s does not exist: point key_file (or --key) at this node's key; a relative key_file is resolved against the config file's directory", path)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("key file %s: cannot read it: permission denied", path)
	case err != nil:
		return nil, err
	}
	return id, nil
}

// runNode runs a node with rc until ctx ends, then shuts it down: it stops
// the control socket and the metrics server, stops reconnecting, and
// closes the mesh.
func runNode(ctx context.Context, rc *runConfig, id *identity.Identity) error {
	log := rc.logger
	cfg := mesh.Config{
		Identity:     id,
		ListenAddr:   rc.listen,
		Relays:       rc.relays,
		DisableRelay: !rc.relay,
		Channels:     channel.Options{Policy: rc.policy, Subnet: rc.subnet},
		NAT:          rc.nat,
		Logger:       log,
		CipherSuite:  rc.suite,
	}
	if rc.telemetry {
		cfg.Capabilities.Telemetry = capability.SystemSampler{}
	}
	cfg.Capabilities.Name = rc.name
	var err error
	if cfg.Membership, err = rc.member.meshConfig(ctx, id, log); err != nil {
		return err
	}
	memberFiles := newMemberFiles(&cfg.Membership)
	m, err := mesh.New(cfg)
	if err != nil {
		return err
	}
	defer m.Close()
	// Announce before the first session, so that every peer learns the
	// set when it comes up. An empty set is announced too: find and
	// nodes list every node that runs netnode.
	if err := m.AnnounceCapabilities(rc.caps); err != nil {
		return usageError{fmt.Errorf("capabilities: %w", err)}
	}
	n := &node{m: m, rc: rc, started: time.Now(), rpc: rpc.NewClient(m, rpc.ClientOptions{})}
	n.keeper = bootstrap.New(m, rc.peers, bootstrap.Options{Logger: log})
	if rc.rpcBuiltin {
		if n.srv, err = n.serveBuiltin(log); err != nil {
			return err
		}
		defer n.srv.Close()
	}
	if err := n.startTasks(); err != nil {
		return err
	}
	defer n.tasks.close()
	if err := n.startDaemons(); err != nil {
		return err
	}
	defer n.daemons.Close()
	for _, c := range rc.channels {
		if err := m.RegisterChannel(c.name, c.cfg); err != nil {
			return usageError{fmt.Errorf("channels: %s: %w", c.name, err)}
		}
	}
	ctl, err := listenControl(rc.control, log, n.methods())
	if err != nil {
		return err
	}
	defer ctl.close()
	if err := m.Start(ctx); err != nil {
		return err
	}

	var metrics *http.Server
	var metricsLn net.Listener
	if rc.metrics != "" {
		if metricsLn, err = net.Listen("tcp", rc.metrics); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		metrics = &http.Server{Handler: metricsHandler(n), ReadHeaderTimeout: 10 * time.Second}
	}

	var wg sync.WaitGroup
	wg.Go(func() { ctl.serve(ctx) })
	wg.Go(func() { n.keeper.Run(ctx) })
	wg.Go(func() { memberFiles.run(ctx, m, &rc.member, log) })
	if rc.mdns {
		wg.Go(func() { meshmdns.Run(ctx, m, meshmdns.Options{Logger: log}) })
	}
	if rc.punch {
		wg.Go(func() { punchRelayed(ctx, m, log) })
	}
	if metrics != nil {
		wg.Go(func() {
			if err := metrics.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server failed", "err", err)
			}
		})
	}
	log.Info("netnode running", "id", m.ID(), "addrs", m.ListenAddrs(), "control", rc.control, "metrics", rc.metrics)

	<-ctx.Done()
	log.Info("shutting down")
	if metrics != nil {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		metrics.Shutdown(sctx)
	}
	wg.Wait()
	n.stop(log)
	if err := ctl.close(); err != nil {
		log.Warn("closing the control socket", "err", err)
	}
	log.Info("stopped")
	return nil
}

// stop takes the node out of the mesh gracefully, each step while the
// sessions it needs are still up:
//
//  1. the task worker drains (tasks.drain_timeout): its skills are
//     withdrawn, new tasks refused, queued ones handed back, running
//     ones finish or are cancelled, and their results are delivered;
//  2. the daemon runtime closes: its daemons stop with the node (move
//     them first to keep them);
//  3. the rpc server drains (rpcDrainTimeout): its services are
//     withdrawn, new calls refused (unavailable, so callers fail over),
//     running calls finish, and those still running are cancelled;
//  4. the mesh leaves: the node's announcement is withdrawn and every
//     peer told goodbye, so peers take it down and drop it from their
//     index at once, and the mesh closes.
//
// Up to step 4 the node stays in every peer's index, without skills or
// services, so nothing new is sent its way while what it owes is
// delivered.
func (n *node) stop(log *slog.Logger) {
	if err := n.tasks.drain(n.rc.tasks.drainTimeout); err != nil {
		log.Warn("tasks still running at shutdown were cancelled", "err", err)
	}
	n.daemons.Close() // its daemons stop with the node: move them first to keep them
	ctx, cancel := context.WithTimeout(context.Background(), rpcDrainTimeout)
	defer cancel()
	for _, srv := range []*rpc.Server{n.srv, n.tasks.srv} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("rpc calls still running at shutdown were cancelled", "err", err)
		}
	}
	n.tasks.close()
	lctx, lcancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer lcancel()
	if err := n.m.Leave(lctx); err != nil {
		log.Warn("leaving the mesh", "err", err)
	}
}

// addControlFlag adds --control, the path of the control socket.
func addControlFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "control", controlPath(), "control socket path (control; $"+controlEnv+")")
}
