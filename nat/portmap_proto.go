//go:build nat && portmap

package nat

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/httpu"
	"github.com/huin/goupnp/soap"
	"github.com/huin/goupnp/ssdp"
	natpmp "github.com/jackpal/go-nat-pmp"
)

// NAT-PMP (RFC 6886), with github.com/jackpal/go-nat-pmp.

// natPMP asks the gateway with NAT-PMP.
type natPMP struct {
	cfg PortMapConfig
	gw  netip.Addr
}

func newNATPMP(cfg PortMapConfig) *natPMP { return &natPMP{cfg: cfg, gw: cfg.Gateway} }

func (n *natPMP) name() string { return "NAT-PMP" }

// client returns a client for the gateway; its sockets are opened inside
// InNetNS by each call.
func (n *natPMP) client() *natpmp.Client {
	return natpmp.NewClientWithTimeout(net.IP(n.gw.AsSlice()), n.cfg.Timeout)
}

// call runs f, a go-nat-pmp call, inside the node's namespace. The
// library takes no context; its calls end within Timeout.
func (n *natPMP) call(f func(c *natpmp.Client) error) error {
	c := n.client()
	return n.cfg.InNetNS(func() error { return f(c) })
}

func (n *natPMP) discover(ctx context.Context) (bool, error) {
	if !n.gw.IsValid() {
		var err error
		if err = n.cfg.InNetNS(func() (err error) { n.gw, err = defaultGateway(); return err }); err != nil {
			return false, fmt.Errorf("no gateway for NAT-PMP: %w", err)
		}
	}
	if !n.gw.Is4() {
		return false, fmt.Errorf("NAT-PMP gateway %v is not IPv4", n.gw)
	}
	var ext netip.Addr
	err := n.call(func(c *natpmp.Client) error {
		r, err := c.GetExternalAddress()
		if err == nil {
			ext = netip.AddrFrom4(r.ExternalIPAddress)
		}
		return err
	})
	if err != nil {
		return pmpAnswered(err), err
	}
	if !ext.IsValid() || ext.IsUnspecified() {
		return true, errors.New("the gateway has no external address")
	}
	return true, nil
}

func (n *natPMP) add(ctx context.Context, want uint16) (portMapping, error) {
	var ext netip.Addr
	var r *natpmp.AddPortMappingResult
	err := n.call(func(c *natpmp.Client) error {
		a, err := c.GetExternalAddress()
		if err != nil {
			return err
		}
		ext = netip.AddrFrom4(a.ExternalIPAddress)
		r, err = c.AddPortMapping("udp", int(n.cfg.Port), int(want), int(n.cfg.Lifetime/time.Second))
		return err
	})
	if err != nil {
		return portMapping{}, err
	}
	if r.MappedExternalPort == 0 || r.PortMappingLifetimeInSeconds == 0 {
		return portMapping{}, errors.New("NAT-PMP: the gateway granted no mapping")
	}
	return portMapping{
		ext:   netip.AddrPortFrom(ext, r.MappedExternalPort),
		lease: time.Duration(r.PortMappingLifetimeInSeconds) * time.Second,
	}, nil
}

func (n *natPMP) del(ctx context.Context, ext uint16) error {
	// RFC 6886 section 3.4: lifetime 0 and external port 0 delete the
	// mapping of the internal port.
	return n.call(func(c *natpmp.Client) error {
		_, err := c.AddPortMapping("udp", int(n.cfg.Port), 0, 0)
		return err
	})
}

// pmpAnswered tells a NAT-PMP error from a gateway that answered (a
// result code, another version) from one that did not (timeout, ICMP port
// unreachable).
func pmpAnswered(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) {
		return false
	}
	return !strings.Contains(err.Error(), "Timed out")
}

// defaultGateway reads the gateway of the default IPv4 route of the
// calling thread's network namespace (Linux).
func defaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/thread-self/net/route")
	if err != nil {
		if f, err = os.Open("/proc/net/route"); err != nil {
			return netip.Addr{}, err
		}
	}
	defer f.Close()
	return parseRoutes(f)
}

