package task

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/netmesh/netmesh/identity"
)

// Skill declares one kind of work a worker does, with its contract.
type Skill struct {
	// Name names the skill: 1 to MaxSkillName bytes of lowercase letters,
	// digits and "-._/" (it is advertised as the capability tag
	// "skill:<name>").
	Name string
	// Version is the skill's version, for people and for the catalog;
	// placement does not look at it.
	Version string
	// Description says what the skill does, for the catalog.
	Description string
	// Input and Output are JSON Schemas (any draft the validator knows;
	// without "$schema", 2020-12) for the parameters and the output. Nil
	// accepts any JSON value. A schema must be self-contained: "$ref"s to
	// other documents are refused.
	Input, Output json.RawMessage
	// Events, if not nil, lists the events the handler may emit, by name,
	// each with the schema of its data (nil: any JSON). A nil map allows
	// any event.
	Events map[string]json.RawMessage
	// Statuses lists the statuses a result may carry ("success",
	// "retry_later", ...). Nil means just "success".
	Statuses []string
	// Concurrency bounds the skill's tasks running at once. 0 means the
	// worker's MaxRunning.
	Concurrency int
	// Cold registers the skill as supported but not ready: it is not
	// advertised as hot until Worker.SetHot. Placement prefers hot
	// skills.
	Cold bool
	// Groups, if not empty, lets only submitters whose membership
	// certificate names one of these groups run the skill (the node that
	// hands the worker the task, docs/SECURITY.md); the others are
	// refused with CodePermissionDenied before anything runs.
	Groups []string
	// Handler runs the tasks.
	Handler Handler
}

// Handler runs one task. ctx ends when the task is cancelled, its
// deadline passes or the worker shuts down; a handler should then return
// promptly (its result is discarded). It returns a result, or an error:
// an *Error chooses its code (Errorf(CodeDependencyMissing, ...)); any
// other error fails the task with CodeHandlerError and its text, so do
// not put secrets in it.
type Handler func(ctx context.Context, t *Task) (Result, error)

// Result is what a handler returns.
type Result struct {
	// Status is one of the skill's Statuses; "" means "success".
	Status string
	// Output is the result's JSON value, checked against the skill's
	// Output schema. Nil means JSON null.
	Output json.RawMessage
}

// DefaultStatus is a result's status when the handler gives none.
const DefaultStatus = "success"

// SkillInfo is one skill as a worker's catalog describes it.
type SkillInfo struct {
	Name        string                     `json:"name"`
	Version     string                     `json:"version,omitempty"`
	Description string                     `json:"description,omitempty"`
	Input       json.RawMessage            `json:"input,omitempty"`
	Output      json.RawMessage            `json:"output,omitempty"`
	Events      map[string]json.RawMessage `json:"events,omitempty"`
	Statuses    []string                   `json:"statuses"`
	Concurrency int                        `json:"concurrency"`
	Groups      []string                   `json:"groups,omitempty"`
}

// contract is a skill's compiled schemas.
type contract struct {
	input, output *jsonschema.Schema
	events        map[string]*jsonschema.Schema // nil: any event
	statuses      []string
}

// validName reports whether s is 1 to max bytes of the capability tag
// alphabet without ':' (lowercase letters, digits and "-._/").
func validName(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' && c != '_' && c != '/' {
			return false
		}
	}
	return true
}

