package engine

import (
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/xeipuuv/gojsonschema"
)

//go:embed schemas/*.json
var engineSchemas embed.FS

// compiledSchema is a JSON Schema compiled once, plus the property names it
// declares (used to warn about unknown keys).
type compiledSchema struct {
	schema *gojsonschema.Schema
	known  map[string]bool
	open   bool // no "properties": every key is accepted silently
}

type schemaCache struct {
	mu sync.Mutex
	m  map[string]*compiledSchema
}

func newSchemaCache() *schemaCache { return &schemaCache{m: map[string]*compiledSchema{}} }

func (c *schemaCache) get(key, text string) (*compiledSchema, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[key]; ok {
		return s, nil
	}
	s, err := compileSchema(text)
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", key, err)
	}
	c.m[key] = s
	return s, nil
}

func compileSchema(text string) (*compiledSchema, error) {
	if strings.TrimSpace(text) == "" {
		text = `{"type": "object"}`
	}
	sch, err := gojsonschema.NewSchema(gojsonschema.NewStringLoader(text))
	if err != nil {
		return nil, err
	}
	var top struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal([]byte(text), &top); err != nil {
		return nil, err
	}
	cs := &compiledSchema{schema: sch, known: map[string]bool{}, open: top.Properties == nil}
	for k := range top.Properties {
		cs.known[k] = true
	}
	return cs, nil
}

// problem is one schema finding relative to the validated object.
type problem struct {
	pointer string
	message string
	warning bool
}

// validate checks cfg against the schema. Keys the schema does not list are
// reported as warnings (real configs carry typos such as
// "set-initial-offset" that Sesam ignores).
func (cs *compiledSchema) validate(cfg map[string]any) ([]problem, error) {
	res, err := cs.schema.Validate(gojsonschema.NewGoLoader(cfg))
	if err != nil {
		return nil, err
	}
	var out []problem
	for _, e := range res.Errors() {
		ptr := fieldPointer(e.Field())
		if e.Type() == "required" {
			if p, ok := e.Details()["property"].(string); ok {
				ptr = strings.TrimSuffix(ptr, "/"+p)
			}
		}
		out = append(out, problem{pointer: ptr, message: e.Description()})
	}
	if !cs.open {
		var unknown []string
		for k := range cfg {
			if !cs.known[k] {
				unknown = append(unknown, k)
			}
		}
		sort.Strings(unknown)
		for _, k := range unknown {
			out = append(out, problem{pointer: "/" + escapePointer(k), message: fmt.Sprintf("unknown key %q is ignored", k), warning: true})
		}
	}
	return out, nil
}

// fieldPointer turns gojsonschema's "a.b.0" field path into "/a/b/0".
func fieldPointer(field string) string {
	if field == "" || field == "(root)" {
		return ""
	}
	field = strings.TrimPrefix(field, "(root).")
	parts := strings.Split(field, ".")
	for i, p := range parts {
		parts[i] = escapePointer(p)
	}
	return "/" + strings.Join(parts, "/")
}

func (r *Registry) schemaFor(kind Kind, name string) (*compiledSchema, error) {
	e, ok := r.lookup(kind, name)
	if !ok {
		return nil, fmt.Errorf("unknown %s type %q", kind, name)
	}
	return r.schemas.get(string(kind)+":"+name, e.spec.Schema)
}

func (r *Registry) pipeSchema() (*compiledSchema, error) {
	text, err := engineSchemas.ReadFile("schemas/pipe.json")
	if err != nil {
		return nil, err
	}
	return r.schemas.get("pipe", string(text))
}

// JSONSchema returns the JSON Schema text of a registered component type.
func (r *Registry) JSONSchema(kind Kind, name string) (string, bool) {
	e, ok := r.lookup(kind, name)
	if !ok {
		return "", false
	}
	return e.spec.Schema, true
}

// PipeSchema returns the JSON Schema text that pipe objects are validated
// with (engine/schemas/pipe.json).
func PipeSchema() string {
	text, _ := engineSchemas.ReadFile("schemas/pipe.json")
	return string(text)
}
