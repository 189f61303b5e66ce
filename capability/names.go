package capability

import (
	"fmt"
	"slices"
	"strings"
)

// Node names.
//
// A node may carry a human name (Config.Name), such as "gpu-box-3", in its
// signed announcement, under the reserved metadata key NameKey, so people
// and tools can say "gpu-box-3" instead of a NodeID. A name is a label,
// not an identity: any node can claim any name, and two nodes can claim
// the same one. The NodeID (a hash of the node's key) is the identity;
// LookupName returns every node that claims a name, and DuplicateNames
// lists the names claimed by more than one.

// NameKey is the metadata key that carries a node's name, set from
// Config.Name. Applications and layers cannot announce keys starting with
// "node:", which the engine reserves; other nodes' sets may carry such
// keys, and only NameKey is checked.
const NameKey = "node:name"

// nodeKeyPrefix is the metadata key prefix the engine reserves.
const nodeKeyPrefix = "node:"

// ValidateName reports whether name is a valid node name: MinNameLen to
// MaxNameLen letters, digits, '-' and '_'. It returns a *ValidationError.
func ValidateName(name string) error {
	if why := nameFault(name); why != "" {
		return &ValidationError{Field: "name", Value: name, Reason: why}
	}
	return nil
}

// nameFault says what is wrong with name, or "" if it is a valid name.
func nameFault(name string) string {
	if len(name) < MinNameLen || len(name) > MaxNameLen {
		return fmt.Sprintf("length %d, want %d to %d", len(name), MinNameLen, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Sprintf("character %q not allowed; use letters, digits, - and _", c)
		}
	}
	return ""
}

// Name returns the name the node claims, or "".
func (n Node) Name() string { return n.Set.Metadata[NameKey] }

// foldName is the form names are compared in: case does not matter.
func foldName(name string) string { return strings.ToLower(name) }

// LookupName returns the live nodes that claim name (compared without
// regard to case), in no particular order: usually one, none if no node
// does, and more than one if several claim it. A caller that needs one
// node must refuse an ambiguous name, not pick one: names are labels
// anyone can claim.
func (ix *Index) LookupName(name string) []*Node {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	slots := ix.byName[foldName(name)]
	nodes := make([]*Node, 0, len(slots))
	for _, s := range slots {
		nodes = append(nodes, ix.nodes[s])
	}
	return nodes
}

// DuplicateNames returns, sorted and in lower case, the names that more
// than one live node claims.
func (ix *Index) DuplicateNames() []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var dups []string
	for name, slots := range ix.byName {
		if len(slots) > 1 {
			dups = append(dups, name)
		}
	}
	slices.Sort(dups)
	return dups
}

// nameLocked records that slot s claims name ("" for none). The caller
// holds ix.mu.
func (ix *Index) nameLocked(name string, s uint32) {
	if name == "" {
		return
	}
	k := foldName(name)
	ix.byName[k] = append(ix.byName[k], s)
}

// unnameLocked forgets that slot s claims name. The caller holds ix.mu.
func (ix *Index) unnameLocked(name string, s uint32) {
	if name == "" {
		return
	}
	k := foldName(name)
	slots := ix.byName[k]
	if i := slices.Index(slots, s); i >= 0 {
		slots = slices.Delete(slots, i, i+1)
	}
	if len(slots) == 0 {
		delete(ix.byName, k)
		return
	}
	ix.byName[k] = slots
}

// checkOwnedKeys reports a metadata key of an application's or layer's
// part that the engine reserves.
func checkOwnedKeys(s Set) error {
	for k := range s.Metadata {
		if strings.HasPrefix(k, nodeKeyPrefix) {
			return &ValidationError{Field: "metadata key", Value: k, Reason: `reserved: the engine sets "node:" keys (a name comes from Config.Name)`}
		}
	}
	return nil
}
