package capability

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestSetValidate(t *testing.T) {
	many := func(n int, f func(i int) string) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = f(i)
		}
		return s
	}
	bigMeta := map[string]string{}
	for i := 0; i < 20; i++ {
		bigMeta[strings.Repeat("k", 10)+string(rune('a'+i))] = strings.Repeat("v", 250)
	}
	tooManyMeta := map[string]string{}
	for i := 0; i <= MaxMetadataEntries; i++ {
		tooManyMeta["k"+strings.Repeat("x", i)] = ""
	}
	tests := []struct {
		name   string
		set    Set
		reason string // substring of the error; "" means valid
	}{
		{"empty", Set{}, ""},
		{"typical", Set{Tags: []string{"gpu", "skill:summarize", "region:eu", "a.b_c/d-e"}, Metadata: map[string]string{"gpu_mem_gb": "24", "model": "NVIDIA A100 80GB ü"}}, ""},
		{"max tags", Set{Tags: many(MaxTags, func(i int) string { return fmt.Sprintf("t%03d", i) })}, ""},
		{"too many tags", Set{Tags: many(MaxTags+1, func(i int) string { return fmt.Sprintf("t%03d", i) })}, "tags, at most"},
		{"short tag", Set{Tags: []string{"g"}}, "length 1"},
		{"long tag", Set{Tags: []string{strings.Repeat("a", MaxTagLen+1)}}, "length 65"},
		{"upper case", Set{Tags: []string{"GPU"}}, "not allowed"},
		{"space", Set{Tags: []string{"has space"}}, "not allowed"},
		{"duplicate", Set{Tags: []string{"gpu", "gpu"}}, "duplicate"},
		{"scope subnet", Set{Tags: []string{"scope:subnet-local"}}, ""},
		{"scope tenant and region", Set{Tags: []string{"scope:tenant:acme", "scope:region:eu"}}, ""},
		{"unknown scope", Set{Tags: []string{"scope:planet"}}, "unknown scope"},
		{"empty tenant", Set{Tags: []string{"scope:tenant:"}}, "unknown scope"},
		{"two tenants", Set{Tags: []string{"scope:tenant:a", "scope:tenant:b"}}, "more than one tenant"},
		{"two regions", Set{Tags: []string{"scope:region:a", "scope:region:b"}}, "more than one region"},
		{"empty key", Set{Metadata: map[string]string{"": "x"}}, "length 0"},
		{"bad key", Set{Metadata: map[string]string{"Key": "x"}}, "not allowed"},
		{"long value", Set{Metadata: map[string]string{"k": strings.Repeat("v", MaxMetadataValueLen+1)}}, "257 bytes"},
		{"control char", Set{Metadata: map[string]string{"k": "a\nb"}}, "control"},
		{"bad utf8", Set{Metadata: map[string]string{"k": "\xff"}}, "UTF-8"},
		{"too many entries", Set{Metadata: tooManyMeta}, "metadata entries"},
		{"too big", Set{Metadata: bigMeta}, "encodes to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.set.Validate()
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.Is(err, ErrInvalidSet) || !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("Validate() = %v, want a ValidationError containing %q", err, tt.reason)
			}
		})
	}
}

func TestSetScope(t *testing.T) {
	tests := []struct {
		tags []string
		kind ScopeKind
		val  string
	}{
		{nil, ScopeGlobal, ""},
		{[]string{"gpu", "region:eu"}, ScopeGlobal, ""},
		{[]string{"scope:region:eu"}, ScopeRegion, "eu"},
		{[]string{"scope:region:eu", "scope:tenant:acme"}, ScopeTenant, "acme"},
		{[]string{"scope:tenant:acme", "scope:subnet-local", "scope:region:eu"}, ScopeSubnetLocal, ""},
	}
	for _, tt := range tests {
		kind, val := Set{Tags: tt.tags}.Scope()
		if kind != tt.kind || val != tt.val {
			t.Errorf("Scope(%v) = %v %q, want %v %q", tt.tags, kind, val, tt.kind, tt.val)
		}
	}
}

func TestSetEqual(t *testing.T) {
	a := Set{Tags: []string{"gpu", "cpu"}, Metadata: map[string]string{"k": "v"}}
	for _, tt := range []struct {
		b    Set
		want bool
	}{
		{Set{Tags: []string{"cpu", "gpu"}, Metadata: map[string]string{"k": "v"}}, true},
		{Set{Tags: []string{"cpu", "tpu"}, Metadata: map[string]string{"k": "v"}}, false},
		{Set{Tags: []string{"cpu", "gpu"}, Metadata: map[string]string{"k": "w"}}, false},
		{Set{Tags: []string{"cpu", "gpu"}}, false},
	} {
		if got := a.Equal(tt.b); got != tt.want || tt.b.Equal(a) != tt.want {
			t.Errorf("%v.Equal(%v) = %v, want %v", a, tt.b, got, tt.want)
		}
	}
	if !(Set{}).Equal(Set{Metadata: map[string]string{}}) {
		t.Error("an empty set differs from one with an empty map")
	}
}
