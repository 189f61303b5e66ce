package dialaddr_test

import (
	"context"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/netmesh/netmesh/dialaddr"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/dnstest"
)

const keyHex = "9fef98de5da4178916330a2aa1c638cb0ee4ca464760c3a4c7495146d3315ffd"

func TestParse(t *testing.T) {
	key, _ := hex.DecodeString(keyHex)
	keyID := identity.NodeIDFromKey(key)
	other, _ := identity.ParseNodeID("cajvpajajyttukj7y4mrbebzsu")
	cases := []struct {
		in    string
		want  dialaddr.Addr
		canon string // String() when it differs from in
	}{
		{in: "192.0.2.10:7946", want: dialaddr.Addr{Host: "192.0.2.10", Port: 7946}},
		{in: "[2001:db8::1]:7946", want: dialaddr.Addr{Host: "2001:db8::1", Port: 7946}},
		{in: "[fe80::1%eth0]:1", want: dialaddr.Addr{Host: "fe80::1%eth0", Port: 1}},
		{in: "192.0.2.1:65535", want: dialaddr.Addr{Host: "192.0.2.1", Port: 65535}},
		{in: "[::ffff:192.0.2.1]:1", want: dialaddr.Addr{Host: "::ffff:192.0.2.1", Port: 1}},
		{in: "relay.example.com:7946", want: dialaddr.Addr{Host: "relay.example.com", Port: 7946}},
		{in: "Relay-1.Example.com.:7946", want: dialaddr.Addr{Host: "Relay-1.Example.com.", Port: 7946}},
		{in: "localhost:07946", want: dialaddr.Addr{Host: "localhost", Port: 7946}, canon: "localhost:7946"},
		{in: "relay.example.com:7946,key=" + keyHex, want: dialaddr.Addr{Host: "relay.example.com", Port: 7946, Key: key}},
		{in: "relay.example.com:7946,key=" + strings.ToUpper(keyHex), want: dialaddr.Addr{Host: "relay.example.com", Port: 7946, Key: key},
			canon: "relay.example.com:7946,key=" + keyHex},
		{in: "192.0.2.10:7946,id=" + other.String(), want: dialaddr.Addr{Host: "192.0.2.10", Port: 7946, ID: other}},
		{in: "192.0.2.10:7946,id=" + keyID.String() + ",key=" + keyHex, want: dialaddr.Addr{Host: "192.0.2.10", Port: 7946, Key: key, ID: keyID},
			canon: "192.0.2.10:7946,key=" + keyHex + ",id=" + keyID.String()},
		{in: "id=" + other.String(), want: dialaddr.Addr{ID: other}},
		{in: "key=" + keyHex, want: dialaddr.Addr{Key: key}},
	}
	for _, c := range cases {
		got, err := dialaddr.Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
		}
		canon := c.canon
		if canon == "" {
			canon = c.in
		}
		if s := got.String(); s != canon {
			t.Errorf("Parse(%q).String() = %q, want %q", c.in, s, canon)
		}
	}
}

func TestParseRejects(t *testing.T) {
	other := identity.NodeIDFromKey(make([]byte, 32))
	cases := map[string]string{
		"":                                      "want host:port",
		"192.0.2.10":                            "want host:port",
		"192.0.2.10:0":                          "want 1 to 65535",
		"192.0.2.10:65536":                      "want 1 to 65535",
		"192.0.2.10:+1":                         "want 1 to 65535",
		"192.0.2.10:http":                       "want 1 to 65535",
		"[192.0.2.1]:1":                         "only one, goes in brackets",
		"[relay.example]:1":                     "only an IPv6 address goes in brackets",
		"0.0.0.0:1":                             "unspecified",
		"[::]:1":                                "unspecified",
		"2001:db8::1:7946":                      "want host:port",
		":7946":                                 "not an IP address or a DNS name",
		"bad_name.example:1":                    "is not a letter",
		"-lead.example:1":                       "hyphen",
		"a..b:1":                                "label",
		strings.Repeat("a", 64) + ".com:1":      "label",
		strings.Repeat("a.", 127) + "aa:1":      "DNS name of 1 to 253",
		"host:1,":                               "empty part",
		"host:1,,id=" + other.String():          "empty part",
		"id=" + other.String() + ",host:1":      "address must come first",
		"host:1,key=abcd":                       "64 hex digits",
		"host:1,key=" + strings.Repeat("g", 64): "64 hex digits",
		"host:1,id=notanid":                     "not a NodeID",
		"host:1,id=aaaaaaaaaaaaaaaaaaaaaaaaaa":  "not a NodeID",
		"host:1,id=" + other.String() + ",id=" + other.String(): "given twice",
		"host:1,key=" + keyHex + ",id=" + other.String():        "does not match the key",
		"host:1,pin=x":           "unknown pin",
		"key=":                   "64 hex digits",
		strings.Repeat("a", 600): "limit 512",
	}
	for in, want := range cases {
		_, err := dialaddr.Parse(in)
		if !errors.Is(err, dialaddr.ErrSyntax) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%.40q): %v, want ErrSyntax saying %q", in, err, want)
		}
	}
}

