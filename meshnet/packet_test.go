package meshnet_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/meshnet"
)

// TestPacketConnRoundTrip sends datagrams both ways with the addresses
// ReadFrom reports, on a direct and on a relayed path.
func TestPacketConnRoundTrip(t *testing.T) {
	for _, path := range []struct {
		name string
		pair func(testing.TB) (*mesh.Mesh, *mesh.Mesh)
	}{{"direct", directPair}, {"relayed", relayedPair}} {
		t.Run(path.name, func(t *testing.T) {
			a, b := path.pair(t)
			pa, pb := meshnet.ListenPacket(a), meshnet.ListenPacket(b)
			defer pa.Close()
			defer pb.Close()
			if pa.LocalAddr().String() != a.ID().String() {
				t.Fatalf("local address %s, want %s", pa.LocalAddr(), a.ID())
			}
			// Datagrams may be lost: ask until an answer comes back.
			buf := make([]byte, mesh.MaxDatagramSize)
			pb.SetReadDeadline(time.Now().Add(setupTimeout))
			answered := make(chan error, 1)
			go func() {
				n, from, err := pb.ReadFrom(buf)
				if err == nil {
					if from.String() != a.ID().String() || string(buf[:n]) != "ping" {
						err = errors.New("b read " + string(buf[:n]) + " from " + from.String())
					} else {
						_, err = pb.WriteTo([]byte("pong"), from)
					}
				}
				answered <- err
			}()
			got := make([]byte, 16)
			for {
				if _, err := pa.WriteTo([]byte("ping"), meshnet.Addr{Node: b.ID()}); err != nil {
					t.Fatal(err)
				}
				pa.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				n, from, err := pa.ReadFrom(got)
				if err == nil {
					if from.String() != b.ID().String() || string(got[:n]) != "pong" {
						t.Fatalf("a read %q from %s", got[:n], from)
					}
					break
				}
				if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
					t.Fatal(err)
				}
			}
			if err := <-answered; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPacketConnErrors checks the failures a caller can cause: a datagram
// too large, an address that names no node, a past deadline, and calls
// after Close, which also ends a pending ReadFrom.
func TestPacketConnErrors(t *testing.T) {
	a, b := directPair(t)
	pa := meshnet.ListenPacket(a)
	to := meshnet.Addr{Node: b.ID()}
	if _, err := pa.WriteTo(make([]byte, mesh.MaxDatagramSize+1), to); !errors.Is(err, mesh.ErrTooLarge) {
		t.Errorf("oversized datagram: %v, want mesh.ErrTooLarge", err)
	}
	if _, err := pa.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}); err == nil {
		t.Error("WriteTo a UDP address succeeded")
	}
	pa.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := pa.WriteTo([]byte("x"), to); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("WriteTo past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	pa.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := pa.ReadFrom(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadFrom past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	pa.SetDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := pa.ReadFrom(make([]byte, 1))
		done <- err
	}()
	pa.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("pending ReadFrom after Close: %v, want net.ErrClosed", err)
	}
	if _, err := pa.WriteTo([]byte("x"), to); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v, want net.ErrClosed", err)
	}
	if err := pa.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v, want net.ErrClosed", err)
	}
}

// TestPacketConnWriteWaitsForQueue checks that WriteTo waits out a full
// send queue instead of failing with back-pressure.
func TestPacketConnWriteWaitsForQueue(t *testing.T) {
	a := startNode(t, mesh.Config{SendQueue: 1})
	b := startNode(t, mesh.Config{})
	connect(t, a, b)
	pa := meshnet.ListenPacket(a)
	defer pa.Close()
	pa.SetWriteDeadline(time.Now().Add(setupTimeout))
	payload := make([]byte, mesh.MaxDatagramSize)
	to := meshnet.Addr{Node: b.ID()}
	for i := range 2000 {
		if _, err := pa.WriteTo(payload, to); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	if a.Stats().SendBackpressure == 0 {
		t.Fatal("the send queue never filled; the test proves nothing")
	}
}

// TestPacketConnUnknownNode checks that WriteTo a node no route leads to
// fails rather than waiting.
func TestPacketConnUnknownNode(t *testing.T) {
	a, _ := directPair(t)
	pa := meshnet.ListenPacket(a)
	defer pa.Close()
	if _, err := pa.WriteTo([]byte("x"), meshnet.Addr{Node: identity.NodeID{1}}); !errors.Is(err, mesh.ErrNoRoute) {
		t.Fatalf("WriteTo an unknown node: %v, want mesh.ErrNoRoute", err)
	}
}
