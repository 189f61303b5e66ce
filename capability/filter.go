package capability

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/netmesh/netmesh/identity"
)

// Filter selects nodes by their capability set. Filters are immutable values
// built with HasTag, LacksTag, Equals, AtLeast, AtMost, AllOf, AnyOf, Not and
// InScope, or parsed from text with ParseFilter. The zero Filter matches
// every node.
//
// The text form (String, ParseFilter) is
//
//	gpu && gpu_mem_gb>=24 && !busy && (region:eu || region:us) && os==linux
//
// with "&&" binding tighter than "||", "!" negation, parentheses, and these
// predicates: a bare tag (tag present), key==value (metadata equals; quote
// the value as a Go string if it is not a plain word), key>=number and
// key<=number (numeric metadata at least / at most). "*" matches every node.
// InScope filters print as scope(...) and do not parse: pass a Scope to
// FindNodesScoped instead.
type Filter struct{ n *fnode }

type fop uint8

const (
	opTag fop = iota + 1
	opEq
	opAtLeast
	opAtMost
	opAnd
	opOr
	opNot
	opScope
)

// fnode is one node of a filter tree. It is never modified after
// construction, so filters can share subtrees.
type fnode struct {
	op    fop
	key   string // tag or metadata key
	val   string
	num   float64
	kids  []*fnode
	scope Scope
}

// HasTag matches nodes that carry tag t.
func HasTag(t string) Filter { return Filter{&fnode{op: opTag, key: t}} }

// LacksTag matches nodes that do not carry tag t.
func LacksTag(t string) Filter { return Not(HasTag(t)) }

// Equals matches nodes whose metadata key k equals v.
func Equals(k, v string) Filter { return Filter{&fnode{op: opEq, key: k, val: v}} }

// AtLeast matches nodes whose metadata key k is a number >= x.
func AtLeast(k string, x float64) Filter { return Filter{&fnode{op: opAtLeast, key: k, num: x}} }

// AtMost matches nodes whose metadata key k is a number <= x.
func AtMost(k string, x float64) Filter { return Filter{&fnode{op: opAtMost, key: k, num: x}} }

// AllOf matches nodes that match every filter in fs. AllOf() matches every
// node.
func AllOf(fs ...Filter) Filter {
	kids := make([]*fnode, 0, len(fs))
	for _, f := range fs {
		if f.n != nil {
			kids = append(kids, f.n)
		}
	}
	switch len(kids) {
	case 0:
		return Filter{}
	case 1:
		return Filter{kids[0]}
	}
	return Filter{&fnode{op: opAnd, kids: kids}}
}

// AnyOf matches nodes that match at least one filter in fs. AnyOf() matches
// no node.
func AnyOf(fs ...Filter) Filter {
	kids := make([]*fnode, 0, len(fs))
	for _, f := range fs {
		if f.n == nil {
			return Filter{}
		}
		kids = append(kids, f.n)
	}
	if len(kids) == 1 {
		return Filter{kids[0]}
	}
	return Filter{&fnode{op: opOr, kids: kids}}
}

// Not matches nodes that f does not match.
func Not(f Filter) Filter {
	if f.n != nil && f.n.op == opNot {
		return Filter{f.n.kids[0]}
	}
	return Filter{&fnode{op: opNot, kids: []*fnode{f.n}}}
}

// InScope matches nodes visible from scope s (see Scope).
func InScope(s Scope) Filter { return Filter{&fnode{op: opScope, scope: s}} }

// Match reports whether node n matches f.
func (f Filter) Match(n Node) bool { return f.n.match(&n) }

