package channel

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

var tokenTestExpiry = time.Unix(1_800_000_000, 0)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "sensors/eu/temp", "x-y_z.v1:2", strings.Repeat("a", MaxNameLen)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "A", "a b", "é", "a\x00", strings.Repeat("a", MaxNameLen+1), "a*"} {
		if err := ValidateName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// Token channels follow the same rules: every valid name can be put in
	// a token and vice versa.
	iss, _ := identity.Generate()
	for _, s := range []string{"a", "Ab", strings.Repeat("a", MaxNameLen+1), "x/y:z"} {
		_, err := identity.IssueToken(iss, identity.TokenGrant{Subject: iss.PublicKey(), Perms: identity.PermSubscribe, Channel: s, Expiry: tokenTestExpiry})
		if (err == nil) != (ValidateName(s) == nil) {
			t.Errorf("%q: token says %v, name says %v", s, err, ValidateName(s))
		}
	}
}

func TestSubnetID(t *testing.T) {
	rack, zone, region, other := SubnetID{3, 1, 7}, SubnetID{3, 1}, SubnetID{3}, SubnetID{3, 2}
	if p, ok := rack.Parent(); !ok || p != zone {
		t.Fatalf("parent of %s: %s %v", rack, p, ok)
	}
	if p, ok := zone.Parent(); !ok || p != region {
		t.Fatal("parent of zone")
	}
	if _, ok := region.Parent(); ok {
		t.Fatal("top level has a parent")
	}
	if _, ok := (SubnetID{}).Parent(); ok {
		t.Fatal("zero has a parent")
	}
	for _, c := range []struct {
		a, b SubnetID
		want bool
	}{
		{region, rack, true}, {zone, rack, true}, {rack, zone, false}, {rack, rack, false},
		{other, rack, false}, {SubnetID{}, rack, false}, {SubnetID{4}, rack, false},
		{SubnetID{1, 2, 3, 4}, SubnetID{1, 2, 3, 5}, false}, {SubnetID{1, 2, 3}, SubnetID{1, 2, 3, 5}, true},
	} {
		if got := c.a.IsAncestorOf(c.b); got != c.want {
			t.Errorf("%s ancestor of %s: %v", c.a, c.b, got)
		}
	}
	for _, s := range []string{"3.1.7.0", "0.0.0.0", "255.255.255.255"} {
		id, err := ParseSubnetID(s)
		if err != nil || id.String() != s {
			t.Errorf("%q: %s %v", s, id, err)
		}
		var u SubnetID
		b, _ := id.MarshalText()
		if err := u.UnmarshalText(b); err != nil || u != id {
			t.Errorf("text %q", b)
		}
	}
	for _, s := range []string{"", "3.1.7", "3.1.7.0.0", "3.0.1.0", "256.0.0.0", "03.0.0.0", "-1.0.0.0", "a.0.0.0", "3..0.0"} {
		if _, err := ParseSubnetID(s); !errors.Is(err, ErrInvalidSubnet) {
			t.Errorf("%q: %v", s, err)
		}
	}
	var u SubnetID
	if u.UnmarshalText([]byte("x")) == nil {
		t.Error("UnmarshalText accepted junk")
	}
}

func TestSubnetPolicy(t *testing.T) {
	p := SubnetPolicy{Rules: []SubnetRule{
		{Tag: "rack:7", Subnet: SubnetID{3, 1, 7}},
		{Tag: "region:eu", Subnet: SubnetID{3}},
	}}
	for _, c := range []struct {
		tags []string
		want SubnetID
	}{
		{[]string{"region:eu"}, SubnetID{3}},
		{[]string{"region:eu", "rack:7"}, SubnetID{3, 1, 7}}, // first rule wins
		{[]string{"gpu"}, SubnetID{}},
		{[]string{"region:eu", SubnetTag(SubnetID{9, 9})}, SubnetID{9, 9}}, // pinned
		{[]string{"region:eu", "subnet:3.0.1.0", "subnet:x"}, SubnetID{3}}, // invalid pins ignored
		{[]string{SubnetTag(SubnetID{})}, SubnetID{}},                      // zero pin ignored
	} {
		if got := p.Subnet(capability.Set{Tags: c.tags}); got != c.want {
			t.Errorf("%v: %s, want %s", c.tags, got, c.want)
		}
	}
	if err := (capability.Set{Tags: []string{SubnetTag(SubnetID{255, 255, 255, 255})}}).Validate(); err != nil {
		t.Errorf("subnet tag is not a valid capability tag: %v", err)
	}
	for _, bad := range []SubnetRule{{Tag: "", Subnet: SubnetID{1}}, {Tag: "x", Subnet: SubnetID{}}, {Tag: "x", Subnet: SubnetID{1, 0, 1}}} {
		if err := (SubnetPolicy{Rules: []SubnetRule{bad}}).Validate(); !errors.Is(err, ErrInvalidSubnet) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func TestVisible(t *testing.T) {
	zero := SubnetID{}
	if !Global.Visible(zero, zero) || SubnetLocal.Visible(zero, zero) || ParentVisible.Visible(zero, zero) {
		t.Fatal("zero subnets")
	}
	if Visibility(9).Visible(SubnetID{1}, SubnetID{1}) || Visibility(9).String() != "visibility(9)" {
		t.Fatal("unknown visibility")
	}
}

func TestReasonAndProblemStrings(t *testing.T) {
	for r := Reason(0); r <= reasonMax+1; r++ {
		if r.String() == "" {
			t.Errorf("reason %d", r)
		}
	}
	if Reason(0).String() != "reason(0)" || TokenOK.Err() != nil || TokenProblem(99).Err() != nil {
		t.Fatal("out of range")
	}
	if tokenProblemOf(errors.New("other")) != TokenMalformed {
		t.Fatal("unknown token error")
	}
	e := &RejectError{Reason: ReasonToken, Token: TokenExpired, Evicted: true, Channel: "c"}
	if !strings.Contains(e.Error(), "ended") || !strings.Contains(e.Error(), "expired") {
		t.Fatal(e.Error())
	}
}
