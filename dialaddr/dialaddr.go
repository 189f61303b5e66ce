// Package dialaddr parses dial strings: one line of text, for a config
// file or a command-line flag, that says where a node is and, optionally,
// who it must be.
//
// # Syntax
//
//	dial-string = address [ "," pin ] [ "," pin ]  /  pin [ "," pin ]
//	address     = host ":" port
//	host        = IPv4 address  /  "[" IPv6 address [ "%" zone ] "]"  /  DNS name
//	port        = 1 to 65535, decimal
//	pin         = "key=" 64 hex digits      ; the node's ed25519 public key
//	            / "id=" NodeID             ; 26 base32 characters
//
// For example:
//
//	192.0.2.10:7946
//	relay.example.com:7946,key=9fef98de5da4178916330a2aa1c638cb0ee4ca464760c3a4c7495146d3315ffd
//	[2001:db8::1]:7946,id=cajvpajajyttukj7y4mrbebzsu
//	id=cajvpajajyttukj7y4mrbebzsu
//
// It is the form netnode's --peer and --relay-node flags take. The
// address comes first; each pin at most once, in either order. The
// unspecified addresses (0.0.0.0, [::]) name no node and are refused. With
// no address the node is reached by its NodeID through routes and relays
// (mesh.ConnectNode), so a pin is then required. A key pin makes the
// handshake one round trip and must be the key that answers; an id pin
// must be the NodeID that answers; given both, they must agree. With no
// pin, whichever node answers at the address is accepted: use that only
// on networks you trust.
//
// A DNS name is kept as a name: Resolve looks it up every time it is
// called, so a caller that resolves before each connection attempt
// follows the name when its addresses change. The package imports only
// package identity and the standard library.
package dialaddr

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/netmesh/netmesh/identity"
)

const (
	// maxLen bounds a dial string, bytes: the longest valid one (a
	// 253-byte DNS name, a port, both pins) is under 380.
	maxLen = 512
	// maxDNSName and maxDNSLabel are RFC 1035's limits, bytes, without
	// the optional trailing dot.
	maxDNSName  = 253
	maxDNSLabel = 63
)

// ErrSyntax is wrapped by every Parse error; the error text says what is
// wrong and quotes the dial string.
var ErrSyntax = errors.New("dialaddr: bad dial string")

// Addr is a parsed dial string. Its zero value is not valid.
type Addr struct {
	// Host is a DNS name or an IP address (IPv6 without brackets, with
	// its zone if any); empty when the node is reached by NodeID alone.
	Host string
	// Port is the UDP port; 0 when Host is empty.
	Port uint16
	// Key is the pinned ed25519 public key, or nil.
	Key ed25519.PublicKey
	// ID is the pinned NodeID as written, or zero (see NodeID).
	ID identity.NodeID
}

// Parse parses a dial string (see the package documentation).
func Parse(s string) (Addr, error) {
	var a Addr
	if len(s) > maxLen {
		return a, fmt.Errorf("%w: %d bytes, limit %d", ErrSyntax, len(s), maxLen)
	}
	bad := func(format string, args ...any) (Addr, error) {
		return Addr{}, fmt.Errorf("%w %q: %s", ErrSyntax, s, fmt.Sprintf(format, args...))
	}
	var sawKey, sawID bool
	for i, part := range strings.Split(s, ",") {
		name, value, isPin := strings.Cut(part, "=")
		switch {
		case part == "" && i > 0:
			return bad("empty part between commas")
		case !isPin && i == 0:
			if err := a.parseAddress(part); err != nil {
				return bad("%v", err)
			}
		case !isPin:
			return bad("%q: the address must come first, and pins are key=HEX or id=NODEID", part)
		case name == "key" && !sawKey:
			sawKey = true
			key, err := hex.DecodeString(value)
			if err != nil || len(key) != ed25519.PublicKeySize {
				return bad("key=%s: want %d hex digits", value, 2*ed25519.PublicKeySize)
			}
			a.Key = key
		case name == "id" && !sawID:
			sawID = true
			id, err := identity.ParseNodeID(value)
			if err != nil || id.IsZero() {
				return bad("id=%s: not a NodeID", value)
			}
			a.ID = id
		case name == "key" || name == "id":
			return bad("%s= given twice", name)
		default:
			return bad("%q: unknown pin, want key=HEX or id=NODEID", part)
		}
	}
	if a.Key != nil && !a.ID.IsZero() && identity.NodeIDFromKey(a.Key) != a.ID {
		return bad("id=%s does not match the key, whose NodeID is %s", a.ID, identity.NodeIDFromKey(a.Key))
	}
	if a.Host == "" && a.Key == nil && a.ID.IsZero() {
		return bad("no address and no pin")
	}
	return a, nil
}

