package capability

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// selfSet returns what node i announces, as its peer j indexed it once
// the rate limit let it out.
func selfSet(t *testing.T, s *simNet, i, j int) Set {
	t.Helper()
	s.clock.Advance(s.order[i].e.cfg.MinAnnounceInterval)
	s.order[i].e.Tick()
	s.settle()
	n, ok := s.order[j].e.Index().Lookup(s.order[i].id.NodeID())
	if !ok {
		t.Fatalf("node %d does not know node %d", j, i)
	}
	return n.Set
}

// A layer's part of the set survives the application's announcements:
// AnnounceCapabilities once dropped the rpc:<service> tags, and services
// had no responders until the application called UpdateCapabilities.
func TestLayerPartsSurviveAnnounce(t *testing.T) {
	s := newSimNet(t, 2, Config{})
	s.link(0, 1)
	e := s.order[0].e
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.AnnounceLayer("rpc", Set{Tags: []string{"rpc:echo"}}))
	must(e.AnnounceLayer("mesh", Set{Tags: []string{"subnet:1"}, Metadata: map[string]string{"reflex": "203.0.113.1:7"}}))
	must(e.Announce(Set{Tags: []string{"gpu", "rpc:echo"}, Metadata: map[string]string{"reflex": "app's", "zone": "a"}}))
	got := selfSet(t, s, 0, 1)
	if want := []string{"gpu", "rpc:echo", "subnet:1"}; !slices.Equal(got.Tags, want) {
		t.Errorf("tags %v, want %v (each once)", got.Tags, want)
	}
	if got.Metadata["reflex"] != "203.0.113.1:7" || got.Metadata["zone"] != "a" {
		t.Errorf("metadata %v: a layer's value replaces the application's", got.Metadata)
	}
	must(e.Announce(Set{Tags: []string{"cpu"}}))
	if got := selfSet(t, s, 0, 1); !got.HasTag("rpc:echo") || !got.HasTag("subnet:1") || got.HasTag("gpu") {
		t.Errorf("after the application announced again: %v, want its new tags and the layers'", got.Tags)
	}
	must(e.AnnounceLayer("rpc", Set{}))
	if got := selfSet(t, s, 0, 1); got.HasTag("rpc:echo") || !got.HasTag("cpu") {
		t.Errorf("after rpc removed its part: %v", got.Tags)
	}
	if a := e.Announced(""); !slices.Equal(a.Tags, []string{"cpu"}) {
		t.Errorf("Announced(\"\") = %v", a)
	}
	must(e.Update("", func(cur Set) Set { cur.Tags = append(cur.Tags, "tpu"); return cur }))
	if got := selfSet(t, s, 0, 1); !got.HasTag("cpu") || !got.HasTag("tpu") {
		t.Errorf("after Update: %v", got.Tags)
	}
}

// Parts that together break a limit are refused, and nothing changes.
func TestLayerPartsTogetherValidated(t *testing.T) {
	s := newSimNet(t, 1, Config{})
	e := s.order[0].e
	var many []string
	for i := range MaxTags {
		many = append(many, fmt.Sprintf("t%02d", i))
	}
	if err := e.AnnounceLayer("big", Set{Tags: many}); err != nil {
		t.Fatal(err)
	}
	if err := e.Announce(Set{Tags: []string{"one-more"}}); !errors.Is(err, ErrInvalidSet) {
		t.Fatalf("65 tags in all: %v, want ErrInvalidSet", err)
	}
	if a := e.Announced(""); len(a.Tags) != 0 {
		t.Errorf("the refused part was kept: %v", a)
	}
	if err := e.AnnounceLayer("Bad Name", Set{}); !errors.Is(err, ErrInvalidSet) {
		t.Errorf("invalid layer name: %v", err)
	}
	if n, _ := e.Index().Lookup(s.order[0].id.NodeID()); len(n.Set.Tags) != MaxTags {
		t.Errorf("self shows %d tags, want the %d announced", len(n.Set.Tags), MaxTags)
	}
}

// RefreshLayer announces a layer's part only while the node announces:
// it makes a silent node announce nothing, and it does not undo a
// Withdraw (the mesh's reflex, learned on its own, once put a departing
// node back in its peers' indexes); the part it kept goes out with the
// next announcement.
func TestRefreshLayerOnlyWhileAnnounced(t *testing.T) {
	s := newSimNet(t, 2, Config{})
	s.link(0, 1)
	e, self := s.order[0].e, s.order[0].id.NodeID()
	reflex := func(a string) Set { return Set{Metadata: map[string]string{"reflex": a}} }
	if err := e.RefreshLayer("mesh", reflex("203.0.113.1:7")); err != nil {
		t.Fatal(err)
	}
	s.settle()
	if _, ok := e.Index().Lookup(self); ok || e.Stats().Broadcasts != 0 {
		t.Fatalf("a node that never announced announced (broadcasts %d)", e.Stats().Broadcasts)
	}
	if err := e.Announce(Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	if got := selfSet(t, s, 0, 1); got.Metadata["reflex"] != "203.0.113.1:7" || !got.HasTag("gpu") {
		t.Fatalf("the first announcement lacks the kept part: %v", got)
	}
	if err := e.RefreshLayer("mesh", reflex("203.0.113.2:7")); err != nil {
		t.Fatal(err)
	}
	if got := selfSet(t, s, 0, 1); got.Metadata["reflex"] != "203.0.113.2:7" {
		t.Fatalf("while announcing, the refresh did not go out: %v", got)
	}
	e.Withdraw()
	s.settle()
	if err := e.RefreshLayer("mesh", reflex("203.0.113.3:7")); err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(e.cfg.MinAnnounceInterval)
	e.Tick()
	s.settle()
	if _, ok := s.order[1].e.Index().Lookup(self); ok {
		t.Fatal("a refresh after Withdraw put the node back in its peer's index")
	}
	if _, ok := e.Index().Lookup(self); ok {
		t.Fatal("a refresh after Withdraw put the node back in its own index")
	}
	if err := e.Announce(Set{Tags: []string{"gpu"}}); err != nil {
		t.Fatal(err)
	}
	if got := selfSet(t, s, 0, 1); got.Metadata["reflex"] != "203.0.113.3:7" {
		t.Fatalf("announcing again lacks the part kept while withdrawn: %v", got)
	}
	if err := e.RefreshLayer("", Set{}); err == nil {
		t.Fatal("RefreshLayer took the application's part")
	}
}
