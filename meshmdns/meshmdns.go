// Package meshmdns finds the nodes on the local network with multicast DNS
// (RFC 6762) and DNS service discovery (RFC 6763), with no configuration:
// each node advertises the service _netmesh._udp on every multicast
// interface that carries its listen address, with its NodeID and public
// key in the TXT record, browses for the same service, and connects to
// each node it finds, pinned to the key that node advertised. A node that
// answers with another key is refused by the handshake, so a spoofed
// answer can waste a connection attempt but cannot impersonate a node.
//
// Browsing starts every second and backs off to once a minute (RFC 6762
// section 5.2 asks for at least doubling intervals). Loopback and
// link-local-only interfaces are skipped.
//
// Goroutines: Run runs in its caller's goroutine, plus one per pending
// connection attempt (at most one per found node, each bounded by a
// 10 s timeout) and the responders of package github.com/hashicorp/mdns,
// one per interface, which Run stops before it returns.
package meshmdns

// The mDNS library is github.com/hashicorp/mdns: maintained by HashiCorp
// (Consul and Nomad lineage), a small API with a per-interface server and
// query, few dependencies (miekg/dns, x/net). grandcat/zeroconf, the other
// common choice, has had no release since 2020.

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/mdns"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/backoff"
	"github.com/netmesh/netmesh/mesh"
)

// mdnsService is the DNS-SD service type nodes advertise.
const mdnsService = "_netmesh._udp"

// Timing of mDNS browsing. The interval starts short, so that nodes that
// start together find each other within seconds, and doubles to a ceiling
// (RFC 6762 section 5.2 asks for at least doubling intervals).
const (
	mdnsFirstInterval = time.Second
	mdnsMaxInterval   = time.Minute
	mdnsQueryTimeout  = time.Second      // how long one query listens for answers
	mdnsDialTimeout   = 10 * time.Second // one connection attempt to a found node
)

// mdnsTXT keys.
const (
	txtID  = "id="
	txtKey = "key="
)

// mdnsIface is a multicast interface with the addresses the node
// advertises on it.
type mdnsIface struct {
	ifc net.Interface
	ips []net.IP
}

// mdnsFound is a node a query found.
type mdnsFound struct {
	id   identity.NodeID
	key  ed25519.PublicKey
	addr netip.AddrPort
}

// Options configures Run.
type Options struct {
	// Logger receives a line when the node starts advertising on an
	// interface, connects to a node it found, or cannot reach one; and,
	// at debug level, the answers it ignored and the library's own
	// lines. Nil discards them.
	Logger *slog.Logger
}

// Run advertises m on every multicast interface that carries its listen
// address and connects to the nodes it finds there, pinned to the key each
// advertised, until ctx ends. It returns after its connection attempts
// ended and its responders stopped.
func Run(ctx context.Context, m *mesh.Mesh, opts Options) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &mdnsDiscovery{
		m:       m,
		log:     log,
		stdlog:  slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		servers: make(map[string]*mdns.Server),
		dialing: make(map[identity.NodeID]bool),
	}
	defer d.wg.Wait()
	defer d.stopServers()
	interval := mdnsFirstInterval
	for {
		d.advertise()
		for _, f := range d.browse(ctx) {
			d.connect(ctx, f)
		}
		if !backoff.Sleep(ctx, backoff.Jitter(interval)) {
			return
		}
		interval = min(2*interval, mdnsMaxInterval)
	}
}

// mdnsDiscovery is the state of Run.
type mdnsDiscovery struct {
	m      *mesh.Mesh
	log    *slog.Logger
	stdlog *log.Logger // the library logs through it, at debug level
	wg     sync.WaitGroup

	ifaces  []mdnsIface
	servers map[string]*mdns.Server // by interface and addresses

	mu      sync.Mutex
	dialing map[identity.NodeID]bool
}

// interfaces returns the interfaces to advertise and browse on, and the
// port to advertise: the first socket's family decides, IPv4 first. A node
// bound to one address advertises it on its interface only.
func (d *mdnsDiscovery) interfaces() ([]mdnsIface, int) {
	addrs := d.m.ListenAddrs()
	slices.SortStableFunc(addrs, func(a, b netip.AddrPort) int {
		switch {
		case a.Addr().Is4() == b.Addr().Is4():
			return 0
		case a.Addr().Is4():
			return -1
		}
		return 1
	})
	if len(addrs) == 0 {
		return nil, 0
	}
	listen := addrs[0]
	ifcs, err := net.Interfaces()
	if err != nil {
		d.log.Warn("mdns: listing interfaces", "err", err)
		return nil, 0
	}
	var out []mdnsIface
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagMulticast == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		ifAddrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		mi := mdnsIface{ifc: ifc}
		for _, a := range ifAddrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(ipn.IP)
			ip = ip.Unmap()
			switch {
			case ip.Is4() != listen.Addr().Is4(), ip.IsLinkLocalUnicast():
			case listen.Addr().IsUnspecified(), ip == listen.Addr():
				mi.ips = append(mi.ips, ipn.IP)
			}
		}
		if len(mi.ips) > 0 {
			out = append(out, mi)
		}
	}
	return out, int(listen.Port())
}