// parseAddress sets Host and Port from "host:port".
func (a *Addr) parseAddress(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("address %q: want host:port", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	bracketed := strings.HasPrefix(s, "[")
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil && bracketed:
		return fmt.Errorf("address %q: only an IPv6 address goes in brackets", s)
	case err != nil:
		if err := checkDNSName(host); err != nil {
			return err
		}
	case ip.Is6() != bracketed:
		return fmt.Errorf("address %q: an IPv6 address, and only one, goes in brackets", s)
	case ip.IsUnspecified():
		return fmt.Errorf("address %q: the unspecified address names no node", s)
	}
	a.Host, a.Port = host, uint16(p)
	return nil
}

// checkDNSName accepts a host name of letters, digits and hyphens in
// dot-separated labels, as RFC 1123 allows, with an optional trailing dot.
func checkDNSName(name string) error {
	n := strings.TrimSuffix(name, ".")
	if n == "" || len(n) > maxDNSName {
		return fmt.Errorf("host %q: not an IP address or a DNS name of 1 to %d bytes", name, maxDNSName)
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" || len(label) > maxDNSLabel || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q: label %q must be 1 to %d bytes, without a leading or trailing hyphen", name, label, maxDNSLabel)
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("host %q: %q is not a letter, digit or hyphen", name, c)
			}
		}
	}
	return nil
}

// String returns the dial string in canonical form: the address, then
// the key pin, then the id pin, as Parse reads them back.
func (a Addr) String() string {
	var b strings.Builder
	if a.Host != "" {
		b.WriteString(net.JoinHostPort(a.Host, strconv.Itoa(int(a.Port))))
	}
	if a.Key != nil {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString("key=")
		b.WriteString(hex.EncodeToString(a.Key))
	}
	if !a.ID.IsZero() {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString("id=")
		b.WriteString(a.ID.String())
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler, for config files.
func (a Addr) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with Parse.
func (a *Addr) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*a = p
	return nil
}

// NodeID returns the node the dial string pins: ID, else the NodeID of
// Key, else the zero NodeID (no pin).
func (a Addr) NodeID() identity.NodeID {
	if a.ID.IsZero() && a.Key != nil {
		return identity.NodeIDFromKey(a.Key)
	}
	return a.ID
}

// Resolve returns the UDP addresses of Host with Port: the address
// itself for an IP address, else the addresses a DNS lookup with r
// returns now (nil r means net.DefaultResolver). IPv4 addresses come back
// as IPv4, never IPv4-mapped IPv6. It fails for a dial string without an
// address.
func (a Addr) Resolve(ctx context.Context, r *net.Resolver) ([]netip.AddrPort, error) {
	if a.Host == "" {
		return nil, fmt.Errorf("dialaddr: %s has no address", a)
	}
	if ip, err := netip.ParseAddr(a.Host); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), a.Port)}, nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", a.Host)
	if err != nil {
		return nil, fmt.Errorf("dialaddr: resolving %s: %w", a.Host, err)
	}
	out := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(ip.Unmap(), a.Port)
	}
	return out, nil
}
