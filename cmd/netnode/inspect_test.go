package main

import (
	"strings"
	"testing"
	"time"
)

// health shows the session's cipher suite, and the stream MTU once the
// peer's streams confirmed one (nothing about it before).
func TestPrintHealthStreamMTU(t *testing.T) {
	p := peerInfo{NodeID: "5dnyl4524h7qeozyzjladmtzya", Up: true, Path: "direct", Endpoint: "192.0.2.11:7946", CipherSuite: "AESGCM"}
	var b strings.Builder
	printHealth(&b, p, time.Now())
	if strings.Contains(b.String(), "stream mtu") {
		t.Errorf("stream mtu shown before any stream:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "cipher suite") || !strings.Contains(b.String(), "AESGCM") {
		t.Errorf("no cipher suite line:\n%s", b.String())
	}
	p.StreamMTU = 8938
	b.Reset()
	printHealth(&b, p, time.Now())
	if !strings.Contains(b.String(), "8938 bytes per frame") {
		t.Errorf("no stream mtu line:\n%s", b.String())
	}
}

// status names the dials that fell back from AES-GCM, and only when
// there were any.
func TestPrintStatusSuiteFallbacks(t *testing.T) {
	var b strings.Builder
	printStatus(&b, statusInfo{})
	if strings.Contains(b.String(), "suite fallbacks") {
		t.Errorf("fallbacks shown without any:\n%s", b.String())
	}
	b.Reset()
	printStatus(&b, statusInfo{SuiteFallbacks: 3})
	if !strings.Contains(b.String(), "3 dials fell back to ChaCha20-Poly1305") {
		t.Errorf("no fallback line:\n%s", b.String())
	}
}
