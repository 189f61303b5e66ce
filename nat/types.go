//go:build nat

package nat

import (
	"net/netip"
	"slices"
)

// Decide is the pair-type matrix: it reports whether two nodes with NAT
// types self and other should try to punch, and if not, why. Only a
// symmetric NAT on both sides is skipped: each side's probes leave from a
// port the other cannot predict, and both filter what they did not send
// to. Every other pair punches:
//
//   - Open or Cone with anything: the cone side's mapping is the one the
//     coordinator saw, so the other side's probes reach it; a symmetric
//     peer then answers from its new port, which a full or
//     address-restricted cone accepts. Against a port-restricted cone the
//     symmetric pair fails after the punch window.
//   - Unknown with anything but Symmetric: trying costs a few probes.
//
// The matrix is symmetric, so both sides reach the same decision.
func Decide(self, other Type) (punch bool, reason string) {
	if self == Symmetric && other == Symmetric {
		return false, "symmetric NAT on both sides"
	}
	return true, ""
}

// observation is one reflex report: dst saw our socket as mapped.
type observation struct {
	dst    netip.AddrPort
	mapped netip.AddrPort
}

// classify derives the NAT type and the reflex from observations. locals
// are the node's own socket addresses.
//
// A destination with a non-public address (loopback, RFC 1918, RFC 4193,
// link-local, RFC 6598) is usually on the node's side of its NAT: a peer on
// the same LAN or host sees the node's private address, which says nothing
// about the mapping the Internet sees (and, being a local address, would
// make a NATed node look open). When any public destination answered, only
// public destinations count; a mesh without any (a LAN, tests on loopback)
// classifies on what it has.
func classify(obs []observation, locals []netip.AddrPort) (Type, netip.AddrPort) {
	if slices.ContainsFunc(obs, func(o observation) bool { return publicIP(o.dst.Addr()) }) {
		obs = slices.DeleteFunc(slices.Clone(obs), func(o observation) bool { return !publicIP(o.dst.Addr()) })
	}
	if len(obs) == 0 {
		return Unknown, netip.AddrPort{}
	}
	for _, o := range obs {
		for _, l := range locals {
			if o.mapped == l {
				return Open, o.mapped
			}
		}
	}
	// The latest report per destination counts: a NAT may rebind.
	per := map[netip.AddrPort]netip.AddrPort{}
	for _, o := range obs {
		per[o.dst] = o.mapped
	}
	reflex := obs[len(obs)-1].mapped
	if len(per) < 2 {
		return Unknown, reflex
	}
	for _, m := range per {
		if m != reflex {
			return Symmetric, reflex
		}
	}
	return Cone, reflex
}

// publicIP reports whether ip is an Internet address: global unicast and
// not private (RFC 1918, RFC 4193) or shared (RFC 6598, carrier-grade
// NAT).
func publicIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !cgnat.Contains(ip)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")
