//go:build nat && portmap

package nat

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeIGD is a UPnP Internet Gateway Device (WANIPConnection:1) on
// 127.0.0.1: it serves a description and answers the SOAP calls the
// mapper makes, keeping a table of mappings.
type fakeIGD struct {
	srv *httptest.Server
	// extIP is what GetExternalIPAddress answers; "fault" answers a SOAP
	// fault instead.
	extIP string
	// conflict makes AddPortMapping of the internal port answer 718.
	conflict uint16

	mu       sync.Mutex
	mappings map[string]bool // "proto/port"
	adds     int
}

const igdDescription = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
<specVersion><major>1</major><minor>0</minor></specVersion>
<device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<friendlyName>fake IGD</friendlyName><UDN>uuid:fake-1</UDN>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><UDN>uuid:fake-2</UDN>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><UDN>uuid:fake-3</UDN>
<serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<controlURL>/ctl</controlURL><eventSubURL>/evt</eventSubURL><SCPDURL>/scpd.xml</SCPDURL>
</service></serviceList>
</device></deviceList>
</device></deviceList>
</device>
</root>`

var soapArg = regexp.MustCompile(`<(NewExternalPort|NewProtocol)>([^<]*)<`)

func newFakeIGD(t *testing.T) *fakeIGD {
	g := &fakeIGD{extIP: "192.0.2.77", mappings: map[string]bool{}}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeIGD) loc(t *testing.T) *url.URL {
	u, err := url.Parse(g.srv.URL + "/rootDesc.xml")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (g *fakeIGD) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/rootDesc.xml" {
		io.WriteString(w, igdDescription)
		return
	}
	body, _ := io.ReadAll(r.Body)
	action := r.Header.Get("SOAPAction")
	action = strings.Trim(action[strings.Index(action, "#")+1:], `"`)
	args := map[string]string{}
	for _, m := range soapArg.FindAllStringSubmatch(string(body), -1) {
		args[m[1]] = m[2]
	}
	key := args["NewProtocol"] + "/" + args["NewExternalPort"]
	g.mu.Lock()
	defer g.mu.Unlock()
	out := ""
	switch action {
	case "AddPortMapping":
		g.adds++
		if args["NewExternalPort"] == fmt.Sprint(g.conflict) {
			soapFault(w, 718)
			return
		}
		g.mappings[key] = true
	case "DeletePortMapping":
		if !g.mappings[key] {
			soapFault(w, 714)
			return
		}
		delete(g.mappings, key)
	case "GetExternalIPAddress":
		if g.extIP == "fault" {
			soapFault(w, 501)
			return
		}
		out = "<NewExternalIPAddress>" + g.extIP + "</NewExternalIPAddress>"
	default:
		soapFault(w, 401)
		return
	}
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	fmt.Fprintf(w, `<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>
<u:%sResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">%s</u:%sResponse>
</s:Body></s:Envelope>`, action, out, action)
}