// parseRoutes finds the default route's gateway in /proc/net/route: the
// fields are Iface, Destination, Gateway and Flags, addresses in host byte
// order as hex.
func parseRoutes(r interface{ Read([]byte) (int, error) }) (netip.Addr, error) {
	const rtfGateway = 0x2
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[1] != "00000000" {
			continue
		}
		var flags uint32
		if _, err := fmt.Sscanf(f[3], "%x", &flags); err != nil || flags&rtfGateway == 0 {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		var ip [4]byte
		binary.BigEndian.PutUint32(ip[:], binary.LittleEndian.Uint32(b))
		return netip.AddrFrom4(ip), nil
	}
	return netip.Addr{}, errors.New("no default IPv4 route")
}

// UPnP-IGD, with github.com/huin/goupnp.

// igdService is what the mapper uses of a WANIPConnection or
// WANPPPConnection service; the goupnp clients for all three versions have
// these methods.
type igdService interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string, intPort uint16, intClient string, enabled bool, desc string, lease uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
}

// upnp asks an Internet Gateway Device found by SSDP on the LAN.
type upnp struct {
	cfg     PortMapConfig
	svc     igdService
	svcName string
	local   netip.Addr // our address as the device sees it
	hc      *http.Client
}

func newUPnP(cfg PortMapConfig) *upnp {
	u := &upnp{cfg: cfg}
	d := net.Dialer{Timeout: cfg.Timeout}
	u.hc = &http.Client{
		Timeout: cfg.Timeout,
		Transport: limitTransport{&http.Transport{
			// Dial inside the node's namespace, and keep no idle
			// connections (and their goroutines) between the rare calls.
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = cfg.InNetNS(func() error { c, err = d.DialContext(ctx, network, addr); return err })
				return c, err
			},
			DisableKeepAlives: true,
		}},
		// An IGD has no reason to redirect; following one would let
		// whoever answered the SSDP search send our requests anywhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return u
}

// maxUPnPBody bounds what the mapper reads of one HTTP answer from a
// device: descriptions and SOAP answers are a few kilobytes, and goupnp's
// SOAP client keeps the whole answer in memory.
const maxUPnPBody = 1 << 20

// maxUPnPDevices bounds the devices one discovery tries: anything on the
// LAN may answer the SSDP search, each try may wait Timeout.
const maxUPnPDevices = 4

var errUPnPBodyTooLarge = errors.New("UPnP-IGD: answer larger than 1 MiB")

// limitTransport cuts every response body at maxUPnPBody.
type limitTransport struct{ rt http.RoundTripper }

func (t limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if err == nil {
		resp.Body = &limitedBody{rc: resp.Body, left: maxUPnPBody}
	}
	return resp, err
}

// limitedBody reads at most left bytes of rc; more is an error, not EOF,
// so that a cut answer is not mistaken for a whole one.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, err := b.rc.Read(one[:]); n == 0 && err != nil {
			return 0, err
		}
		return 0, errUPnPBodyTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

func (u *upnp) name() string {
	if u.svcName == "" {
		return "UPnP-IGD"
	}
	return "UPnP-IGD (" + u.svcName + ")"
}

// igdDeviceV1 is the SSDP search target: every IGD, v1 or v2, answers
// it.
const igdDeviceV1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"

// IGD service types, best first.
var igdServices = []string{
	internetgateway2.URN_WANIPConnection_2,
	internetgateway2.URN_WANIPConnection_1,
	internetgateway2.URN_WANPPPConnection_1,
}

