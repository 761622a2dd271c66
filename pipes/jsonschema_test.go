package pipes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/pipes/all"
)

// The json_schema transform writes valid/errors as Sesam's docs show,
// compares numbers exactly, and honours key_valid/key_errors.
func TestJSONSchemaTransform(t *testing.T) {
	e := setup(t, `[
 {"_id": "men", "type": "pipe", "source": {"type": "embedded", "entities": [
   {"_id": "3", "name": "Jim"},
   {"_id": "5", "name": "Bob", "born": "1972-03-12"},
   {"_id": "7", "name": "Big", "born": "x", "n": 12345678901234567891}]},
  "transform": {"type": "json_schema", "schema": {"type": "object",
    "properties": {"name": {"type": "string"}, "born": {"type": "string"}, "n": {"type": "integer", "maximum": 12345678901234567890}},
    "required": ["name", "born"]}}},
 {"_id": "computed", "type": "pipe", "source": {"type": "embedded", "entities": [{"_id": "1"}]},
  "transform": [{"type": "jq", "expression": ".n = 1 + 1 | .f = 0.5 * 3"},
    {"type": "json_schema", "schema": {"properties": {"n": {"type": "integer", "maximum": 2}, "f": {"type": "number", "minimum": 1.5}}}}]},
 {"_id": "custom", "type": "pipe", "source": {"type": "dataset", "dataset": "men"},
  "transform": [{"type": "jq", "expression": "del(.valid, .errors)"},
    {"type": "json_schema", "key_valid": "ok", "key_errors": "why", "schema": {"required": ["born"]}}]}]`, nil)
	e.mustRun("men")
	got := e.latest("men")
	if v := got["5"]; v["valid"] != true || v["errors"] != nil {
		t.Errorf("valid entity: %v", v)
	}
	if v := got["3"]; v["valid"] != false || !sameJSON(v["errors"], `["(root): born is required"]`) || v["name"] != "Jim" {
		t.Errorf("invalid entity: %v", v)
	}
	// 12345678901234567891 > 12345678901234567890: float64 would see them equal.
	if v := got["7"]; v["valid"] != false || !strings.Contains(asJSON(v["errors"]), "n: Must be less than or equal to") {
		t.Errorf("exact numbers: %v", v)
	}
	// Numbers a transform computed (not json.Number) are validated too.
	e.mustRun("computed")
	if v := e.latest("computed")["1"]; v["valid"] != true {
		t.Errorf("computed numbers: %v", v)
	}
	e.mustRun("custom")
	got = e.latest("custom")
	if v := got["3"]; v["ok"] != false || v["why"] == nil || v["valid"] != nil {
		t.Errorf("key_valid/key_errors: %v", v)
	}
	if v := got["5"]; v["ok"] != true || v["why"] != nil {
		t.Errorf("key_valid on a valid entity: %v", v)
	}
}

// schema_url is fetched through the system:url (with its credentials) on
// the first run only, and compiled once; a failed fetch fails the run and
// is tried again by the next.
func TestJSONSchemaURL(t *testing.T) {
	var hits atomic.Int64
	var broken atomic.Bool
	broken.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cr3t" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		hits.Add(1)
		if broken.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"type": "object", "required": ["email"]}`))
	}))
	defer srv.Close()
	e := setup(t, `[
 {"_id": "schemas", "type": "system:url", "base_url": "`+srv.URL+`/schemas/", "authentication": "bearer", "token": "s3cr3t"},
 {"_id": "p", "type": "pipe", "batch_size": 1,
  "source": {"type": "embedded", "entities": [{"_id": "a", "email": "a@x"}, {"_id": "b"}, {"_id": "c"}]},
  "transform": {"type": "json_schema", "schema_url": "person.json", "system": "schemas"}}]`, nil)
	if _, err := e.run("p"); err == nil || !strings.Contains(err.Error(), "schemas/person.json: HTTP 503: down for maintenance") {
		t.Fatalf("run with the schema server down: %v", err)
	}
	broken.Store(false)
	e.mustRun("p")
	got := e.latest("p")
	if got["a"]["valid"] != true || got["b"]["valid"] != false || len(got) != 3 {
		t.Errorf("entities: %v", got)
	}
	before := hits.Load()
	e.mustRun("p")
	if n := hits.Load() - before; n != 0 {
		t.Errorf("the schema was fetched %d more times after it compiled", n)
	}
}

func TestJSONSchemaConfigErrors(t *testing.T) {
	for _, c := range []struct{ transform, want string }{
		{`{"type": "json_schema"}`, "/transform: json_schema needs schema (the JSON Schema) or schema_url with system"},
		{`{"type": "json_schema", "schema": {}, "schema_url": "x", "system": "u"}`, "/transform/schema_url: give schema or schema_url, not both"},
		{`{"type": "json_schema", "schema_url": "x"}`, "/transform/schema_url: schema_url needs system"},
		{`{"type": "json_schema", "schema": {"type": "nonsense"}}`, "/transform/schema: the JSON Schema does not compile"},
		{`{"type": "json_schema", "schema": {}, "key_valid": "x", "key_errors": "x"}`, `/transform/key_errors: key_errors must differ from key_valid ("x")`},
		{`{"type": "json_schema", "schema_url": "x", "system": "nope"}`, `/transform/system: unknown system "nope"`},
	} {
		err := compileErr(t, `[{"_id": "p", "type": "pipe", "source": {"type": "embedded", "entities": []}, "transform": `+c.transform+`}]`)
		if !strings.Contains(err, c.want) || !strings.Contains(err, `(pipe "p", transform[0])`) {
			t.Errorf("%s: %s\nwant %q", c.transform, err, c.want)
		}
	}
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func sameJSON(v any, want string) bool {
	var w any
	json.Unmarshal([]byte(want), &w)
	return asJSON(v) == asJSON(w)
}

// latest returns a dataset's latest versions by _id, decoded.
func (e *env) latest(ds string) map[string]map[string]any {
	e.t.Helper()
	out := map[string]map[string]any{}
	_, err := e.store.Scan(context.Background(), ds, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		v, err := engine.DecodeEntity(r.Body)
		out[r.ID] = v
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// BenchmarkJSONSchema validates entities of ~10 fields against a schema
// with types, a pattern and bounds (the transform's per-entity cost).
func BenchmarkJSONSchema(b *testing.B) {
	plan := enginetest.Plan(b, all.Registry(), b.TempDir(), `{"_id": "p", "type": "pipe", "source": {"type": "embedded", "entities": []},
	  "transform": {"type": "json_schema", "schema": {"type": "object", "required": ["_id", "name", "email", "age"],
	    "properties": {"name": {"type": "string", "minLength": 1}, "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
	      "age": {"type": "integer", "minimum": 0, "maximum": 150}, "tags": {"type": "array", "items": {"type": "string"}}}}}}`)
	tr := plan.Pipe("p").Transforms[0]
	batch := make([]engine.Entity, 100)
	for i := range batch {
		batch[i] = engine.Entity{"_id": fmt.Sprint(i), "name": "Ada Lovelace", "email": "ada@example.com", "age": json.Number("36"),
			"tags": []any{"a", "b"}, "city": "London", "zip": "N1", "phone": "+44 20", "score": json.Number("12.5"), "active": true}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.Transform(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/entity")
}
