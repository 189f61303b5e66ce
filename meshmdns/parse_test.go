package meshmdns

import (
	"encoding/hex"
	"net"
	"strings"
	"testing"

	"github.com/hashicorp/mdns"

	"github.com/netmesh/netmesh/identity"
)

// TestParseEntry checks what an mDNS answer must carry before the node
// dials it: a NodeID that its key derives, and an address.
func TestParseEntry(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	key := hex.EncodeToString(id.PublicKey())
	entry := func(port int, v4 net.IP, txt ...string) *mdns.ServiceEntry {
		return &mdns.ServiceEntry{Port: port, AddrV4: v4, InfoFields: txt}
	}
	good := entry(7946, net.IPv4(192, 0, 2, 7), txtID+id.NodeID().String(), txtKey+key)
	f, err := parseEntry(good, "eth0")
	if err != nil || f.id != id.NodeID() || !f.key.Equal(id.PublicKey()) || f.addr.String() != "192.0.2.7:7946" {
		t.Errorf("good entry: %+v, %v", f, err)
	}
	ll := &mdns.ServiceEntry{Port: 7946, AddrV6: net.ParseIP("fe80::1"), InfoFields: good.InfoFields}
	if f, err := parseEntry(ll, "eth0"); err != nil || f.addr.String() != "[fe80::1%eth0]:7946" {
		t.Errorf("link-local entry: %+v, %v", f, err)
	}
	for name, tc := range map[string]struct {
		e    *mdns.ServiceEntry
		want string
	}{
		"no id":        {entry(7946, net.IPv4(192, 0, 2, 7), txtKey+key), "TXT id"},
		"bad key":      {entry(7946, net.IPv4(192, 0, 2, 7), txtID+id.NodeID().String(), txtKey+"abcd"), "TXT key"},
		"key mismatch": {entry(7946, net.IPv4(192, 0, 2, 7), txtID+other.NodeID().String(), txtKey+key), "not the NodeID of its key"},
		"no address":   {entry(7946, nil, good.InfoFields...), "no address"},
		"no port":      {entry(0, net.IPv4(192, 0, 2, 7), good.InfoFields...), "bad port"},
	} {
		if _, err := parseEntry(tc.e, "eth0"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
