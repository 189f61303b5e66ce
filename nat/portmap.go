//go:build nat && portmap

package nat

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Port mapping defaults. PortMapConfig fields override them; tests shrink
// them.
const (
	// DefaultPortMapLifetime is the lease requested from the router. RFC
	// 6886 recommends two hours; the mapper renews at half of what the
	// router grants.
	DefaultPortMapLifetime = 2 * time.Hour
	// DefaultPortMapTimeout bounds one exchange with the router: a NAT-PMP
	// request with its retransmissions, an SSDP search, one SOAP call. A
	// router on the LAN answers in milliseconds; an SSDP search waits the
	// whole time for every device to answer.
	DefaultPortMapTimeout = 2 * time.Second
	// DefaultPortMapRetry is how long the mapper waits before asking the
	// router again after no protocol worked, or a mapping expired.
	DefaultPortMapRetry = 5 * time.Minute
	// DefaultPortMapDescription names the mapping in the router's UPnP
	// table.
	DefaultPortMapDescription = "netmesh"
)

const (
	// minRenew is the shortest wait before a renewal, whatever the router
	// granted: a router that grants seconds must not make us spin.
	minRenew = time.Second
	// permanentRenew is how often a permanent UPnP lease (lease 0, the
	// only kind some IGDv1 routers grant) is installed again, so a router
	// that rebooted and forgot it gets it back.
	permanentRenew = 20 * time.Minute
)

// ReasonNoPortMapProtocol is PortMapStatus.Reason when the router answered
// neither NAT-PMP nor UPnP-IGD. The node then stays on the classifier
// path (STUN, peers, hole punching), and nothing else changes.
const ReasonNoPortMapProtocol = "no port mapping: router speaks neither NAT-PMP nor UPnP"

// PortMapConfig configures a PortMapper. Only Port is required.
type PortMapConfig struct {
	// Port is the local UDP port to map: the mesh's port. The mapper asks
	// for the same external port and takes what the router gives.
	Port uint16
	// Gateway is the NAT-PMP server. Invalid means the gateway of the
	// default IPv4 route (Linux); where that cannot be read, NAT-PMP is
	// skipped and UPnP-IGD is tried.
	Gateway netip.Addr
	// Lifetime is the lease requested. Zero means DefaultPortMapLifetime.
	// The mapper renews at half of the lease the router grants.
	Lifetime time.Duration
	// Timeout bounds one exchange with the router. Zero means
	// DefaultPortMapTimeout.
	Timeout time.Duration
	// RetryInterval is the wait before asking the router again after no
	// protocol worked or a mapping was lost. Zero means
	// DefaultPortMapRetry.
	RetryInterval time.Duration
	// Description names the mapping in the router's UPnP table. Empty
	// means DefaultPortMapDescription.
	Description string
	// InNetNS runs f so that the sockets f opens belong to the network
	// namespace the node's socket lives in; nil runs f directly, which is
	// right unless the node's socket was opened in another namespace (as
	// tests do). f must be run on the calling goroutine.
	InNetNS func(f func() error) error
	// OnChange is called from the mapper's goroutine with the external
	// address when a mapping is installed or its address changes, and with
	// the zero AddrPort when it is lost or removed. It must not block for
	// long and must not call Close.
	OnChange func(netip.AddrPort)
	// Logger receives the mapper's logs; nil discards them.
	Logger *slog.Logger

	// protocols replaces NAT-PMP and UPnP-IGD in unit tests.
	protocols []portMapProtocol
}

