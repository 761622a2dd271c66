package dtl

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzCompile feeds arbitrary JSON rules to Compile and, when they compile,
// runs them on a fixed entity: neither may panic, and runtime failures must
// come back as *Error values.
func FuzzCompile(f *testing.F) {
	files, _ := filepath.Glob("testdata/rules/*.json")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
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