// advertise (re)starts one mDNS responder per interface, when the
// interfaces or their addresses changed since the last call.
func (d *mdnsDiscovery) advertise() {
	ifaces, port := d.interfaces()
	d.ifaces = ifaces
	want := make(map[string]mdnsIface)
	for _, mi := range ifaces {
		want[fmt.Sprint(mi.ifc.Name, mi.ips, port)] = mi
	}
	for k, s := range d.servers {
		if _, ok := want[k]; !ok {
			s.Shutdown()
			delete(d.servers, k)
		}
	}
	if len(ifaces) == 0 && len(d.servers) == 0 {
		d.log.Debug("mdns: no multicast interface carries the listen address; not advertising")
	}
	id := d.m.ID().String()
	txt := []string{txtID + id, txtKey + hex.EncodeToString(d.m.Identity().PublicKey())}
	for k, mi := range want {
		if _, ok := d.servers[k]; ok {
			continue
		}
		svc, err := mdns.NewMDNSService(id, mdnsService, "local.", id+".local.", port, mi.ips, txt)
		if err != nil {
			d.log.Warn("mdns: cannot advertise", "interface", mi.ifc.Name, "err", err)
			continue
		}
		ifc := mi.ifc
		s, err := mdns.NewServer(&mdns.Config{Zone: svc, Iface: &ifc, Logger: d.stdlog})
		if err != nil {
			d.log.Warn("mdns: cannot advertise", "interface", mi.ifc.Name, "err", err)
			continue
		}
		d.servers[k] = s
		d.log.Info("mdns: advertising", "interface", mi.ifc.Name, "ips", mi.ips, "port", port)
	}
}

// stopServers stops every responder.
func (d *mdnsDiscovery) stopServers() {
	for k, s := range d.servers {
		s.Shutdown()
		delete(d.servers, k)
	}
}

// browse queries every interface once and returns the nodes found, other
// than this one, whose TXT record is well formed.
func (d *mdnsDiscovery) browse(ctx context.Context) []mdnsFound {
	var found []mdnsFound
	for _, mi := range d.ifaces {
		entries := make(chan *mdns.ServiceEntry, 64)
		ifc := mi.ifc
		params := &mdns.QueryParam{
			Service:     mdnsService,
			Domain:      "local",
			Timeout:     mdnsQueryTimeout,
			Interface:   &ifc,
			Entries:     entries,
			DisableIPv6: len(mi.ips) > 0 && mi.ips[0].To4() != nil,
			DisableIPv4: len(mi.ips) > 0 && mi.ips[0].To4() == nil,
			Logger:      d.stdlog,
		}
		if err := mdns.QueryContext(ctx, params); err != nil {
			if ctx.Err() == nil {
				d.log.Debug("mdns: query failed", "interface", mi.ifc.Name, "err", err)
			}
			continue
		}
		close(entries)
		for e := range entries {
			f, err := parseEntry(e, mi.ifc.Name)
			if err != nil {
				d.log.Debug("mdns: ignoring an answer", "interface", mi.ifc.Name, "name", e.Name, "err", err)
				continue
			}
			if f.id != d.m.ID() {
				found = append(found, f)
			}
		}
	}
	return found
}

// parseEntry checks an answer: a TXT record with a NodeID and the key it
// derives from, and an address of the advertised family.
func parseEntry(e *mdns.ServiceEntry, zone string) (mdnsFound, error) {
	var f mdnsFound
	var idText, keyText string
	for _, field := range e.InfoFields {
		if v, ok := strings.CutPrefix(field, txtID); ok {
			idText = v
		}
		if v, ok := strings.CutPrefix(field, txtKey); ok {
			keyText = v
		}
	}
	id, err := identity.ParseNodeID(idText)
	if err != nil {
		return f, fmt.Errorf("TXT id %q: %w", idText, err)
	}
	key, err := hex.DecodeString(keyText)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return f, fmt.Errorf("TXT key %q: want %d hex digits", keyText, 2*ed25519.PublicKeySize)
	}
	if identity.NodeIDFromKey(key) != id {
		return f, fmt.Errorf("TXT id %s is not the NodeID of its key", id)
	}
	if e.Port <= 0 || e.Port > 65535 {
		return f, fmt.Errorf("bad port %d", e.Port)
	}
	var ip netip.Addr
	switch {
	case e.AddrV4 != nil:
		ip, _ = netip.AddrFromSlice(e.AddrV4.To4())
	case e.AddrV6 != nil:
		ip, _ = netip.AddrFromSlice(e.AddrV6)
		if ip.IsLinkLocalUnicast() {
			ip = ip.WithZone(zone)
		}
	}
	if !ip.IsValid() {
		return f, fmt.Errorf("no address")
	}
	return mdnsFound{id: id, key: key, addr: netip.AddrPortFrom(ip, uint16(e.Port))}, nil
}

// connect starts connecting to f, pinned to its advertised key, unless it
// is up already or an attempt is under way.
func (d *mdnsDiscovery) connect(ctx context.Context, f mdnsFound) {
	if p := d.m.Peer(f.id); p != nil && p.IsUp() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dialing[f.id] {
		return
	}
	d.dialing[f.id] = true
	d.wg.Go(func() {
		defer func() {
			d.mu.Lock()
			delete(d.dialing, f.id)
			d.mu.Unlock()
		}()
		cctx, cancel := context.WithTimeout(ctx, mdnsDialTimeout)
		defer cancel()
		if _, err := d.m.Connect(cctx, f.addr, mesh.Pin{Key: f.key, ID: f.id}); err != nil {
			if ctx.Err() == nil {
				d.log.Warn("mdns: node found but unreachable", "id", f.id, "addr", f.addr, "err", err)
			}
			return
		}
		d.log.Info("mdns: connected to a node on the local network", "id", f.id, "addr", f.addr)
	})
}