func (c PortMapConfig) withDefaults() PortMapConfig {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Lifetime, DefaultPortMapLifetime)
	def(&c.Timeout, DefaultPortMapTimeout)
	def(&c.RetryInterval, DefaultPortMapRetry)
	if c.Description == "" {
		c.Description = DefaultPortMapDescription
	}
	if c.InNetNS == nil {
		c.InNetNS = func(f func() error) error { return f() }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// PortMapStatus is a snapshot of a PortMapper.
type PortMapStatus struct {
	// Protocol is the protocol of the installed mapping, "NAT-PMP" or
	// "UPnP-IGD (WANIPConnection:2)" and the like; empty when there is
	// none.
	Protocol string
	// External is the mapped external address; invalid when there is no
	// mapping.
	External netip.AddrPort
	// Lease is the lifetime the router granted at the last installation or
	// renewal; zero for a permanent UPnP lease.
	Lease time.Duration
	// Expires is when the lease ends unless renewed; zero without a
	// mapping or for a permanent lease.
	Expires time.Time
	// Installs counts mappings installed, Renewals successful renewals,
	// Failures failed attempts (installation or renewal) and Removals
	// mappings deleted on Close.
	Installs, Renewals, Failures, Removals uint64
	// Reason says, when there is no mapping, why: ReasonNoPortMapProtocol
	// when the router answered neither protocol, or what the router
	// refused. Empty while mapped and before the first attempt ended.
	Reason string
	// Err is the last failure, an *Error of KindPortMapUnavailable; nil
	// after a success.
	Err error
}

// PortMapper keeps a UDP port mapping on the router: it asks with NAT-PMP
// first and UPnP-IGD second, renews the mapping at half its lease, looks
// again every RetryInterval when it has none, and deletes it on Close.
// Create it with NewPortMapper and start it with Start. All methods are
// safe for concurrent use.
type PortMapper struct {
	cfg    PortMapConfig
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  sync.Once

	mu sync.Mutex
	st PortMapStatus
}

// NewPortMapper returns a mapper for cfg.Port. It sends nothing until
// Start.
func NewPortMapper(cfg PortMapConfig) *PortMapper {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &PortMapper{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel}
}

// Start starts the mapper's goroutine, which installs the mapping in the
// background. Calls after the first, and calls after Close, do nothing.
func (p *PortMapper) Start() {
	p.start.Do(func() {
		if p.ctx.Err() != nil {
			return
		}
		p.wg.Add(1)
		go p.run()
	})
}

// Close stops the mapper and deletes its mapping from the router (waiting
// at most Timeout for the router to confirm); OnChange then reports the
// zero address. Every goroutine has ended when it returns. Close may be
// called more than once.
func (p *PortMapper) Close() {
	p.start.Do(func() {}) // a later Start must not start anything
	p.cancel()
	p.wg.Wait()
}

// Status returns a snapshot of the mapper.
func (p *PortMapper) Status() PortMapStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Summary says in a line what the mapper holds: "NAT-PMP 198.51.100.11:7001"
// (protocol and external address), or why it holds nothing.
func (p *PortMapper) Summary() string {
	st := p.Status()
	switch {
	case st.External.IsValid():
		return st.Protocol + " " + st.External.String()
	case st.Reason != "":
		return "none: " + st.Reason
	}
	return "none yet"
}

// Mapped returns the external address of the installed mapping, or the
// zero AddrPort.
func (p *PortMapper) Mapped() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.External
}

// portMapping is a mapping a protocol installed.
type portMapping struct {
	ext netip.AddrPort
	// lease is what the router granted; zero means permanent.
	lease time.Duration
}

// portMapProtocol is one way of asking the router for a mapping: NAT-PMP
// or a UPnP-IGD service.
type portMapProtocol interface {
	// name names the protocol for logs and PortMapStatus.Protocol; it may
	// change when discover finds the service.
	name() string
	// discover finds the router and checks that it speaks the protocol.
	// answered is false when nothing answered at all.
	discover(ctx context.Context) (answered bool, err error)
	// add installs or renews the mapping of the local port, asking for
	// external port want.
	add(ctx context.Context, want uint16) (portMapping, error)
	// del deletes the mapping of external port ext.
	del(ctx context.Context, ext uint16) error
}

// protocols returns the protocols to try, in order.
func (p *PortMapper) protocols() []portMapProtocol {
	if p.cfg.protocols != nil {
		return p.cfg.protocols
	}
	return []portMapProtocol{newNATPMP(p.cfg), newUPnP(p.cfg)}
}

// run is the mapper's goroutine.
func (p *PortMapper) run() {
	defer p.wg.Done()
	for {
		proto, m, err := p.acquire()
		if p.ctx.Err() != nil {
			if err == nil {
				p.remove(proto, m)
			}
			return
		}
		if err != nil {
			p.fail(err, true)
			if !p.sleep(p.cfg.RetryInterval) {
				return
			}
			continue
		}
		p.installed(proto, m)
		if !p.keep(proto, m) {
			return
		}
	}
}

