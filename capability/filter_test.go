package capability

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/netmesh/netmesh/identity"
)

// filterNodes is a small fleet for filter tests, indexed by name.
func filterNodes() map[string]*Node {
	mk := func(i byte, tags []string, md map[string]string) *Node {
		return &Node{ID: identity.NodeID{i}, Set: Set{Tags: tags, Metadata: md}, Status: StatusOnline}
	}
	return map[string]*Node{
		"a100":   mk(1, []string{"gpu", "cuda", "region:eu"}, map[string]string{"gpu_mem_gb": "80", "os": "linux"}),
		"t4":     mk(2, []string{"gpu", "cuda", "region:us"}, map[string]string{"gpu_mem_gb": "16", "os": "linux"}),
		"laptop": mk(3, []string{"python", "region:eu"}, map[string]string{"os": "darwin", "gpu_mem_gb": "n/a"}),
		"tenant": mk(4, []string{"gpu", "scope:tenant:acme"}, map[string]string{"gpu_mem_gb": "24"}),
		"subnet": mk(5, []string{"python", "scope:subnet-local", "scope:tenant:acme"}, nil),
		"region": mk(6, []string{"python", "scope:region:eu"}, map[string]string{"os": "a b"}),
	}
}

func TestFilters(t *testing.T) {
	nodes := filterNodes()
	acme := Scope{Tenant: "acme", Region: "eu", SameSubnet: func(id identity.NodeID) bool { return id == identity.NodeID{5} }}
	tests := []struct {
		name string
		f    Filter
		want string // sorted names, space separated
	}{
		{"all", Filter{}, "a100 laptop region subnet t4 tenant"},
		{"tag", HasTag("gpu"), "a100 t4 tenant"},
		{"unknown tag", HasTag("tpu"), ""},
		{"lacks", LacksTag("gpu"), "laptop region subnet"},
		{"equals", Equals("os", "linux"), "a100 t4"},
		{"equals spaces", Equals("os", "a b"), "region"},
		{"at least", AtLeast("gpu_mem_gb", 24), "a100 tenant"},
		{"at most", AtMost("gpu_mem_gb", 24), "t4 tenant"},
		{"non-numeric ignored", AtMost("os", 1e9), ""},
		{"all of", AllOf(HasTag("gpu"), AtLeast("gpu_mem_gb", 24), Equals("os", "linux")), "a100"},
		{"any of", AnyOf(HasTag("python"), AtLeast("gpu_mem_gb", 80)), "a100 laptop region subnet"},
		{"any of none", AnyOf(), ""},
		{"not any", Not(AnyOf(HasTag("gpu"), HasTag("python"))), ""},
		{"nested", AllOf(AnyOf(HasTag("region:eu"), HasTag("region:us")), Not(Equals("os", "darwin"))), "a100 t4"},
		{"global scope", InScope(Scope{}), "a100 laptop t4"},
		{"eu scope", InScope(Scope{Region: "eu"}), "a100 laptop region t4"},
		{"acme scope", InScope(acme), "a100 laptop region subnet t4 tenant"},
		{"acme without subnet", InScope(Scope{Tenant: "acme"}), "a100 laptop t4 tenant"},
		{"scope and tag", AllOf(HasTag("gpu"), InScope(Scope{})), "a100 t4"},
	}
	ix := newIndex()
	for _, n := range nodes {
		ix.putLocked(n)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var viaMatch, viaIndex []string
			for name, n := range nodes {
				if tt.f.Match(*n) {
					viaMatch = append(viaMatch, name)
				}
			}
			for _, n := range ix.FindNodes(tt.f) {
				for name, m := range nodes {
					if m.ID == n.ID {
						viaIndex = append(viaIndex, name)
					}
				}
			}
			slices.Sort(viaMatch)
			slices.Sort(viaIndex)
			if got := strings.Join(viaMatch, " "); got != tt.want {
				t.Errorf("Match: %q, want %q", got, tt.want)
			}
			if got := strings.Join(viaIndex, " "); got != tt.want {
				t.Errorf("FindNodes: %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIndexUpdateAndRemove(t *testing.T) {
	ix := newIndex()
	nodes := filterNodes()
	for _, n := range nodes {
		ix.putLocked(n)
	}
	a := *nodes["a100"]
	a.Set = Set{Tags: []string{"tpu"}, Metadata: map[string]string{"gpu_mem_gb": "8"}}
	ix.putLocked(&a)
	ix.removeLocked(nodes["t4"].ID)
	if got := len(ix.FindNodes(HasTag("gpu"))); got != 1 {
		t.Errorf("gpu nodes after update = %d, want 1 (tenant)", got)
	}
	if got := ix.FindNodes(AtMost("gpu_mem_gb", 10)); len(got) != 1 || got[0].ID != a.ID {
		t.Errorf("AtMost after update = %v", got)
	}
	if _, ok := ix.tags.m["cuda"]; ok {
		t.Error("posting list of a tag nobody has was kept")
	}
	if ix.Len() != 5 {
		t.Errorf("Len = %d, want 5", ix.Len())
	}
	best, ok := ix.FindBestNode(HasTag("gpu"), Highest("gpu_mem_gb"))
	if !ok || best.ID != nodes["tenant"].ID {
		t.Errorf("FindBestNode = %v %v", best.ID, ok)
	}
	best, ok = ix.FindBestNode(Filter{}, Lowest("gpu_mem_gb"))
	if !ok || best.ID != a.ID {
		t.Errorf("FindBestNode lowest = %v %v", best.ID, ok)
	}
	if _, ok := ix.FindBestNode(HasTag("nope"), Lowest("x")); ok {
		t.Error("FindBestNode found a node for an unmatched filter")
	}
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		in, want string // want "" means same as in
	}{
		{"gpu", ""},
		{"", "*"},
		{"*", ""},
		{"gpu && gpu_mem_gb>=24", ""},
		{"gpu&&gpu_mem_gb >= 24", "gpu && gpu_mem_gb>=24"},
		{"!gpu", ""},
		{"! ! gpu", "gpu"},
		{"load<=0.5", ""},
		{"x>=1e+09", "x>=1e+09"},
		{"t>=-3", ""},
		{"os==linux && model==A100", ""},
		{`name=="has space" || name=="q\"uote"`, ""},
		{"a1 || b1 && c1", ""},
		{"(a1 || b1) && c1", ""},
		{"!(a1 && b1)", ""},
		{"!(a1 || b1) && (c1 || d1 && e1)", ""},
		{"skill:summarize && region:eu", ""},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.in)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tt.in, err)
			continue
		}
		want := tt.want
		if want == "" {
			want = tt.in
		}
		if got := f.String(); got != want {
			t.Errorf("ParseFilter(%q).String() = %q, want %q", tt.in, got, want)
		}
		g, err := ParseFilter(f.String())
		if err != nil || g.String() != f.String() {
			t.Errorf("reparse of %q: %v %q", f.String(), err, g.String())
		}
	}
	// Precedence: && binds tighter.
	f, _ := ParseFilter("python || gpu && os==darwin")
	ix := newIndex()
	for _, n := range filterNodes() {
		ix.putLocked(n)
	}
	if got := len(ix.FindNodes(f)); got != 3 {
		t.Errorf("python || gpu && os==darwin matched %d, want 3", got)
	}
}

func TestParseFilterErrors(t *testing.T) {
	for _, in := range []string{
		"GPU", "g", "gpu &&", "&& gpu", "(gpu", "gpu)", "gpu ||| cpu", "k==", `k=="open`,
		"k>=abc", "k>=", "K>=1", "gpu cpu", "k>=NaN", "k>=inf", "x==y==z",
		strings.Repeat("(", 100) + "gpu" + strings.Repeat(")", 100),
		strings.Repeat("!", 100) + "gpu",
	} {
		if f, err := ParseFilter(in); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("ParseFilter(%q) = %v, %v; want ErrInvalidFilter", in, f, err)
		}
	}
}