// discover searches the LAN with SSDP for an InternetGatewayDevice (an
// IGDv2 answers a v1 search too), fetches its description and picks its
// best WAN connection service. The search goes out from the local address
// that routes to the default gateway, inside the node's namespace.
func (u *upnp) discover(ctx context.Context) (bool, error) {
	var hc *httpu.HTTPUClient
	var gw netip.Addr
	err := u.cfg.InNetNS(func() (err error) {
		src := ""
		if g, err := defaultGateway(); err == nil {
			gw = g
			if l, err := localAddrTo(gw); err == nil {
				src = l.String()
			}
		}
		if src != "" {
			hc, err = httpu.NewHTTPUClientAddr(src)
		} else {
			hc, err = httpu.NewHTTPUClient()
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("SSDP socket: %w", err)
	}
	defer hc.Close()
	// ssdp.RawSearch puts the whole seconds left in the request's MX: at
	// least one.
	sctx, cancel := context.WithTimeout(ctx, max(u.cfg.Timeout, 1100*time.Millisecond))
	defer cancel()
	resps, err := ssdp.RawSearch(sctx, hc, igdDeviceV1, 2)
	if err != nil {
		return false, fmt.Errorf("SSDP search: %w", err)
	}
	if len(resps) == 0 {
		return false, errors.New("no UPnP Internet Gateway Device answered the SSDP search")
	}
	return true, u.useFirstDevice(ctx, resps, gw)
}

// useFirstDevice tries the devices that answered the SSDP search, in
// order, until one offers a WAN connection service. Anything on the LAN
// can answer, with any location: with a known gateway every location is
// pointed at the gateway (a mapping on another device would not forward
// our traffic, and a location naming another host is how an SSDP answer
// makes the node fetch URLs of someone else's choosing), and at most
// maxUPnPDevices distinct locations are tried.
func (u *upnp) useFirstDevice(ctx context.Context, resps []*http.Response, gw netip.Addr) error {
	var errs []error
	var tried []string
	for _, r := range resps {
		loc, err := r.Location()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if loc.Scheme != "http" {
			errs = append(errs, fmt.Errorf("IGD at %s: not plain HTTP", loc))
			continue
		}
		if gw.IsValid() {
			loc.Host = net.JoinHostPort(gw.String(), cmp.Or(loc.Port(), "80"))
		}
		if slices.Contains(tried, loc.String()) {
			continue
		}
		if len(tried) == maxUPnPDevices {
			errs = append(errs, fmt.Errorf("more than %d devices answered; the others were not tried", maxUPnPDevices))
			break
		}
		tried = append(tried, loc.String())
		if err := u.useDevice(ctx, loc); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	return errors.Join(errs...)
}

// useDevice fetches the device description at loc and picks its best WAN
// connection service. SOAP calls go to loc's host, whatever host the
// description names.
func (u *upnp) useDevice(ctx context.Context, loc *url.URL) error {
	host, err := netip.ParseAddr(loc.Hostname())
	if err != nil {
		return fmt.Errorf("IGD at %s: not an IP address", loc)
	}
	root, err := u.fetchRoot(ctx, loc)
	if err != nil {
		return err
	}
	if err := u.cfg.InNetNS(func() (err error) { u.local, err = localAddrTo(host); return err }); err != nil {
		return err
	}
	for _, urn := range igdServices {
		var svc igdService
		var sc *goupnp.ServiceClient
		switch urn {
		case internetgateway2.URN_WANIPConnection_2:
			if cs, err := internetgateway2.NewWANIPConnection2ClientsFromRootDevice(root, loc); err == nil && len(cs) > 0 {
				svc, sc = cs[0], &cs[0].ServiceClient
			}
		case internetgateway2.URN_WANIPConnection_1:
			if cs, err := internetgateway2.NewWANIPConnection1ClientsFromRootDevice(root, loc); err == nil && len(cs) > 0 {
				svc, sc = cs[0], &cs[0].ServiceClient
			}
		case internetgateway2.URN_WANPPPConnection_1:
			if cs, err := internetgateway2.NewWANPPPConnection1ClientsFromRootDevice(root, loc); err == nil && len(cs) > 0 {
				svc, sc = cs[0], &cs[0].ServiceClient
			}
		}
		if svc == nil {
			continue
		}
		if ep := &sc.SOAPClient.EndpointURL; ep.Hostname() != loc.Hostname() || ep.Scheme != "http" {
			// URLBase or controlURL names another host: the device's own
			// host is the only one we talk to.
			ep.Scheme, ep.Host = "http", loc.Host
		}
		sc.SOAPClient.HTTPClient = *u.hc
		u.svc, u.svcName = svc, strings.TrimPrefix(urn, "urn:schemas-upnp-org:service:")
		return nil
	}
	return fmt.Errorf("IGD at %s offers no WANIPConnection or WANPPPConnection service", loc)
}

// fetchRoot fetches and decodes a root device description with the
// mapper's HTTP client (goupnp's own fetch uses a global client that
// dials outside the node's namespace).
func (u *upnp) fetchRoot(ctx context.Context, loc *url.URL) (*goupnp.RootDevice, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := u.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("IGD description %s: %s", loc, resp.Status)
	}
	root := new(goupnp.RootDevice)
	dec := xml.NewDecoder(io.LimitReader(resp.Body, 1<<20))
	dec.DefaultSpace = goupnp.DeviceXMLNamespace
	dec.CharsetReader = goupnp.CharsetReaderDefault
	if err := dec.Decode(root); err != nil {
		return nil, fmt.Errorf("IGD description %s: %w", loc, err)
	}
	base := loc
	if root.URLBaseStr != "" {
		if b, err := url.Parse(root.URLBaseStr); err == nil {
			base = b
		}
	}
	root.SetURLBase(base)
	return root, nil
}

// UPnP error codes (IGD WANIPConnection:2 specification).
const (
	upnpConflict      = 718 // ConflictInMappingEntry
	upnpOnlyPermanent = 725 // OnlyPermanentLeasesSupported
)

func (u *upnp) add(ctx context.Context, want uint16) (portMapping, error) {
	if u.svc == nil {
		return portMapping{}, errors.New("UPnP-IGD: no service discovered")
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	// The external address first: a router whose WAN is down answers
	// AddPortMapping but has no address to report, and a mapping installed
	// before finding that out would be left behind on the router (for good
	// with a permanent lease, and one more random port per attempt after a
	// conflict).
	s, err := u.svc.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return portMapping{}, err
	}
	ext, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !ext.Is4() || ext.IsUnspecified() {
		return portMapping{}, fmt.Errorf("UPnP-IGD: the router reports no usable external address (%q)", s)
	}
	lease := uint32(u.cfg.Lifetime / time.Second)
	port, err := u.addPort(ctx, want, &lease)
	if upnpCode(err) == upnpConflict {
		// Someone holds the port. IGDv2 picks a free one; otherwise try a
		// few random ones.
		if v2, ok := u.svc.(*internetgateway2.WANIPConnection2); ok {
			port, err = v2.AddAnyPortMappingCtx(ctx, "", want, "UDP", u.cfg.Port, u.local.String(), true, u.cfg.Description, lease)
		} else {
			for range 3 {
				if port, err = u.addPort(ctx, uint16(1024+rand.IntN(65535-1024)), &lease); upnpCode(err) != upnpConflict {
					break
				}
			}
		}
	}
	if err != nil {
		return portMapping{}, err
	}
	return portMapping{ext: netip.AddrPortFrom(ext, port), lease: time.Duration(lease) * time.Second}, nil
}

// addPort asks for external port ext; a router that only grants permanent
// leases is asked again with lease 0, and *lease says what was granted.
func (u *upnp) addPort(ctx context.Context, ext uint16, lease *uint32) (uint16, error) {
	err := u.svc.AddPortMappingCtx(ctx, "", ext, "UDP", u.cfg.Port, u.local.String(), true, u.cfg.Description, *lease)
	if upnpCode(err) == upnpOnlyPermanent && *lease != 0 {
		*lease = 0
		err = u.svc.AddPortMappingCtx(ctx, "", ext, "UDP", u.cfg.Port, u.local.String(), true, u.cfg.Description, 0)
	}
	return ext, err
}

func (u *upnp) del(ctx context.Context, ext uint16) error {
	if u.svc == nil {
		return nil
	}
	return u.svc.DeletePortMappingCtx(ctx, "", ext, "UDP")
}

// upnpCode returns the UPnP error code of a SOAP fault, or 0.
func upnpCode(err error) int {
	var f *soap.SOAPFaultError
	if errors.As(err, &f) {
		return f.Detail.UPnPError.Errorcode
	}
	return 0
}

// localAddrTo returns the local address the kernel would send from to
// reach dst. No packet is sent.
func localAddrTo(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