func soapFault(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>
<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>
<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>error</errorDescription></UPnPError>
</detail></s:Fault></s:Body></s:Envelope>`, code)
}

func (g *fakeIGD) table() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for k := range g.mappings {
		out = append(out, k)
	}
	return out
}

// upnpOn returns the mapper's UPnP client, discovered on g.
func upnpOn(t *testing.T, g *fakeIGD) *upnp {
	t.Helper()
	u := newUPnP(PortMapConfig{Port: 4000, Lifetime: time.Hour}.withDefaults())
	if err := u.useDevice(context.Background(), g.loc(t)); err != nil {
		t.Fatal(err)
	}
	if u.svcName != "WANIPConnection:1" {
		t.Fatalf("service %q", u.svcName)
	}
	return u
}

// TestUPnPAddAgainstFakeIGD: the fake IGD works: a mapping is installed
// and deleted.
func TestUPnPAddAgainstFakeIGD(t *testing.T) {
	g := newFakeIGD(t)
	u := upnpOn(t, g)
	m, err := u.add(context.Background(), 4000)
	if err != nil || m.ext.String() != "192.0.2.77:4000" {
		t.Fatalf("add: %v, %v", m, err)
	}
	if err := u.del(context.Background(), m.ext.Port()); err != nil {
		t.Fatal(err)
	}
	if tab := g.table(); len(tab) != 0 {
		t.Fatalf("left %v", tab)
	}
}

// A router whose WAN is down answers AddPortMapping but reports no
// external address (0.0.0.0, or a fault): add fails, and must not leave
// the mapping it cannot report on the router. The mapper retries every
// RetryInterval, and with a conflict on the internal port each attempt
// would leave one more random port forwarded (for good, on routers that
// only grant permanent leases).
func TestUPnPAddFailureLeavesNoMapping(t *testing.T) {
	for _, ext := range []string{"0.0.0.0", "fault", "not an address"} {
		for _, conflict := range []uint16{0, 4000} {
			t.Run(fmt.Sprintf("%s/conflict=%d", ext, conflict), func(t *testing.T) {
				g := newFakeIGD(t)
				g.extIP, g.conflict = ext, conflict
				u := upnpOn(t, g)
				for range 3 {
					if m, err := u.add(context.Background(), 4000); err == nil {
						t.Fatalf("add succeeded: %v", m)
					}
				}
				if tab := g.table(); len(tab) != 0 {
					t.Fatalf("mappings left on the router: %v", tab)
				}
			})
		}
	}
}

// hitCounter is an HTTP server that must not be contacted.
func hitCounter(t *testing.T) (*httptest.Server, func() int) {
	var mu sync.Mutex
	hits := 0
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		io.WriteString(w, igdDescription)
	}))
	// Another host than the device's 127.0.0.1.
	l, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2: %v", err)
	}
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s, func() int { mu.Lock(); defer mu.Unlock(); return hits }
}

// The description and the SSDP answer come from whatever answered on the
// LAN: they must not make the node send requests to other hosts (SSRF),
// by a redirect, or by a URLBase or controlURL naming another host.
func TestUPnPTalksOnlyToTheDevice(t *testing.T) {
	evil, hits := hitCounter(t)
	evilURL, _ := url.Parse(evil.URL)

	t.Run("redirect", func(t *testing.T) {
		redir := httptest.NewServer(http.RedirectHandler(evil.URL+"/rootDesc.xml", http.StatusFound))
		defer redir.Close()
		loc, _ := url.Parse(redir.URL + "/rootDesc.xml")
		u := newUPnP(PortMapConfig{Port: 4000}.withDefaults())
		if err := u.useDevice(context.Background(), loc); err == nil {
			t.Error("a redirected description was used")
		}
		if n := hits(); n != 0 {
			t.Errorf("the redirect was followed (%d requests elsewhere)", n)
		}
	})

	t.Run("URLBase", func(t *testing.T) {
		g := newFakeIGD(t)
		desc := strings.Replace(igdDescription, "<device>", "<device><!-- -->", 1)
		desc = strings.Replace(desc, "</specVersion>", "</specVersion><URLBase>http://"+evilURL.Host+"/</URLBase>", 1)
		mux := http.NewServeMux()
		mux.HandleFunc("/rootDesc.xml", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, desc) })
		mux.HandleFunc("/", g.serve)
		g.srv.Config.Handler = mux
		u := newUPnP(PortMapConfig{Port: 4000}.withDefaults())
		if err := u.useDevice(context.Background(), g.loc(t)); err != nil {
			t.Fatal(err)
		}
		u.add(context.Background(), 4000)
		u.del(context.Background(), 4000)
		if n := hits(); n != 0 {
			t.Errorf("%d SOAP requests went to the host URLBase named", n)
		}
	})
}

// An SSDP answer's location is pointed at the default gateway, the only
// device whose mappings forward our traffic.
func TestUPnPLocationPointedAtGateway(t *testing.T) {
	evil, hits := hitCounter(t)
	g := newFakeIGD(t)
	gwURL, _ := url.Parse(g.srv.URL)
	evilURL, _ := url.Parse(evil.URL)
	gw := netip.MustParseAddr(gwURL.Hostname())
	resp := func(loc string) *http.Response {
		return &http.Response{StatusCode: 200, Header: http.Header{"Location": {loc}}}
	}
	u := newUPnP(PortMapConfig{Port: 4000}.withDefaults())
	// The device answers with another address (a floating or secondary
	// one, or a spoofed answer) but the gateway's port: it is the gateway
	// that is asked.
	err := u.useFirstDevice(context.Background(), []*http.Response{
		resp("http://192.0.2.200:" + gwURL.Port() + "/rootDesc.xml"),
	}, gw)
	if err != nil || u.svc == nil {
		t.Fatalf("gateway not used: %v", err)
	}
	// An answer naming another device on the LAN is not fetched there.
	u = newUPnP(PortMapConfig{Port: 4000}.withDefaults())
	u.useFirstDevice(context.Background(), []*http.Response{resp("http://" + evilURL.Host + "/rootDesc.xml")}, gw)
	if n := hits(); n != 0 {
		t.Errorf("fetched a location that is not the gateway (%d requests)", n)
	}
}

// A flood of SSDP answers, each naming another location, is not tried to
// the end: each try may wait Timeout.
func TestUPnPDevicesTriedBounded(t *testing.T) {
	var mu sync.Mutex
	tries := 0
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tries++
		mu.Unlock()
		http.NotFound(w, r)
	}))
	defer s.Close()
	var resps []*http.Response
	for i := range 100 {
		resps = append(resps, &http.Response{StatusCode: 200, Header: http.Header{"Location": {fmt.Sprintf("%s/desc%d.xml", s.URL, i)}}})
	}
	u := newUPnP(PortMapConfig{Port: 4000}.withDefaults())
	if err := u.useFirstDevice(context.Background(), resps, netip.Addr{}); err == nil {
		t.Fatal("no error")
	}
	mu.Lock()
	defer mu.Unlock()
	if tries > maxUPnPDevices {
		t.Fatalf("%d devices tried, want at most %d", tries, maxUPnPDevices)
	}
}

// A device that answers without end must not make the mapper buffer it:
// goupnp's SOAP client keeps the whole answer in memory, for as long as
// Timeout lets it read.
func TestUPnPAnswerSizeBounded(t *testing.T) {
	const served = 32 << 20
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		for n := 0; n < served; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer s.Close()
	u := newUPnP(PortMapConfig{Port: 4000, Timeout: time.Minute}.withDefaults())
	resp, err := u.hc.Get(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n > maxUPnPBody {
		t.Fatalf("read %d bytes (err %v), want an error after at most %d", n, err, maxUPnPBody)
	}
}
