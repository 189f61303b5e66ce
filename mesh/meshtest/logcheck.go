package meshtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
)

// LogCheck is a logger for tests that checks what a node logs is
// readable in both slog formats: it writes JSON, and flags every value
// whose JSON form differs from its text form in kind. The text handler
// prints a value through its TextMarshaler or its String method, the
// JSON handler through json.Marshal, so a named integer with a String
// method (an enum) prints as a word in text and as a number in JSON, and
// a struct without a marshaler prints its fields, or {} when it has no
// exported ones.
type LogCheck struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	bad  []string
	json slog.Handler
}

// NewLogCheck returns a LogCheck at debug level.
func NewLogCheck() *LogCheck {
	c := &LogCheck{}
	c.json = slog.NewJSONHandler(lockedWriter{c}, &slog.HandlerOptions{Level: slog.LevelDebug})
	return c
}

// Logger returns a logger that writes through the check.
func (c *LogCheck) Logger() *slog.Logger { return slog.New(&checkHandler{c: c, next: c.json}) }

// Lines returns how many records were logged.
func (c *LogCheck) Lines() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Count(c.buf.Bytes(), []byte{'\n'})
}

// Check fails tb for every value that would print differently in the two
// formats and every line that does not parse as a JSON object, and
// returns the parsed records.
func (c *LogCheck) Check(tb testing.TB) []map[string]any {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.bad {
		tb.Error(b)
	}
	var recs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(c.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			tb.Errorf("log line is not JSON: %v: %s", err, sc.Bytes())
			continue
		}
		for k, v := range rec {
			if _, ok := v.(map[string]any); ok {
				tb.Errorf("%q logs %s as a JSON object: %s", rec["msg"], k, sc.Bytes())
			}
		}
		recs = append(recs, rec)
	}
	return recs
}

type lockedWriter struct{ c *LogCheck }

// Write is called by the JSON handler under its own lock; c.mu guards
// the buffer against Check.
func (w lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.buf.Write(p)
}

// checkHandler inspects each record's values and hands it on.
type checkHandler struct {
	c    *LogCheck
	next slog.Handler
}

func (h *checkHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *checkHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		h.inspect(r.Message, a)
		return true
	})
	return h.next.Handle(ctx, r)
}

func (h *checkHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	for _, a := range attrs {
		h.inspect("(logger attributes)", a)
	}
	return &checkHandler{c: h.c, next: h.next.WithAttrs(attrs)}
}

func (h *checkHandler) WithGroup(name string) slog.Handler {
	return &checkHandler{c: h.c, next: h.next.WithGroup(name)}
}

// inspect records a's value if its two forms differ.
func (h *checkHandler) inspect(msg string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			h.inspect(msg, g)
		}
		return
	}
	if v.Kind() != slog.KindAny {
		return
	}
	if why := unreadable(reflect.ValueOf(v.Any())); why != "" {
		h.c.mu.Lock()
		h.c.bad = append(h.c.bad, fmt.Sprintf("%q logs %s = %v (%T): %s", msg, a.Key, v.Any(), v.Any(), why))
		h.c.mu.Unlock()
	}
}

var (
	errorType     = reflect.TypeFor[error]()
	textType      = reflect.TypeFor[encoding.TextMarshaler]()
	jsonType      = reflect.TypeFor[json.Marshaler]()
	stringerType  = reflect.TypeFor[fmt.Stringer]()
	logValuerType = reflect.TypeFor[slog.LogValuer]()
)

// unreadable says why v prints differently in text and JSON, or "".
func unreadable(v reflect.Value) string {
	if !v.IsValid() {
		return ""
	}
	t := v.Type()
	switch {
	case t.Implements(errorType), t.Implements(textType), t.Implements(jsonType):
		return ""
	case t.Implements(logValuerType):
		return "" // resolved by the handler (nested values are resolved too)
	case t.Implements(stringerType):
		return "it has a String method but no MarshalText: JSON prints its underlying value"
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "" // bytes: base64 in JSON, a list in text; log their String form
		}
		for i := range v.Len() {
			if why := unreadable(v.Index(i)); why != "" {
				return "element: " + why
			}
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return unreadable(v.Elem())
		}
	case reflect.Struct, reflect.Map:
		return "a " + t.Kind().String() + " without a marshaler"
	}
	return ""
}
