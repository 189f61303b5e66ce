//go:build nat && portmap

package nat

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/netmesh/netmesh/identity"
)

// fakeGateway is a portMapProtocol with scripted answers.
type fakeGateway struct {
	proto    string
	silent   bool  // discover: nothing answers
	refuse   error // add fails with this
	lease    time.Duration
	ext      netip.Addr
	takePort uint16 // non-zero: the port the gateway hands out instead

	mu       sync.Mutex
	adds     []uint16 // requested external ports
	dels     []uint16
	failFrom int // adds numbered >= failFrom fail (0: never)
}

func (f *fakeGateway) name() string { return f.proto }

func (f *fakeGateway) discover(ctx context.Context) (bool, error) {
	if f.silent {
		return false, errors.New(f.proto + ": no answer")
	}
	return true, nil
}

func (f *fakeGateway) add(ctx context.Context, want uint16) (portMapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds = append(f.adds, want)
	if f.refuse != nil {
		return portMapping{}, f.refuse
	}
	if f.failFrom > 0 && len(f.adds) >= f.failFrom {
		return portMapping{}, errors.New("gateway went away")
	}
	port := want
	if f.takePort != 0 {
		port = f.takePort
	}
	return portMapping{ext: netip.AddrPortFrom(f.ext, port), lease: f.lease}, nil
}

func (f *fakeGateway) del(ctx context.Context, ext uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dels = append(f.dels, ext)
	return nil
}

func (f *fakeGateway) counts() (adds, dels []uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.adds), slices.Clone(f.dels)
}

var pubIP = netip.MustParseAddr("192.0.2.77")

func newFakeMapper(ch *changes, protos ...portMapProtocol) *PortMapper {
	return NewPortMapper(PortMapConfig{
		Port:          4000,
		Lifetime:      time.Hour,
		RetryInterval: 100 * time.Millisecond,
		OnChange:      ch.add,
		protocols:     protos,
	})
}

// TestPortMapFallbackAndClose: a silent NAT-PMP gateway makes the mapper
// use UPnP; the mapping keeps the internal port, and Close deletes it.
func TestPortMapFallbackAndClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pmp := &fakeGateway{proto: "NAT-PMP", silent: true}
	igd := &fakeGateway{proto: "UPnP-IGD", ext: pubIP, lease: time.Hour}
	var ch changes
	pm := newFakeMapper(&ch, pmp, igd)
	pm.Start()
	waitFor(t, 2*time.Second, "a mapping", func() bool { return pm.Mapped().IsValid() })
	st := pm.Status()
	if st.Protocol != "UPnP-IGD" || st.External != netip.AddrPortFrom(pubIP, 4000) || st.Installs != 1 || st.Reason != "" {
		t.Fatalf("status %+v", st)
	}
	pm.Close()
	pm.Close() // idempotent
	if _, dels := igd.counts(); !slices.Equal(dels, []uint16{4000}) {
		t.Fatalf("deleted %v, want [4000]", dels)
	}
	if st := pm.Status(); st.Removals != 1 || st.External.IsValid() {
		t.Fatalf("after Close: %+v", st)
	}
	want := []netip.AddrPort{netip.AddrPortFrom(pubIP, 4000), {}}
	if got := ch.list(); !slices.Equal(got, want) {
		t.Fatalf("OnChange %v, want %v", got, want)
	}
	pm.Start() // after Close: nothing
}

// TestPortMapNeither: nobody answers: the reason, a typed error, no
// OnChange, and a retry after RetryInterval.
func TestPortMapNeither(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pmp := &fakeGateway{proto: "NAT-PMP", silent: true}
	igd := &fakeGateway{proto: "UPnP-IGD", silent: true}
	var ch changes
	pm := newFakeMapper(&ch, pmp, igd)
	pm.Start()
	waitFor(t, 2*time.Second, "two attempts", func() bool { return pm.Status().Failures >= 2 })
	pm.Close()
	st := pm.Status()
	if st.Reason != ReasonNoPortMapProtocol {
		t.Fatalf("reason %q", st.Reason)
	}
	var pe *Error
	if !errors.As(st.Err, &pe) || pe.Kind != KindPortMapUnavailable || pe.Kind.String() != "port map unavailable" {
		t.Fatalf("err %v", st.Err)
	}
	if got := ch.list(); len(got) != 0 {
		t.Fatalf("OnChange %v", got)
	}
}