func TestNodeID(t *testing.T) {
	key, _ := hex.DecodeString(keyHex)
	if got := (dialaddr.Addr{Key: key}).NodeID(); got != identity.NodeIDFromKey(key) {
		t.Errorf("NodeID of a key pin: %s", got)
	}
	if got := (dialaddr.Addr{Host: "h", Port: 1}).NodeID(); !got.IsZero() {
		t.Errorf("NodeID without a pin: %s", got)
	}
}

func TestTextRoundTrip(t *testing.T) {
	var a dialaddr.Addr
	if err := a.UnmarshalText([]byte("relay.example.com:7946,key=" + keyHex)); err != nil {
		t.Fatal(err)
	}
	b, _ := a.MarshalText()
	if string(b) != "relay.example.com:7946,key="+keyHex {
		t.Fatalf("MarshalText = %q", b)
	}
	if err := a.UnmarshalText([]byte("nope")); !errors.Is(err, dialaddr.ErrSyntax) {
		t.Fatalf("UnmarshalText of a bad string: %v", err)
	}
}

// TestResolveFollowsDNS checks that a DNS name is looked up on every
// Resolve, so a changed record is followed, and that an IP address is
// used as it is.
func TestResolveFollowsDNS(t *testing.T) {
	var current atomic.Pointer[netip.Addr]
	set := func(s string) { ip := netip.MustParseAddr(s); current.Store(&ip) }
	set("192.0.2.1")
	r := dnstest.Resolver(t, func(name string) (netip.Addr, bool) {
		return *current.Load(), name == "node.example.com."
	})
	a, err := dialaddr.Parse("node.example.com:7946")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, want := range []string{"192.0.2.1:7946", "192.0.2.2:7946"} {
		got, err := a.Resolve(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].String() != want {
			t.Fatalf("Resolve = %v, want [%s]", got, want)
		}
		set("192.0.2.2")
	}
	if _, err := (dialaddr.Addr{Host: "gone.example.com", Port: 1}).Resolve(ctx, r); err == nil {
		t.Fatal("Resolve of a name with no record succeeded")
	}
	lit, _ := dialaddr.Parse("[::ffff:192.0.2.9]:5")
	if got, err := lit.Resolve(ctx, r); err != nil || len(got) != 1 || got[0] != netip.MustParseAddrPort("192.0.2.9:5") {
		t.Fatalf("Resolve of an IPv4-mapped literal = %v, %v", got, err)
	}
	if _, err := (dialaddr.Addr{ID: identity.NodeID{1}}).Resolve(ctx, r); err == nil {
		t.Fatal("Resolve without an address succeeded")
	}
}

// FuzzParse feeds arbitrary text to Parse, which reads config files and
// command-line flags: it must never panic, and every string it accepts
// must print, with String, as a dial string that parses to the same Addr
// and prints the same again.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"192.0.2.10:7946",
		"[2001:db8::1]:7946,id=cajvpajajyttukj7y4mrbebzsu",
		"[fe80::1%eth0]:1",
		"relay.example.com.:7946,key=" + keyHex,
		"id=cajvpajajyttukj7y4mrbebzsu,key=" + keyHex,
		"key=" + keyHex,
		"host:1,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := dialaddr.Parse(s)
		if err != nil {
			if !errors.Is(err, dialaddr.ErrSyntax) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrSyntax", s, err)
			}
			return
		}
		canon := a.String()
		b, err := dialaddr.Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) printed %q, which does not parse: %v", s, canon, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("Parse(%q) = %+v, but its String %q parses to %+v", s, a, canon, b)
		}
		if b.String() != canon {
			t.Fatalf("String is not stable: %q, then %q", canon, b.String())
		}
	})
}
