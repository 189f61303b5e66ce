package capability

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"abc", "gpu-box_3", "GPU-Box-3", "a23456789012345678901234567890123456789012345678901234567890abcd"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", "gpu box", "gpu.box", "gpü-box", "a23456789012345678901234567890123456789012345678901234567890abcde"} {
		if err := ValidateName(bad); !errors.Is(err, ErrInvalidSet) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidSet", bad, err)
		}
	}
	if _, err := New(testID(t, 1), nopTransport{}, Config{Name: "x"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with name %q: %v, want ErrInvalidConfig", "x", err)
	}
	// In a set, only the engine sets it, and it must be a valid name.
	if err := (Set{Metadata: map[string]string{NameKey: "no spaces"}}).Validate(); !errors.Is(err, ErrInvalidSet) {
		t.Errorf("a set with an invalid name: %v", err)
	}
}

// A node's name rides in its signed announcement; other nodes find it by
// name (any case), and see when two nodes claim one name.
func TestNamesLookupAndDuplicates(t *testing.T) {
	names := []string{"gpu-box-1", "GPU-Box-1", "cpu-box", ""}
	s := newSimNet(t, 5, Config{})
	for i, name := range names {
		s.order[i].e.cfg.Name = name
		s.link(i, 4)
		if err := s.order[i].e.Announce(Set{Tags: []string{fmt.Sprintf("n%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	s.settle()
	ix := s.order[4].e.Index()
	ids := func(nodes []*Node) []string {
		var got []string
		for _, n := range nodes {
			got = append(got, n.ID.Short())
		}
		slices.Sort(got)
		return got
	}
	want := []string{s.order[0].id.NodeID().Short(), s.order[1].id.NodeID().Short()}
	slices.Sort(want)
	if got := ids(ix.LookupName("gpu-BOX-1")); !slices.Equal(got, want) {
		t.Errorf("LookupName(gpu-BOX-1) = %v, want both claimants %v", got, want)
	}
	if got := ix.LookupName("cpu-box"); len(got) != 1 || got[0].Name() != "cpu-box" || got[0].ID != s.order[2].id.NodeID() {
		t.Errorf("LookupName(cpu-box) = %v", got)
	}
	if got := ix.LookupName("nobody"); len(got) != 0 {
		t.Errorf("LookupName(nobody) = %v", got)
	}
	if got := ix.DuplicateNames(); fmt.Sprint(got) != "[gpu-box-1]" {
		t.Errorf("DuplicateNames = %v", got)
	}
	if h := s.order[4].e.Health(); h.DuplicateNames != 1 {
		t.Errorf("Health.DuplicateNames = %d", h.DuplicateNames)
	}
	// Names are filterable metadata too.
	if got := ix.FindNodes(Equals(NameKey, "cpu-box")); len(got) != 1 {
		t.Errorf("filter on the name found %d nodes", len(got))
	}
	// One claimant leaves: no duplicate any more.
	s.order[1].e.Withdraw()
	s.settle()
	if got := ix.DuplicateNames(); len(got) != 0 || len(ix.LookupName("gpu-box-1")) != 1 {
		t.Errorf("after one claimant left: duplicates %v, claimants %d", got, len(ix.LookupName("gpu-box-1")))
	}
	// Applications and layers cannot set the name key themselves.
	if err := s.order[3].e.Announce(Set{Metadata: map[string]string{NameKey: "sneaky"}}); !errors.Is(err, ErrInvalidSet) {
		t.Errorf("announcing the name key directly: %v, want ErrInvalidSet", err)
	}
	if err := s.order[3].e.AnnounceLayer("x1", Set{Metadata: map[string]string{"node:other": "v"}}); !errors.Is(err, ErrInvalidSet) {
		t.Errorf("announcing a node: key from a layer: %v, want ErrInvalidSet", err)
	}
}
