package dtl

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/ferrydata/ferry/internal/corpus"
)

// fuzzRuleSeeds returns DTL rule sets as JSON: testdata/rules and, when
// the connector corpus is there, every dtl transform of its expansions.
func fuzzRuleSeeds() [][]byte {
	var out [][]byte
	files, _ := filepath.Glob("testdata/rules/*.json")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			out = append(out, data)
		}
	}
	for _, data := range corpus.ReadAll("*/expanded.json") {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			continue
		}
		found := map[string]map[string]any{}
		dtlTransforms(v, "", found)
		keys := make([]string, 0, len(found))
		for k := range found {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if b, err := json.Marshal(found[k]); err == nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// FuzzCompile feeds arbitrary JSON rules to Compile and, when they compile,
// runs them on a fixed entity: neither may panic, and runtime failures must
// come back as *Error values.
func FuzzCompile(f *testing.F) {
	for _, data := range fuzzRuleSeeds() {
		f.Add(data)
	}
	for _, s := range []string{
		`{"default": [["add", "a", ["concat", "_S.x", ["string", 1]]]]}`,
		`{"default": [["if", ["eq", "_S.x", 1], [["add", "a", 1]], ["discard"]]]}`,
		`{"default": [["copy", "*", ["list", "_*"]], ["add", "b", ["apply", "r", "_S."]]], "r": [["merge", "_S."]]}`,
		`{"default": [["add", "a", ["datetime-parse", "%Y-%m-%d", "2020-01-01"]]]}`,
		`{"default": [["add", "a", ["hops", {"datasets": ["d x"], "where": ["eq", "_S.x", "x.y"]}]]]}`,
		`{"default": [["add", "a", ["map", ["sorted", "_."], ["tuples", "_S.x", ["list", 1, 2]]]]]}`,
		`{"default": [["add", "a", ["apply", "default", "_S."]]]}`,
	} {
		f.Add([]byte(s))
	}
	src := map[string]any{"_id": "1", "x": json.Number("1"), "l": []any{"a", json.Number("2")}, "d": map[string]any{"k": "v"}}
	hop := hopperFunc(func(context.Context, string, []string, []any) ([]map[string]any, error) {
		return []map[string]any{{"_id": "h", "y": json.Number("1")}}, nil
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var rules map[string]any
		if err := dec.Decode(&rules); err != nil {
			return
		}
		p, err := Compile(rules, Options{IDRequired: true, Hops: hop, MaxDepth: 16})
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("compile error %T is not *Error: %v", err, err)
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := p.Apply(ctx, src); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("apply error %T is not *Error: %v", err, err)
			}
		}
	})
}

// FuzzEval runs real rule sets (testdata and the connector corpus) on
// arbitrary entities: evaluation may fail, but only with an *Error, never
// a panic or a hang, and a result entity is a JSON object with a string
// _id when id_required holds.
func FuzzEval(f *testing.F) {
	var progs []*Program
	hop := hopperFunc(func(_ context.Context, _ string, _ []string, values []any) ([]map[string]any, error) {
		if len(values) == 0 {
			return nil, nil
		}
		return []map[string]any{{"_id": "h", "y": json.Number("1"), "v": values[0]}}, nil
	})
	for _, data := range fuzzRuleSeeds() {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var rules map[string]any
		if dec.Decode(&rules) != nil {
			continue
		}
		if p, err := Compile(rules, Options{IDRequired: true, Hops: hop, MaxDepth: 16}); err == nil {
			progs = append(progs, p)
		}
	}
	if len(progs) == 0 {
		f.Skip("no rule set compiles")
	}
	for _, s := range []string{
		`{"_id": "1", "x": 1, "l": ["a", 2], "d": {"k": "v"}}`,
		`{"_id": "a:b", "_deleted": true, "$ids": ["x:1"], "name": "N", "Id": 7, "LastChanged": "2024-01-01T00:00:00Z"}`,
		`{"_id": "2", "properties": {"name": "x", "createdate": "2020-01-01T00:00:00.000Z", "hs_object_id": "9"}, "associations": {"companies": {"results": [{"id": "1", "type": "contact_to_company"}]}}}`,
		`{"_id": "3", "$children": [{"_id": "c"}], "x": null, "y": 1e400, "z": "\u0000"}`,
	} {
		for i := range progs {
			f.Add(uint16(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint16, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var src map[string]any
		if dec.Decode(&src) != nil || src == nil {
			return
		}
		if _, ok := src["_id"].(string); !ok {
			src["_id"] = "x"
		}
		p := progs[int(which)%len(progs)]
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		out, err := p.Apply(ctx, src)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("apply error %T is not *Error: %v", err, err)
			}
			return
		}
		for _, e := range out {
			if e == nil {
				t.Fatal("nil result entity")
			}
			if _, err := json.Marshal(e); err != nil {
				t.Fatalf("result is not JSON: %v", err)
			}
		}
	})
}
