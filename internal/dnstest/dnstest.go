// Package dnstest gives tests a DNS resolver whose answers they control:
// a net.Resolver that talks, over an in-memory conn, to a server that
// asks a function of the test for each name. It touches no network and
// no system configuration.
package dnstest

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Resolver returns a resolver that answers an A query for a name (fully
// qualified, with the trailing dot) with the address answer returns, and
// with NXDOMAIN when it returns false. AAAA queries get no records.
// answer may be called from several goroutines at once.
func Resolver(t testing.TB, answer func(name string) (netip.Addr, bool)) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go serve(t, server, answer)
		return client, nil
	}}
}

// serve answers length-prefixed DNS queries (DNS over TCP framing, which
// Go's resolver uses on a conn that is not a PacketConn) until c closes.
func serve(t testing.TB, c net.Conn, answer func(string) (netip.Addr, bool)) {
	defer c.Close()
	for {
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		var msg dnsmessage.Message
		if err := msg.Unpack(q); err != nil || len(msg.Questions) != 1 {
			t.Errorf("dnstest: bad query: %v", err)
			return
		}
		question := msg.Questions[0]
		msg.Header.Response, msg.Header.Authoritative = true, true
		ip, ok := answer(question.Name.String())
		switch {
		case !ok:
			msg.Header.RCode = dnsmessage.RCodeNameError
		case question.Type == dnsmessage.TypeA && ip.Is4():
			msg.Answers = []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: question.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 1},
				Body:   &dnsmessage.AResource{A: ip.As4()},
			}}
		}
		out, err := msg.Pack()
		if err != nil {
			t.Errorf("dnstest: %v", err)
			return
		}
		binary.BigEndian.PutUint16(n[:], uint16(len(out)))
		if _, err := c.Write(append(n[:], out...)); err != nil {
			return
		}
	}
}