// acquire asks each protocol in turn for a mapping. When none works it
// returns an *Error of KindPortMapUnavailable whose Reason tells a router
// that answered nothing from one that refused.
func (p *PortMapper) acquire() (portMapProtocol, portMapping, error) {
	var errs []error
	var refusals []string
	for _, proto := range p.protocols() {
		if p.ctx.Err() != nil {
			break
		}
		answered, err := proto.discover(p.ctx)
		if err == nil {
			var m portMapping
			if m, err = proto.add(p.ctx, p.cfg.Port); err == nil {
				return proto, m, nil
			}
			answered = true
		}
		p.log.Debug("port mapping protocol failed", "protocol", proto.name(), "answered", answered, "err", err)
		errs = append(errs, err)
		if answered {
			refusals = append(refusals, proto.name()+": "+err.Error())
		}
	}
	reason := ReasonNoPortMapProtocol
	if len(refusals) > 0 {
		reason = "no port mapping: the router refused: " + refusals[0]
		for _, r := range refusals[1:] {
			reason += "; " + r
		}
	}
	return nil, portMapping{}, &Error{Kind: KindPortMapUnavailable, Reason: reason, Err: errors.Join(errs...)}
}

// installed records a new mapping and reports it.
func (p *PortMapper) installed(proto portMapProtocol, m portMapping) {
	p.mu.Lock()
	p.st.Protocol, p.st.External, p.st.Lease = proto.name(), m.ext, m.lease
	p.st.Expires = expiry(m)
	p.st.Installs++
	p.st.Reason, p.st.Err = "", nil
	p.mu.Unlock()
	p.log.Info("port mapping installed", "protocol", proto.name(), "external", m.ext, "port", p.cfg.Port, "lease", m.lease)
	p.report(m.ext)
}

// keep renews m at half its lease until the mapper closes (it then deletes
// the mapping and returns false) or the lease runs out without a renewal
// (it returns true: look for a mapping again).
func (p *PortMapper) keep(proto portMapProtocol, m portMapping) bool {
	expires := expiry(m)
	wait := renewAfter(m)
	for {
		if !p.sleep(wait) {
			p.remove(proto, m)
			return false
		}
		n, err := proto.add(p.ctx, m.ext.Port())
		if p.ctx.Err() != nil {
			if err == nil {
				m = n
			}
			p.remove(proto, m)
			return false
		}
		if err == nil {
			changed := n.ext != m.ext
			m, expires, wait = n, expiry(n), renewAfter(n)
			p.mu.Lock()
			p.st.External, p.st.Lease, p.st.Expires = m.ext, m.lease, expires
			p.st.Renewals++
			p.st.Err = nil
			p.mu.Unlock()
			p.log.Debug("port mapping renewed", "protocol", proto.name(), "external", m.ext, "lease", m.lease)
			if changed {
				p.log.Info("port mapping moved", "protocol", proto.name(), "external", m.ext)
				p.report(m.ext)
			}
			continue
		}
		p.fail(&Error{Kind: KindPortMapUnavailable, Reason: "renewing the " + proto.name() + " mapping failed", Err: err}, false)
		left := time.Until(expires)
		if !expires.IsZero() && left <= 0 {
			p.lost(proto, "the "+proto.name()+" mapping expired: renewals failed")
			return true
		}
		// Try again at half the time left, as RFC 6886 does for refreshes.
		wait = max(left/2, minRenew)
		if expires.IsZero() {
			wait = max(p.cfg.RetryInterval/4, minRenew)
		}
	}
}

// lost forgets the mapping after its lease ran out.
func (p *PortMapper) lost(proto portMapProtocol, why string) {
	p.mu.Lock()
	p.st.Protocol, p.st.External, p.st.Lease, p.st.Expires = "", netip.AddrPort{}, 0, time.Time{}
	p.st.Reason = "no port mapping: " + why
	p.mu.Unlock()
	p.log.Warn("port mapping lost", "protocol", proto.name(), "why", why)
	p.report(netip.AddrPort{})
}

// remove deletes m from the router on Close, with a fresh deadline: the
// mapper's context is already cancelled.
func (p *PortMapper) remove(proto portMapProtocol, m portMapping) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	err := proto.del(ctx, m.ext.Port())
	p.mu.Lock()
	p.st.Protocol, p.st.External, p.st.Lease, p.st.Expires = "", netip.AddrPort{}, 0, time.Time{}
	p.st.Reason = "no port mapping: closed"
	if err == nil {
		p.st.Removals++
	} else {
		p.st.Failures++
		p.st.Err = &Error{Kind: KindPortMapUnavailable, Reason: "deleting the " + proto.name() + " mapping failed", Err: err}
	}
	p.mu.Unlock()
	if err != nil {
		p.log.Warn("port mapping not deleted; it lapses when its lease ends", "protocol", proto.name(), "external", m.ext, "err", err)
	} else {
		p.log.Info("port mapping deleted", "protocol", proto.name(), "external", m.ext)
	}
	p.report(netip.AddrPort{})
}

