package main

import (
	"strings"
	"testing"
	"time"
)

// health shows the stream MTU once the peer's streams confirmed one, and
// says nothing about it before.
func TestPrintHealthStreamMTU(t *testing.T) {
	p := peerInfo{NodeID: "5dnyl4524h7qeozyzjladmtzya", Up: true, Path: "direct", Endpoint: "192.0.2.11:7946"}
	var b strings.Builder
	printHealth(&b, p, time.Now())
	if strings.Contains(b.String(), "stream mtu") {
		t.Errorf("stream mtu shown before any stream:\n%s", b.String())
	}
	p.StreamMTU = 8938
	b.Reset()
	printHealth(&b, p, time.Now())
	if !strings.Contains(b.String(), "8938 bytes per frame") {
		t.Errorf("no stream mtu line:\n%s", b.String())
	}
}
