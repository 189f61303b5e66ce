package task

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

func TestIDs(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_123)
	a, b := NewID(now), NewID(now.Add(time.Millisecond))
	if a == b || a.IsZero() {
		t.Fatal("ids not unique")
	}
	if !a.Time().Equal(now) {
		t.Fatalf("Time() = %v, want %v", a.Time(), now)
	}
	if s := a.String(); len(s) != 26 || strings.ToLower(s) != s {
		t.Fatalf("text form %q", s)
	}
	if a.String() >= b.String() {
		t.Fatal("ids do not sort by creation time")
	}
	got, err := ParseID(strings.ToUpper(a.String()))
	if err != nil || got != a {
		t.Fatalf("ParseID = %v, %v", got, err)
	}
	for _, s := range []string{"", "abc", strings.Repeat("a", 25) + "1", strings.Repeat("a", 25) + "b"} {
		if _, err := ParseID(s); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q) = %v", s, err)
		}
	}
	raw, _ := json.Marshal(a)
	var back ID
	if err := json.Unmarshal(raw, &back); err != nil || back != a {
		t.Fatalf("JSON round trip: %v %v", back, err)
	}
}

func TestErrorIs(t *testing.T) {
	err := error(&Error{Code: CodeTimeout, Message: "late", Task: testID(1)})
	if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrLost) {
		t.Fatal("errors.Is by code")
	}
	var te *Error
	if !errors.As(err, &te) || te.Code != CodeTimeout {
		t.Fatal("errors.As")
	}
	if errors.Is(ErrTimeout, err) {
		t.Fatal("a sentinel matched an error with a message")
	}
	for _, c := range []string{"TIMEOUT", "A_B"} {
		if !validCode(c) {
			t.Errorf("validCode(%q) false", c)
		}
	}
	for _, c := range []string{"", "lower", "A-B", strings.Repeat("A", maxCodeLen+1)} {
		if validCode(c) {
			t.Errorf("validCode(%q) true", c)
		}
	}
}

func TestStates(t *testing.T) {
	for s := StateQueued; s <= StateLost; s++ {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Fatalf("ParseState(%q) = %v %v", s, got, err)
		}
	}
	if StateRunning.Final() || !StateLost.Final() || !StateSucceeded.Final() {
		t.Fatal("Final")
	}
	if _, err := ParseState("done"); err == nil {
		t.Fatal("ParseState accepted an unknown state")
	}
}

// A forwarding chain verifies only as signed, in order, for its task,
// ending at the receiver and sent by the last signer.
func TestChain(t *testing.T) {
	origin, _ := identity.Generate()
	ctrl, _ := identity.Generate()
	worker, _ := identity.Generate()
	mallory, _ := identity.Generate()
	id, params := testID(1), []byte(`{"n":1}`)
	c := Chain{SignOrigin(origin, id, "job", params, ctrl.NodeID())}
	c = c.Forward(ctrl, id, worker.NodeID())
	if err := c.Verify(id, "job", params, worker.NodeID(), ctrl.NodeID()); err != nil {
		t.Fatalf("valid chain: %v", err)
	}
	if c.Origin() != origin.NodeID() || len(c.Nodes()) != 2 || c.Nodes()[1] != ctrl.NodeID() {
		t.Fatal("Origin, Nodes")
	}
	forged := Chain{SignOrigin(mallory, id, "job", params, ctrl.NodeID())}
	forged[0].Key = origin.PublicKey() // claim origin's identity
	forged = forged.Forward(ctrl, id, worker.NodeID())

	skip := Chain{SignOrigin(origin, id, "job", params, mallory.NodeID())}
	skip = append(skip, Chain{SignOrigin(origin, id, "job", params, ctrl.NodeID())}.Forward(ctrl, id, worker.NodeID())[1])

	reordered := Chain{c[1], c[0]}
	for name, tc := range map[string]struct {
		c          Chain
		id         ID
		skill      string
		params     []byte
		self, from identity.NodeID
	}{
		"forged origin":       {forged, id, "job", params, worker.NodeID(), ctrl.NodeID()},
		"reordered":           {reordered, id, "job", params, worker.NodeID(), ctrl.NodeID()},
		"link from elsewhere": {skip, id, "job", params, worker.NodeID(), ctrl.NodeID()},
		"other task":          {c, testID(2), "job", params, worker.NodeID(), ctrl.NodeID()},
		"other skill":         {c, id, "other", params, worker.NodeID(), ctrl.NodeID()},
		"other params":        {c, id, "job", []byte(`{"n":2}`), worker.NodeID(), ctrl.NodeID()},
		"other receiver":      {c, id, "job", params, mallory.NodeID(), ctrl.NodeID()},
		"other sender":        {c, id, "job", params, worker.NodeID(), mallory.NodeID()},
		"truncated":           {c[:1], id, "job", params, worker.NodeID(), ctrl.NodeID()},
		"empty":               {Chain{}, id, "job", params, worker.NodeID(), ctrl.NodeID()},
	} {
		if err := tc.c.Verify(tc.id, tc.skill, tc.params, tc.self, tc.from); !errors.Is(err, ErrProvenance) {
			t.Errorf("%s: %v, want PROVENANCE", name, err)
		}
	}
}