// fail records a failed attempt; withReason also sets the status reason
// (there is no mapping).
func (p *PortMapper) fail(err error, withReason bool) {
	p.mu.Lock()
	p.st.Failures++
	p.st.Err = err
	if withReason {
		var pe *Error
		if errors.As(err, &pe) {
			p.st.Reason = pe.Reason
		}
	}
	p.mu.Unlock()
	if withReason {
		p.log.Info("no port mapping; NAT traversal goes on without it", "err", err)
	} else {
		p.log.Warn("port mapping", "err", err)
	}
}

func (p *PortMapper) report(a netip.AddrPort) {
	if p.cfg.OnChange != nil {
		p.cfg.OnChange(a)
	}
}

// sleep waits d; false means the mapper closed.
func (p *PortMapper) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// expiry is when m's lease ends; zero for a permanent one.
func expiry(m portMapping) time.Time {
	if m.lease <= 0 {
		return time.Time{}
	}
	return time.Now().Add(m.lease)
}

// renewAfter is when to renew m: at half its lease.
func renewAfter(m portMapping) time.Duration {
	if m.lease <= 0 {
		return permanentRenew
	}
	return max(m.lease/2, minRenew)
}

// publicAddr reports whether a is worth advertising as the node's address
// on the Internet: not private (RFC 1918, RFC 4193), shared (RFC 6598,
// carrier-grade NAT), loopback, link-local or unspecified. A router whose
// own external address is private sits behind another NAT, and a mapping
// on it does not make the node reachable.
func publicAddr(a netip.AddrPort) bool {
	return validAddr(a) && publicIP(a.Addr())
}

// newPortMapper starts the engine's port mapper (Config.PortMap) for the
// node's IPv4 port, with the mapped address as reflex override.
func init() {
	newPortMapper = func(e *Engine) portMapper {
		var port uint16
		for _, a := range e.tr.LocalAddrs() {
			if a.Addr().Unmap().Is4() && a.Port() != 0 {
				port = a.Port()
				break
			}
		}
		if port == 0 {
			e.log.Warn("port mapping: the node has no IPv4 socket to map")
			return nil
		}
		var set netip.AddrPort // the override this mapper set; only its goroutine touches it
		pm := NewPortMapper(PortMapConfig{
			Port:     port,
			Logger:   e.log,
			OnChange: func(a netip.AddrPort) { set = e.portMapOverride(set, a) },
		})
		pm.Start()
		return pm
	}
}

// portMapOverride makes the mapped address a the reflex override, or
// clears the override when a is zero. mine is the override the mapper set
// before; an override the operator set (SetReflexOverride) is never
// replaced or cleared. It returns the override the mapper now owns.
func (e *Engine) portMapOverride(mine, a netip.AddrPort) netip.AddrPort {
	e.mu.Lock()
	before := e.reachLocked()
	defer func() {
		notify := e.reachChangedLocked(before)
		e.mu.Unlock()
		notify()
	}()
	if e.override.IsValid() && e.override != mine {
		return netip.AddrPort{} // the operator's
	}
	if a.IsValid() && publicAddr(a) {
		e.override = a
		return a
	}
	if a.IsValid() {
		e.log.Info("port mapping not advertised: the router's external address is not public (another NAT upstream?)", "external", a)
	}
	e.override = netip.AddrPort{}
	return netip.AddrPort{}
}

// PortMapStatus returns the state of the engine's port mapper
// (Config.PortMap). Without one its Reason says why.
func (e *Engine) PortMapStatus() PortMapStatus {
	e.mu.Lock()
	pm, _ := e.pm.(*PortMapper)
	e.mu.Unlock()
	if pm == nil {
		if e.cfg.PortMap {
			return PortMapStatus{Reason: "no port mapping: the node has no IPv4 socket to map"}
		}
		return PortMapStatus{Reason: "no port mapping: off (Config.PortMap)"}
	}
	return pm.Status()
}
