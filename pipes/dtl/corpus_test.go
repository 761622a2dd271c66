package dtl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func decodeJSON(t testing.TB, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v
}

// dtlTransforms collects every {"type": "dtl"} object in an expanded
// connector config, keyed by "<pipe _id>#<n>".
func dtlTransforms(v any, owner string, out map[string]map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		if id, ok := x["_id"].(string); ok {
			owner = id
		}
		if x["type"] == "dtl" {
			if rules, ok := x["rules"].(map[string]any); ok {
				n := 0
				key := owner
				for {
					if _, dup := out[key]; !dup {
						break
					}
					n++
					key = owner + "#" + json.Number(rune('0'+n)).String()
				}
				out[key] = rules
			}
		}
		for _, e := range x {
			dtlTransforms(e, owner, out)
		}
	case []any:
		for _, e := range x {
			dtlTransforms(e, owner, out)
		}
	}
}

func corpusRules(t *testing.T) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	files, _ := filepath.Glob("/work/shared/connectors/*/expanded.json")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		conn := filepath.Base(filepath.Dir(f))
		found := map[string]map[string]any{}
		dtlTransforms(decodeJSON(t, data), "", found)
		for k, v := range found {
			out[conn+"/"+k] = v
		}
	}
	return out
}

func testdataRules(t *testing.T) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	files, _ := filepath.Glob("testdata/rules/*.json")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out["testdata/"+filepath.Base(f)] = decodeJSON(t, data).(map[string]any)
	}
	return out
}

// TestCompileCorpus compiles every dtl transform of the public connectors
// (when /work/shared is present) plus the rule sets copied into testdata.
func TestCompileCorpus(t *testing.T) {
	all := testdataRules(t)
	if len(all) < 2 {
		t.Fatalf("expected at least 2 rule sets in testdata/rules, got %d", len(all))
	}
	corpus := corpusRules(t)
	if len(corpus) == 0 {
		t.Log("connector corpus absent; compiling testdata only")
	}
	for k, v := range corpus {
		all[k] = v
	}
	names := make([]string, 0, len(all))
	for k := range all {
		names = append(names, k)
	}
	sort.Strings(names)
	ok := 0
	opts := DefaultOptions()
	opts.Hops = &fakeHopper{}
	samples := []string{
		`{"_id": "1"}`,
		`{"_id": "2", "_deleted": true, "id": "5", "response": {"id": 5, "QuoteId": 9}, "node": {"modifiedAt": "2023-01-30T12:00:01Z"}}`,
		`{"_id": "3", "$operation": "lookup", "response_status": 200, "response_body": [{"a": 1}], "$source": {"a": 2, "$based_on": {"a": 1}}, "$origin": "~:x:1"}`,
	}
	for _, name := range names {
		p, err := Compile(all[name], opts)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		ok++
		// Smoke-run: no panics or internal errors; fail! and missing _id
		// are legitimate outcomes for made-up entities.
		for _, s := range samples {
			_, err := p.Apply(context.Background(), decodeJSON(t, []byte(s)).(map[string]any))
			if err != nil && !errors.Is(err, ErrFail) && !strings.Contains(err.Error(), "id_required") {
				t.Errorf("%s on %s: %v", name, s, err)
			}
		}
	}
	t.Logf("compiled %d/%d dtl transforms (%d from the connector corpus)", ok, len(all), len(corpus))
	used := map[string]int{}
	for _, r := range all {
		for n, c := range UsedFunctions(r) {
			used[n] += c
		}
	}
	supported := map[string]bool{}
	for _, f := range Functions() {
		supported[f] = true
	}
	for n := range used {
		if !supported[n] {
			t.Errorf("corpus uses unsupported function %q", n)
		}
	}
}

// TestCorpusFunctionList checks the 56 functions CORPUS.md counts are all
// supported.
func TestCorpusFunctionList(t *testing.T) {
	corpus := []string{"add", "copy", "apply", "if", "merge", "comment", "eq", "first", "filter", "list",
		"dict", "path", "is-not-null", "datetime-parse", "matches", "in", "and", "string", "not", "neq",
		"is-null", "max", "or", "discard", "hops", "split", "literal", "items", "map", "remove", "is-dict",
		"is-not-empty", "add-if", "concat", "coalesce", "create-child", "keys", "sorted", "fail!",
		"is-empty", "key-values", "integer", "last", "tuples", "all", "case-eq", "datetime",
		"datetime-plus", "has-key", "hash128", "json-transit", "map-dict", "ni", "substring",
		"merge-union", "uuid"}
	if len(corpus) != 56 {
		t.Fatalf("list has %d names", len(corpus))
	}
	supported := map[string]bool{}
	for _, f := range Functions() {
		supported[f] = true
	}
	for _, n := range corpus {
		if !supported[n] {
			t.Errorf("%q not supported", n)
		}
	}
}

// TestWaveCollect runs the wave connector's collect pipe DTL.
func TestWaveCollect(t *testing.T) {
	rules := decodeJSON(t, []byte(`{"default": [["merge", "_S.node"], ["add", "$last-updated", ["datetime", "_S.node.modifiedAt"]]]}`)).(map[string]any)
	p, err := Compile(rules, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	src := decodeJSON(t, []byte(`{"_id": "1", "_updated": 7, "node": {"id": "QnVzaW5lc3M6MQ==", "name": "Acme", "amount": 12345678901234567890.10, "modifiedAt": "2023-01-30T12:00:01.123Z", "tags": ["a"]}}`)).(map[string]any)
	out, err := p.Apply(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	want := decodeJSON(t, []byte(`[{"_id": "1", "id": "QnVzaW5lc3M6MQ==", "name": "Acme", "amount": 12345678901234567890.10, "modifiedAt": "2023-01-30T12:00:01.123Z", "tags": ["a"], "$last-updated": "~t2023-01-30T12:00:01.123Z"}]`))
	assertJSON(t, toAny(out), want)
}

func toAny(out []map[string]any) []any {
	l := make([]any, len(out))
	for i, o := range out {
		l[i] = o
	}
	return l
}

func assertJSON(t *testing.T, got, want any) {
	t.Helper()
	if canonicalJSON(got) != canonicalJSON(want) {
		t.Errorf("got  %s\nwant %s", canonicalJSON(got), canonicalJSON(want))
	}
}