// compile checks a skill declaration and compiles its schemas.
func (s *Skill) compile() (*contract, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidSkill, s.Name, fmt.Sprintf(format, args...))
	}
	if !validName(s.Name, MaxSkillName) {
		return nil, bad("a name is 1 to %d bytes of a-z, 0-9 and -._/", MaxSkillName)
	}
	if s.Handler == nil {
		return nil, bad("no handler")
	}
	if s.Concurrency < 0 {
		return nil, bad("negative concurrency")
	}
	if len(s.Version) > maxLabel || len(s.Description) > maxMessage {
		return nil, bad("version or description too long")
	}
	for _, g := range s.Groups {
		if !identity.ValidCertLabel(g, identity.MaxCertGroupLen) {
			return nil, bad("group %q: want 1 to %d bytes of a-z, 0-9, '-', '_' and '.'", g, identity.MaxCertGroupLen)
		}
	}
	c := &contract{statuses: s.Statuses}
	if c.statuses == nil {
		c.statuses = []string{DefaultStatus}
	}
	for _, st := range c.statuses {
		if !validName(st, maxLabel) {
			return nil, bad("status %q: want 1 to %d bytes of a-z, 0-9 and -._/", st, maxLabel)
		}
	}
	if len(s.Events) > maxEventNames {
		return nil, bad("%d events declared, at most %d", len(s.Events), maxEventNames)
	}
	comp := jsonschema.NewCompiler()
	comp.UseLoader(jsonschema.SchemeURLLoader{}) // no file or network access
	var err error
	schema := func(what string, doc json.RawMessage) *jsonschema.Schema {
		if doc == nil || err != nil {
			return nil
		}
		v, perr := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
		if perr != nil {
			err = bad("%s schema: %v", what, perr)
			return nil
		}
		url := "mem://" + s.Name + "/" + what + ".json"
		if perr = comp.AddResource(url, v); perr == nil {
			var sch *jsonschema.Schema
			if sch, perr = comp.Compile(url); perr == nil {
				return sch
			}
		}
		err = bad("%s schema: %v", what, perr)
		return nil
	}
	c.input = schema("input", s.Input)
	c.output = schema("output", s.Output)
	if s.Events != nil {
		c.events = make(map[string]*jsonschema.Schema, len(s.Events))
		for name, doc := range s.Events {
			if !validName(name, maxLabel) {
				return nil, bad("event %q: want 1 to %d bytes of a-z, 0-9 and -._/", name, maxLabel)
			}
			c.events[name] = schema("event-"+name, doc)
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ValidateSkill checks a skill declaration as Register would, without
// registering it: the name, the handler, the statuses and limits, and
// that its schemas compile. Errors wrap ErrInvalidSkill and say why.
func ValidateSkill(s Skill) error {
	_, err := s.compile()
	return err
}

// validate checks that data is one JSON value that sch accepts (nil sch:
// any JSON value).
func validate(sch *jsonschema.Schema, data []byte) error {
	if sch == nil {
		if !json.Valid(data) {
			return fmt.Errorf("not a JSON value")
		}
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a JSON value: %v", err)
	}
	if err := sch.Validate(v); err != nil {
		return oneLine(err)
	}
	return nil
}

// oneLine turns a validation error, one line per failed keyword after a
// header, into one line: the failures joined by "; ". Errors cross the
// network and end up in logs and CLI output.
func oneLine(err error) error {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		return err
	}
	parts := make([]string, 0, len(lines)-1)
	for _, l := range lines[1:] {
		if l = strings.TrimPrefix(strings.TrimSpace(l), "- "); l != "" {
			parts = append(parts, l)
		}
	}
	return errors.New(strings.Join(parts, "; "))
}

// info returns the skill as the catalog describes it.
func (s *Skill) info(c *contract, concurrency int) SkillInfo {
	return SkillInfo{
		Name: s.Name, Version: s.Version, Description: s.Description,
		Input: s.Input, Output: s.Output, Events: s.Events,
		Statuses: slices.Clone(c.statuses), Concurrency: concurrency,
		Groups: slices.Clone(s.Groups),
	}
}

// catalogHash returns the short hash of a catalog's JSON encoding that a
// worker advertises: 16 hex digits (64 bits) tell versions apart, and a
// collision costs only a stale catalog until the next change.
func catalogHash(catalog []byte) string {
	sum := sha256.Sum256(catalog)
	return hex.EncodeToString(sum[:8])
}
