//go:build linux

package udp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Guards ListenConfig.Accept: the kernel hands over only datagrams whose
// first byte is in the range, and STUN messages; everything else is
// dropped before the socket and counted in Stats.Dropped.
func TestAcceptFilter(t *testing.T) {
	lc := ListenConfig{Accept: &ByteRange{Min: 0xE1, Max: 0xE6}}
	c, err := lc.Listen("udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stun := make([]byte, 20)
	stun[1] = 1 // Binding request
	binary.BigEndian.PutUint32(stun[4:], stunMagicCookie)
	notSTUN := append([]byte(nil), stun...)
	notSTUN[4] ^= 1
	kept := [][]byte{{0xE1, 1}, {0xE6}, stun}
	dropped := [][]byte{{0x42, 1, 2}, {0xE7}, {0xE0}, notSTUN, {}, {0x03, 0, 0}}
	checkFilter(t, c, kept, dropped)
}

// Guards ListenConfig.Match: datagrams of the matched first byte arrive
// only when their word matches; short ones and mismatches are dropped;
// other accepted datagrams are not affected.
func TestMatchFilter(t *testing.T) {
	lc := ListenConfig{
		Accept: &ByteRange{Min: 0xE1, Max: 0xE6},
		Match:  &WordMatch{First: 0xE6, Offset: 4, Mask: 0x0000F0FF, Value: 0x0000A012},
	}
	c, err := lc.Listen("udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kept := [][]byte{
		{0xE6, 0, 0, 0, 0x77, 0x66, 0xA5, 0x12, 9},
		{0xE6, 1, 2, 3, 0, 0, 0xAF, 0x12},
		{0xE5, 1},
	}
	dropped := [][]byte{
		{0xE6, 0, 0, 0, 0x77, 0x66, 0xB5, 0x12, 9}, // masked nibble differs
		{0xE6, 0, 0, 0, 0, 0, 0xA0, 0x13},          // last byte differs
		{0xE6, 0, 0, 0, 0, 0, 0xA0},                // too short for the word
		{0xE7, 0, 0, 0, 0, 0, 0xA0, 0x12},          // outside Accept
	}
	checkFilter(t, c, kept, dropped)
}

// checkFilter sends c the dropped datagrams then the kept ones, and checks
// that exactly the kept ones arrive, in order, and that the kernel
// counted the others.
func checkFilter(t *testing.T, c *BatchConn, kept, dropped [][]byte) {
	t.Helper()
	s, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(c.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, b := range append(append([][]byte(nil), dropped...), kept...) {
		if _, err := s.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	msgs := make([]Message, 8)
	var got [][]byte
	for len(got) < len(kept) {
		n, err := c.ReadBatch(msgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs[:n] {
			got = append(got, append([]byte(nil), m.Buf...))
		}
	}
	for i, b := range got {
		if string(b) != string(kept[i]) {
			t.Fatalf("datagram %d: %x, want %x (all: %x)", i, b, kept[i], got)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for c.Stats().Dropped != uint64(len(dropped)) {
		if time.Now().After(deadline) {
			t.Fatalf("Dropped = %d, want %d", c.Stats().Dropped, len(dropped))
		}
		time.Sleep(time.Millisecond)
	}
}
