package all_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/internal/corpus"
	"github.com/ferrydata/ferry/pipes/all"
)

// FuzzCompileConfig loads and compiles arbitrary config documents with the
// standard registry, as ferry validate does: never a panic; a failure is a
// *ConfigError whose error diagnostics have messages; a compiled plan can
// be ordered. Seeds: the example configs, the connector corpus's
// expansions (one connector, and single components of each) and config
// snippets of the tests.
func FuzzCompileConfig(f *testing.F) {
	files, _ := filepath.Glob("../../examples/*/config/*.json")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	for _, data := range corpus.ReadAll("*/expanded.json") {
		var comps []json.RawMessage
		if json.Unmarshal(data, &comps) != nil {
			continue
		}
		for i, c := range comps {
			if i%4 == 0 { // a sample keeps the seed corpus small
				f.Add([]byte(c))
			}
		}
	}
	for _, s := range []string{
		`[{"_id":"a","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1"}]},"transform":{"type":"jq","expression":".x = 1"}},
		  {"_id":"b","type":"pipe","source":{"type":"dataset","dataset":"a"},"transform":{"type":"dtl","rules":{"default":[["copy","*"]]}}}]`,
		`[{"_id":"x","type":"pipe","source":{"type":"dataset","dataset":"y"}},{"_id":"y","type":"pipe","source":{"type":"dataset","dataset":"x"}}]`,
		`{"_id":"s","type":"system:rest","url_pattern":"https://x/%s","operations":{"list":{"url":"items","next_page_link":"{{ body.next }}"}}}`,
		`{"_id":"p","type":"pipe","source":{"type":"json","url":"x.json"},"transform":{"type":"json_schema","schema":{"required":["a"]}},"sink":{"deletion_threshold_factor":0.2}}`,
		`{"_id":"p","type":"pipe","source":{"type":"merge_datasets","datasets":["a","b"]},"pump":{"cron_expression":"* * * * *"}}`,
		`[1, "x", null, {"_id": ""}, {"_id": "a/b", "type": "pipe"}]`,
		`{"_id":"u","type":"system:url","base_url":"$ENV(x)","authentication":"digest"}`,
	} {
		f.Add([]byte(s))
	}
	reg := all.Registry()
	env := func(name string) (string, bool) { return "env-" + name, !strings.HasPrefix(name, "missing") }
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			t.Skip()
		}
		cfg, err := engine.ParseConfig("fuzz.json", data, env)
		var ce *engine.ConfigError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("ParseConfig error %T: %v", err, err)
		}
		if cfg == nil {
			t.Fatal("ParseConfig returned no config")
		}
		checkDiagnostics(t, cfg.Diagnostics)
		if err != nil {
			return
		}
		plan, err := engine.Compile(cfg, reg, nil)
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("Compile error %T: %v", err, err)
		}
		if plan == nil {
			t.Fatal("Compile returned no plan")
		}
		checkDiagnostics(t, plan.Diagnostics)
		if err == nil {
			plan.Order()
			for _, p := range plan.Pipes {
				plan.Readers(p.Output)
			}
		}
	})
}

func checkDiagnostics(t *testing.T, ds engine.Diagnostics) {
	t.Helper()
	for _, d := range ds {
		if d.Message == "" {
			t.Fatalf("diagnostic without a message: %+v", d)
		}
		if strings.Contains(d.Message, "internal error") || strings.Contains(d.Message, "panic") {
			t.Fatalf("internal error: %s", d)
		}
	}
}
