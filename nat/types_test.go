//go:build nat

package nat

import (
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	ap := netip.MustParseAddrPort
	local := []netip.AddrPort{ap("10.0.1.2:4000")}
	s1, s2 := ap("198.51.100.2:3478"), ap("198.51.100.3:3478")
	for _, tc := range []struct {
		name string
		obs  []observation
		want Type
	}{
		{"nothing", nil, Unknown},
		{"one destination", []observation{{s1, ap("198.51.100.11:4000")}}, Unknown},
		{"open", []observation{{s1, ap("10.0.1.2:4000")}}, Open},
		{"cone", []observation{{s1, ap("198.51.100.11:4000")}, {s2, ap("198.51.100.11:4000")}}, Cone},
		{"symmetric", []observation{{s1, ap("198.51.100.11:4000")}, {s2, ap("198.51.100.11:4001")}}, Symmetric},
		{"rebinding to one destination is not symmetric", []observation{{s1, ap("198.51.100.11:4000")}, {s1, ap("198.51.100.11:5000")}}, Unknown},
	} {
		if got, _ := classify(tc.obs, local); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDecideMatrix(t *testing.T) {
	for self := range numTypes {
		for other := range numTypes {
			punch, why := Decide(self, other)
			want := !(self == Symmetric && other == Symmetric)
			if punch != want || (!punch && why == "") {
				t.Errorf("Decide(%v, %v) = %v %q", self, other, punch, why)
			}
			if p2, _ := Decide(other, self); p2 != punch {
				t.Errorf("Decide is not symmetric for %v, %v", self, other)
			}
		}
	}
}