// TestPortMapRefused: a gateway that answers but refuses is named in the
// reason.
func TestPortMapRefused(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	pmp := &fakeGateway{proto: "NAT-PMP", refuse: errors.New("Non-zero result code 2 (Not Authorized/Refused)")}
	igd := &fakeGateway{proto: "UPnP-IGD", silent: true}
	var ch changes
	pm := newFakeMapper(&ch, pmp, igd)
	pm.Start()
	waitFor(t, 2*time.Second, "a verdict", func() bool { return pm.Status().Reason != "" })
	pm.Close()
	if r := pm.Status().Reason; !strings.Contains(r, "refused") || !strings.Contains(r, "NAT-PMP: Non-zero result code 2") {
		t.Fatalf("reason %q", r)
	}
}

// TestPortMapRenewAndMove: renewals come at half the lease and ask for
// the port held; a gateway that moves the mapping is reported.
func TestPortMapRenewAndMove(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	gw := &fakeGateway{proto: "NAT-PMP", ext: pubIP, lease: 2 * time.Second, takePort: 4001}
	var ch changes
	pm := newFakeMapper(&ch, gw)
	start := time.Now()
	pm.Start()
	defer pm.Close()
	waitFor(t, 4*time.Second, "a renewal", func() bool { return pm.Status().Renewals >= 1 })
	if el := time.Since(start); el < time.Second-50*time.Millisecond || el > 1800*time.Millisecond {
		t.Fatalf("first renewal after %v, want half the 2s lease", el)
	}
	if adds, _ := gw.counts(); !slices.Equal(adds[:2], []uint16{4000, 4001}) {
		t.Fatalf("asked for %v, want the internal port, then the port granted", adds)
	}
	gw.mu.Lock()
	gw.takePort = 4002
	gw.mu.Unlock()
	waitFor(t, 3*time.Second, "the move", func() bool { return pm.Mapped().Port() == 4002 })
	pm.Close()
	want := []netip.AddrPort{netip.AddrPortFrom(pubIP, 4001), netip.AddrPortFrom(pubIP, 4002), {}}
	if got := ch.list(); !slices.Equal(got, want) {
		t.Fatalf("OnChange %v, want %v", got, want)
	}
}

// TestPortMapLost: renewals that keep failing until the lease ends lose
// the mapping (reported), and the mapper looks for one again at once,
// then every RetryInterval.
func TestPortMapLost(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	gw := &fakeGateway{proto: "NAT-PMP", ext: pubIP, lease: 2 * time.Second, failFrom: 2}
	var ch changes
	pm := newFakeMapper(&ch, gw)
	pm.cfg.RetryInterval = 500 * time.Millisecond
	pm.Start()
	defer pm.Close()
	waitFor(t, 5*time.Second, "the loss", func() bool { return len(ch.list()) >= 2 })
	st := pm.Status()
	// The mapper asks again at once; the gateway refuses that too.
	if st.External.IsValid() || !strings.Contains(st.Reason, "no port mapping") || st.Failures < 2 {
		t.Fatalf("status %+v", st)
	}
	n, _ := gw.counts()
	waitFor(t, 2*time.Second, "a new attempt", func() bool { a, _ := gw.counts(); return len(a) > len(n) })
}

