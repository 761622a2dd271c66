package pipes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/xeipuuv/gojsonschema"

	"github.com/ferrydata/ferry/engine"
)

const jsonSchemaTransformSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "json_schema transform",
  "type": "object",
  "properties": {
    "type": {"const": "json_schema"},
    "comment": {},
    "schema": {"type": ["object", "boolean"]},
    "schema_url": {"type": "string", "minLength": 1},
    "system": {"type": "string", "minLength": 1},
    "key_valid": {"type": "string", "minLength": 1},
    "key_errors": {"type": "string", "minLength": 1}
  }
}`

// maxSchemaBytes bounds a schema fetched from schema_url.
const maxSchemaBytes = 4 << 20

// JSONSchema is Sesam's json_schema transform: it validates every entity
// against a JSON Schema and writes the result into the entity: key_valid
// ("valid") true or false, and, for an invalid entity, key_errors
// ("errors") as a list of messages ("<field>: <problem>", the field being
// "(root)" for the entity itself). Entities are never dropped.
//
// The schema is compiled once per pipe: an inline schema when the config
// is compiled (a schema that does not compile is a config error), a
// schema_url on the pipe's first run, fetched through the system:url named
// by system, then kept for the life of the process.
type JSONSchema struct {
	keyValid, keyErrors string

	url    string
	system *URLSystem

	mu     sync.Mutex
	schema *gojsonschema.Schema // nil until a schema_url is fetched
}

func newJSONSchemaTransform(b *engine.Build, cfg map[string]any) (engine.Transform, error) {
	t := &JSONSchema{keyValid: "valid", keyErrors: "errors"}
	if s, ok := cfg["key_valid"].(string); ok {
		t.keyValid = s
	}
	if s, ok := cfg["key_errors"].(string); ok {
		t.keyErrors = s
	}
	if t.keyValid == t.keyErrors {
		return nil, engine.Fieldf("/key_errors", "key_errors must differ from key_valid (%q)", t.keyValid)
	}
	inline, hasInline := cfg["schema"]
	_, hasURL := cfg["schema_url"]
	switch {
	case hasInline && hasURL:
		return nil, engine.Fieldf("/schema_url", "give schema or schema_url, not both")
	case !hasInline && !hasURL:
		return nil, engine.Fieldf("", "json_schema needs schema (the JSON Schema) or schema_url with system (a system:url to fetch it through)")
	case hasURL && cfg["system"] == nil:
		return nil, engine.Fieldf("/schema_url", "schema_url needs system: the system:url it is fetched through")
	}
	if hasInline {
		sch, err := gojsonschema.NewSchema(gojsonschema.NewGoLoader(inline))
		if err != nil {
			return nil, engine.Fieldf("/schema", "the JSON Schema does not compile: %v", err)
		}
		t.schema = sch
		return t, nil
	}
	t.url, _ = cfg["schema_url"].(string)
	sysID, _ := cfg["system"].(string)
	sys, err := b.System(sysID)
	if err != nil {
		return nil, engine.Fieldf("/system", "%v", err)
	}
	us, ok := sys.(*URLSystem)
	if !ok {
		return nil, engine.Fieldf("/system", "system %q is not a system:url (schema_url is fetched through one)", sysID)
	}
	t.system = us
	return t, nil
}

// load fetches and compiles the schema of schema_url once; a failure is
// tried again by the next call (it may be temporary).
func (t *JSONSchema) load(ctx context.Context) (*gojsonschema.Schema, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.schema != nil {
		return t.schema, nil
	}
	u := t.system.Resolve(t.url)
	req, err := t.system.NewRequest(ctx, http.MethodGet, u)
	if err != nil {
		return nil, fmt.Errorf("json_schema: schema_url: %w", err)
	}
	resp, err := t.system.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("json_schema: fetching schema_url %s: %w", redact(u), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSchemaBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("json_schema: fetching schema_url %s: %w", redact(u), err)
	case resp.StatusCode/100 != 2:
		return nil, fmt.Errorf("json_schema: fetching schema_url %s: HTTP %d: %s", redact(u), resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 300)])))
	case len(body) > maxSchemaBytes:
		return nil, fmt.Errorf("json_schema: schema_url %s: the schema is larger than %d bytes", redact(u), maxSchemaBytes)
	}
	sch, err := gojsonschema.NewSchema(gojsonschema.NewBytesLoader(body))
	if err != nil {
		return nil, fmt.Errorf("json_schema: the schema at %s does not compile: %w", redact(u), err)
	}
	t.schema = sch
	return sch, nil
}

// Transform validates each entity and returns copies with the result.
func (t *JSONSchema) Transform(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
	sch := t.schema
	if t.system != nil {
		var err error
		if sch, err = t.load(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]engine.Entity, 0, len(in))
	var buf []byte
	for _, e := range in {
		// Entities in Ferry's value model (json.Number numbers) are
		// validated as they are; others (numbers a transform made) through
		// their canonical JSON. Either way numbers are json.Number, so
		// bounds and "integer" see the exact value.
		loader := gojsonschema.NewRawLoader(map[string]any(e))
		if !rawOK(map[string]any(e), 0) {
			var err error
			if buf, err = engine.AppendCanonical(buf[:0], map[string]any(e)); err != nil {
				return nil, &engine.EntityError{ID: engine.ID(e), Err: fmt.Errorf("json_schema: %w", err)}
			}
			loader = gojsonschema.NewBytesLoader(buf)
		}
		res, err := sch.Validate(loader)
		if err != nil {
			return nil, &engine.EntityError{ID: engine.ID(e), Err: fmt.Errorf("json_schema: %w", err)}
		}
		n := make(engine.Entity, len(e)+2)
		for k, v := range e {
			n[k] = v
		}
		n[t.keyValid] = res.Valid()
		if !res.Valid() {
			n[t.keyErrors] = schemaErrors(res.Errors())
		}
		out = append(out, n)
	}
	return out, nil
}

// rawOK reports whether v holds only the types gojsonschema's decoder
// produces (maps, slices, strings, booleans, nil and json.Number), so it
// can be validated without encoding it first.
func rawOK(v any, depth int) bool {
	if depth > 1000 {
		return false
	}
	switch x := v.(type) {
	case nil, bool, string, json.Number:
		return true
	case map[string]any:
		for _, e := range x {
			if !rawOK(e, depth+1) {
				return false
			}
		}
		return true
	case []any:
		for _, e := range x {
			if !rawOK(e, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

// schemaErrors renders validation errors as "<field>: <problem>", sorted.
func schemaErrors(errs []gojsonschema.ResultError) []any {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, e.Field()+": "+e.Description())
	}
	sort.Strings(msgs)
	out := make([]any, len(msgs))
	for i, m := range msgs {
		out[i] = m
	}
	return out
}

// NewRequest builds a request to u with the system's headers and
// credentials.
func (s *URLSystem) NewRequest(ctx context.Context, method, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range s.Headers {
		req.Header.Set(k, v)
	}
	if s.User != "" {
		req.SetBasicAuth(s.User, s.Pass)
	} else if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	return req, nil
}
