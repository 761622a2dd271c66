package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/internal/corpus"
	"github.com/ferrydata/ferry/templates"
)

var fuzzTemplatePath = regexp.MustCompile(`^templates/[A-Za-z0-9_-]{1,40}\.json$`)

// FuzzLoadExpand loads an arbitrary manifest whose template files all hold
// one arbitrary template, and expands it (plain and deploy mode): never a
// panic; a failure is a *LoadError from Load and a template error, or one
// naming the manifest, from Expand; every expanded component is a JSON
// object. Seeds: every connector of the corpus (its manifest with each of
// its templates) and the edge cases in testdata.
func FuzzLoadExpand(f *testing.F) {
	addConnector := func(dir string) {
		m, err := os.ReadFile(filepath.Join(dir, FileName))
		if err != nil {
			return
		}
		tpls, _ := filepath.Glob(filepath.Join(dir, "templates", "*.json"))
		for i, tp := range tpls {
			if i >= 3 {
				break
			}
			if t, err := os.ReadFile(tp); err == nil {
				f.Add(m, t, uint8(i))
			}
		}
	}
	for _, m := range corpus.Glob("*/" + FileName) {
		addConnector(filepath.Dir(m))
	}
	edge, _ := filepath.Glob("testdata/_edgecases/*/input")
	for _, d := range edge {
		addConnector(d)
	}
	for _, d := range []string{"testdata/wave-connector", "testdata/zendesk-connector"} {
		addConnector(d)
	}
	f.Add([]byte(`{"datatypes": {"a": {"template": "templates/a.json", "parameters": {"l": [1, {"x": true}], "o": {"k": null}}}}}`),
		[]byte(`[{"_id": "{{@ system @}}-{{@ datatype @}}", "l": {{@ l | tojson @}}, "k": "{{@ o.k @}}"}]`), uint8(0))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, manifest, tpl []byte, mode uint8) {
		if len(manifest) > 16<<10 || len(tpl) > 16<<10 {
			t.Skip()
		}
		if err := os.RemoveAll(filepath.Join(dir, "templates")); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(dir, "templates"), 0o755)
		if err := os.WriteFile(filepath.Join(dir, FileName), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		// Every template file the manifest names (plain names only) holds tpl.
		var loose struct {
			System    any                        `json:"system-template"`
			Datatypes map[string]json.RawMessage `json:"datatypes"`
		}
		json.Unmarshal(manifest, &loose)
		paths := []any{loose.System}
		for _, raw := range loose.Datatypes {
			var d struct{ Template any }
			json.Unmarshal(raw, &d)
			paths = append(paths, d.Template)
		}
		for _, p := range paths {
			if s, ok := p.(string); ok && fuzzTemplatePath.MatchString(s) {
				os.WriteFile(filepath.Join(dir, s), tpl, 0o644)
			}
		}
		start := time.Now()
		defer func() {
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("load and expand took %s", d)
			}
		}()
		m, err := Load(dir)
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) && !strings.Contains(err.Error(), FileName) {
				t.Fatalf("Load error %T does not name the manifest: %v", err, err)
			}
			return
		}
		opts := Options{System: "sys", Deploy: mode%2 == 1}
		if mode%3 == 2 {
			opts.Vars = map[string]any{"account_id": "42", "is_fullsync": true}
		}
		comps, err := m.Expand(opts)
		if err != nil {
			var te *templates.Error
			if !errors.As(err, &te) && !strings.Contains(err.Error(), dir) && !strings.Contains(err.Error(), FileName) {
				t.Fatalf("Expand error %T names neither a template nor the connector: %v", err, err)
			}
			if strings.Contains(err.Error(), "internal") {
				t.Fatalf("internal error: %v", err)
			}
			return
		}
		for _, c := range comps {
			var obj map[string]any
			if err := json.Unmarshal(c.JSON, &obj); err != nil {
				t.Fatalf("component %q is not a JSON object: %v: %s", c.ID, err, c.JSON)
			}
		}
	})
}