// TestPortMapOverride: the mapped address becomes the reflex override
// and goes away with the mapping, but an operator's override is never
// touched, and a private external address is not advertised.
func TestPortMapOverride(t *testing.T) {
	e := New(nil, Config{})
	mapped := netip.AddrPortFrom(pubIP, 4000)
	mine := e.portMapOverride(netip.AddrPort{}, mapped)
	if mine != mapped || e.ReflexAddr() != mapped || e.selfTypeLocked() != Open {
		t.Fatalf("override %v (mine %v)", e.ReflexAddr(), mine)
	}
	mine = e.portMapOverride(mine, netip.AddrPort{})
	if mine.IsValid() || e.ReflexAddr().IsValid() {
		t.Fatalf("override %v after loss", e.ReflexAddr())
	}

	op := netip.MustParseAddrPort("203.0.113.9:5000")
	if err := e.SetReflexOverride(op); err != nil {
		t.Fatal(err)
	}
	mine = e.portMapOverride(mine, mapped)
	if e.ReflexAddr() != op || mine.IsValid() {
		t.Fatalf("operator override replaced by %v", e.ReflexAddr())
	}
	e.portMapOverride(mine, netip.AddrPort{})
	if e.ReflexAddr() != op {
		t.Fatalf("operator override cleared")
	}
	e.ClearReflexOverride()

	for _, a := range []string{"10.1.2.3:4000", "100.64.0.9:4000", "192.168.1.1:4000", "0.0.0.0:4000"} {
		if mine := e.portMapOverride(netip.AddrPort{}, netip.MustParseAddrPort(a)); mine.IsValid() || e.ReflexAddr().IsValid() {
			t.Errorf("%s advertised", a)
		}
	}
}

func TestParseRoutes(t *testing.T) {
	const routes = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	0001000A	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth0	00000000	0101000A	0003	0	0	0	00000000	0	0	0
`
	gw, err := parseRoutes(strings.NewReader(routes))
	if err != nil || gw != netip.MustParseAddr("10.0.1.1") {
		t.Fatalf("gateway %v, %v", gw, err)
	}
	if _, err := parseRoutes(strings.NewReader(routes[:strings.Index(routes, "eth0\t00000000")])); err == nil {
		t.Fatal("no default route, no error")
	}
}

func TestEnginePortMapStatusOff(t *testing.T) {
	e := New(nil, Config{})
	if r := e.PortMapStatus().Reason; !strings.Contains(r, "off") {
		t.Fatalf("reason %q", r)
	}
}

func TestPortMapSummary(t *testing.T) {
	var p PortMapper
	if got := p.Summary(); got != "none yet" {
		t.Errorf("fresh mapper: %q", got)
	}
	p.st = PortMapStatus{Reason: ReasonNoPortMapProtocol}
	if got := p.Summary(); got != "none: "+ReasonNoPortMapProtocol {
		t.Errorf("no protocol: %q", got)
	}
	p.st = PortMapStatus{Protocol: "NAT-PMP", External: netip.MustParseAddrPort("198.51.100.11:7001")}
	if got := p.Summary(); got != "NAT-PMP 198.51.100.11:7001" {
		t.Errorf("mapped: %q", got)
	}
}

// TestPortMapOverrideRetriesPunches: a port mapping that is installed
// counts as a change of the node's address (punches that failed are tried
// again, OnReflexChange hears of it); a renewal that keeps the address
// does neither.
func TestPortMapOverrideRetriesPunches(t *testing.T) {
	var heard []netip.AddrPort
	e := New(nil, Config{OnReflexChange: func(a netip.AddrPort) { heard = append(heard, a) }})
	failed := &retryState{failures: 1, next: time.Now().Add(time.Hour)}
	e.retries[identity.NodeID{1}] = failed
	mapped := netip.AddrPortFrom(pubIP, 4000)
	mine := e.portMapOverride(netip.AddrPort{}, mapped)
	if time.Until(failed.next) > time.Second || len(heard) != 1 || heard[0] != mapped {
		t.Fatalf("after the mapping: failed punch next at %v, OnReflexChange heard %v", failed.next, heard)
	}
	failed.next = time.Now().Add(time.Hour)
	e.portMapOverride(mine, mapped) // renewed, unchanged
	if time.Until(failed.next) < time.Minute || len(heard) != 1 {
		t.Fatalf("an unchanged mapping retried (next %v) or told (%v)", failed.next, heard)
	}
	e.portMapOverride(mine, netip.AddrPort{}) // lost
	if len(heard) != 2 || heard[1].IsValid() {
		t.Fatalf("losing the mapping: OnReflexChange heard %v", heard)
	}
}