func (n *fnode) match(nd *Node) bool {
	if n == nil {
		return true
	}
	switch n.op {
	case opTag:
		return nd.Set.HasTag(n.key)
	case opEq:
		v, ok := nd.Set.Metadata[n.key]
		return ok && v == n.val
	case opAtLeast:
		x, ok := nd.Set.Number(n.key)
		return ok && x >= n.num
	case opAtMost:
		x, ok := nd.Set.Number(n.key)
		return ok && x <= n.num
	case opAnd:
		for _, k := range n.kids {
			if !k.match(nd) {
				return false
			}
		}
		return true
	case opOr:
		for _, k := range n.kids {
			if k.match(nd) {
				return true
			}
		}
		return false
	case opNot:
		return !n.kids[0].match(nd)
	case opScope:
		kind, val := nd.Set.Scope()
		return n.scope.allows(kind, val, nd)
	}
	return false
}

// Scope is where a query comes from. A node whose set has a scope tag is
// visible only to queries from within that scope, judged by its strictest
// scope tag alone (subnet-local, then tenant, then region); a node without
// scope tags is visible to every query; a node always sees itself. Scopes
// are a discovery convenience, not access control: every node receives every
// announcement.
type Scope struct {
	// Tenant is the querier's tenant id; nodes tagged scope:tenant:<id>
	// are visible only when it equals <id>.
	Tenant string
	// Region is the querier's region; nodes tagged scope:region:<name> are
	// visible only when it equals <name>.
	Region string
	// SameSubnet reports whether a node is in the querier's subnet; nodes
	// tagged scope:subnet-local are visible only when it returns true. Nil
	// means no other node is.
	SameSubnet func(identity.NodeID) bool
}

// allows reports whether a node with the given effective scope is visible.
func (s Scope) allows(kind ScopeKind, val string, nd *Node) bool {
	if nd.Self {
		return true
	}
	switch kind {
	case ScopeRegion:
		return val == s.Region
	case ScopeTenant:
		return val == s.Tenant
	case ScopeSubnetLocal:
		return s.SameSubnet != nil && s.SameSubnet(nd.ID)
	}
	return true
}

// String returns the text form of f (see Filter).
func (f Filter) String() string {
	var b strings.Builder
	f.n.write(&b, false)
	return b.String()
}

// write appends n; paren asks for parentheses around an || expression.
func (n *fnode) write(b *strings.Builder, paren bool) {
	if n == nil {
		b.WriteString("*")
		return
	}
	switch n.op {
	case opTag:
		b.WriteString(n.key)
	case opEq:
		b.WriteString(n.key)
		b.WriteString("==")
		if isPlainWord(n.val) {
			b.WriteString(n.val)
		} else {
			b.WriteString(strconv.Quote(n.val))
		}
	case opAtLeast, opAtMost:
		b.WriteString(n.key)
		b.WriteString(map[fop]string{opAtLeast: ">=", opAtMost: "<="}[n.op])
		b.WriteString(strconv.FormatFloat(n.num, 'g', -1, 64))
	case opAnd, opOr:
		sep, sub := " && ", true
		if n.op == opOr {
			if paren {
				b.WriteString("(")
				defer b.WriteString(")")
			}
			sep, sub = " || ", false
		}
		if len(n.kids) == 0 {
			b.WriteString("!*")
		}
		for i, k := range n.kids {
			if i > 0 {
				b.WriteString(sep)
			}
			k.write(b, sub)
		}
	case opNot:
		b.WriteString("!")
		k := n.kids[0]
		if k != nil && (k.op == opAnd || k.op == opOr) {
			b.WriteString("(")
			k.write(b, false)
			b.WriteString(")")
		} else {
			k.write(b, false)
		}
	case opScope:
		fmt.Fprintf(b, "scope(tenant=%q,region=%q,subnet=%t)", n.scope.Tenant, n.scope.Region, n.scope.SameSubnet != nil)
	}
}

// isPlainWord reports whether s can be written unquoted in a filter.
func isPlainWord(s string) bool {
	if s == "" || s == "*" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isWordByte(s[i]) {
			return false
		}
	}
	return true
}

// isWordByte reports whether c may appear in an unquoted word: the tag
// alphabet plus upper case letters and '+' (for values like "A100", "1e+09").
func isWordByte(c byte) bool {
	return isNameByte(c) || 'A' <= c && c <= 'Z' || c == '+'
}

