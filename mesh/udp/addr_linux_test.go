//go:build linux

package udp

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestSockaddrRoundTrip(t *testing.T) {
	r := &recvState{zones: map[uint32]string{}}
	for _, tt := range []struct {
		in   string
		v6   bool
		want string // "" means not encodable
	}{
		{"1.2.3.4:5", false, "1.2.3.4:5"},
		{"[::ffff:1.2.3.4]:5", false, "1.2.3.4:5"},
		{"1.2.3.4:65535", true, "1.2.3.4:65535"}, // mapped on the wire, unmapped back
		{"[2001:db8::1]:443", true, "[2001:db8::1]:443"},
		{"[fe80::1%7]:9", true, "[fe80::1%7]:9"},
		{"[2001:db8::1]:443", false, ""},
	} {
		var sa unix.RawSockaddrInet6
		n := encodeAddr(&sa, netip.MustParseAddrPort(tt.in), tt.v6)
		if tt.want == "" {
			if n != 0 {
				t.Errorf("%s v6=%v: encoded, want refusal", tt.in, tt.v6)
			}
			continue
		}
		if got := r.decodeAddr(&sa); n == 0 || got.String() != tt.want {
			t.Errorf("%s v6=%v: got %v (len %d), want %s", tt.in, tt.v6, got, n, tt.want)
		}
	}
}

func TestGROSegment(t *testing.T) {
	ctrl := make([]byte, ctrlSize)
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
	cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_GRO
	cm.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&ctrl[unix.CmsgLen(0)])) = 1200
	if got := groSegment(ctrl); got != 1200 {
		t.Fatalf("groSegment = %d", got)
	}
	if got := groSegment(ctrl[:unix.CmsgLen(0)]); got != 0 {
		t.Fatalf("truncated control: groSegment = %d, want 0", got)
	}
	cm.Type = unix.UDP_SEGMENT
	if got := groSegment(ctrl); got != 0 {
		t.Fatalf("other cmsg: groSegment = %d, want 0", got)
	}
}