// ParseFilter parses the text form described on Filter. Errors wrap
// ErrInvalidFilter and give the byte offset.
func ParseFilter(s string) (Filter, error) {
	p := &parser{s: s}
	p.skip()
	if p.pos == len(p.s) {
		return Filter{}, nil
	}
	f := p.or()
	if p.err == nil && p.pos != len(p.s) {
		p.fail("unexpected %q", p.s[p.pos:])
	}
	if p.err != nil {
		return Filter{}, p.err
	}
	return f, nil
}

// maxFilterDepth bounds nesting so a hostile filter string cannot exhaust
// the stack.
const maxFilterDepth = 64

type parser struct {
	s     string
	pos   int
	depth int
	err   error
}

func (p *parser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%w at offset %d: %s", ErrInvalidFilter, p.pos, fmt.Sprintf(format, args...))
	}
}

func (p *parser) skip() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t' || p.s[p.pos] == '\n') {
		p.pos++
	}
}

// eat consumes tok (and the spaces after it) if it comes next.
func (p *parser) eat(tok string) bool {
	if strings.HasPrefix(p.s[p.pos:], tok) {
		p.pos += len(tok)
		p.skip()
		return true
	}
	return false
}

func (p *parser) or() Filter {
	fs := []Filter{p.and()}
	for p.err == nil && p.eat("||") {
		fs = append(fs, p.and())
	}
	return AnyOf(fs...)
}

func (p *parser) and() Filter {
	fs := []Filter{p.unary()}
	for p.err == nil && p.eat("&&") {
		fs = append(fs, p.unary())
	}
	return AllOf(fs...)
}

func (p *parser) unary() Filter {
	if p.depth++; p.depth > maxFilterDepth {
		p.fail("nested more than %d deep", maxFilterDepth)
		return Filter{}
	}
	defer func() { p.depth-- }()
	switch {
	case p.eat("!"):
		return Not(p.unary())
	case p.eat("("):
		f := p.or()
		if !p.eat(")") {
			p.fail("missing )")
		}
		return f
	case p.eat("*"):
		return Filter{}
	}
	return p.predicate()
}

func (p *parser) word() string {
	start := p.pos
	for p.pos < len(p.s) && isWordByte(p.s[p.pos]) {
		p.pos++
	}
	w := p.s[start:p.pos]
	p.skip()
	return w
}

func (p *parser) predicate() Filter {
	start := p.pos
	name := p.word()
	if name == "" {
		p.fail("expected a tag or a metadata key")
		return Filter{}
	}
	switch {
	case p.eat("=="):
		if err := validateName("metadata key", name, 1, MaxMetadataKeyLen); err != nil {
			p.pos = start
			p.fail("%v", err)
		}
		return Equals(name, p.value())
	case strings.HasPrefix(p.s[p.pos:], ">="), strings.HasPrefix(p.s[p.pos:], "<="):
		op := p.s[p.pos : p.pos+2]
		p.eat(op)
		if err := validateName("metadata key", name, 1, MaxMetadataKeyLen); err != nil {
			p.pos = start
			p.fail("%v", err)
		}
		w := p.word()
		x, ok := parseNumber(w)
		if !ok {
			p.fail("%q is not a number", w)
		}
		if op == ">=" {
			return AtLeast(name, x)
		}
		return AtMost(name, x)
	}
	if err := validateName("tag", name, MinTagLen, MaxTagLen); err != nil {
		p.pos = start
		p.fail("%v", err)
	}
	return HasTag(name)
}

func (p *parser) value() string {
	if p.pos < len(p.s) && p.s[p.pos] == '"' {
		prefix, err := strconv.QuotedPrefix(p.s[p.pos:])
		if err != nil {
			p.fail("bad quoted value")
			return ""
		}
		p.pos += len(prefix)
		p.skip()
		v, _ := strconv.Unquote(prefix)
		return v
	}
	w := p.word()
	if w == "" {
		p.fail("expected a value")
	}
	return w
}
