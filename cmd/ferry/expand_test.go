package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sharedConnectors is the connector corpus next to the module root.
const sharedConnectors = "../../../shared/connectors"

// expandCase is a connector (or edge case) with its expected result.
type expandCase struct {
	name, input, expanded, errTxt string
}

func expandCases(t *testing.T, root string) []expandCase {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var cases []expandCase
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		switch {
		case !e.IsDir():
		case e.Name() == "_edgecases":
			sub, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sub {
				d := filepath.Join(dir, s.Name())
				c := expandCase{name: "_edgecases/" + s.Name(), input: filepath.Join(d, "input")}
				if fileExists(filepath.Join(d, "error.txt")) {
					c.errTxt = filepath.Join(d, "error.txt")
				} else {
					c.expanded = filepath.Join(d, "expanded.json")
				}
				cases = append(cases, c)
			}
		case fileExists(filepath.Join(dir, "manifest.json")):
			cases = append(cases, expandCase{name: e.Name(), input: dir, expanded: filepath.Join(dir, "expanded.json")})
		}
	}
	return cases
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func decodeJSON(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v in:\n%s", err, data)
	}
	return v
}

// TestExpandGolden runs `ferry expand` on every connector and edge case of
// the shared corpus and of manifest/testdata: the output is sesam-py's
// expanded.json as parsed JSON (same order of components), or, where
// sesam-py failed, exit 2 with a message naming the template file.
func TestExpandGolden(t *testing.T) {
	roots := []string{"../../manifest/testdata"}
	if fileExists(sharedConnectors) {
		roots = append(roots, sharedConnectors)
	} else {
		t.Logf("shared corpus not found at %s; only manifest/testdata runs", sharedConnectors)
	}
	n := 0
	for _, root := range roots {
		for _, c := range expandCases(t, root) {
			n++
			t.Run(filepath.Base(root)+"/"+c.name, func(t *testing.T) {
				code, out, errOut := runCLI(t, "expand", c.input, "--system", "xxxxxx")
				if c.errTxt != "" {
					if code != exitUsage || out != "" || !strings.Contains(errOut, "templates/") || !strings.Contains(errOut, ".json:") {
						t.Errorf("exit %d, stdout %q, stderr %q: want exit 2 and a message naming the template file", code, out, errOut)
					}
					return
				}
				if code != exitOK {
					t.Fatalf("exit %d: %s", code, errOut)
				}
				want, err := os.ReadFile(c.expanded)
				if err != nil {
					t.Fatal(err)
				}
				got, exp := decodeJSON(t, []byte(out)).([]any), decodeJSON(t, want).([]any)
				if len(got) != len(exp) {
					t.Fatalf("%d components, want %d", len(got), len(exp))
				}
				for i := range got {
					if !reflect.DeepEqual(got[i], exp[i]) {
						g, _ := json.Marshal(got[i])
						w, _ := json.Marshal(exp[i])
						t.Errorf("component %d:\n got %s\nwant %s", i, g, w)
					}
				}
			})
		}
	}
	if n < 5 {
		t.Fatalf("only %d cases found", n)
	}
}

// TestExpandOutputFormat checks the printed form: 2-space indent, keys in
// template order (not sorted), the default system placeholder.
func TestExpandOutputFormat(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"manifest.json":    `{"datatypes": {"a": {"template": "templates/a.json"}}}`,
		"templates/a.json": `{"type": "pipe", "_id": "{{@ system @}}-{{@ datatype @}}", "source": {"type": "embedded", "entities": []}}`,
	})
	code, out, errOut := runCLI(t, "expand", dir)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, "[\n  {\n    \"type\": \"pipe\",\n    \"_id\": \"xxxxxx-a\",\n    \"source\": {\n      \"type\": \"embedded\",") {
		t.Errorf("output:\n%s", out)
	}
	code, out, _ = runCLI(t, "expand", dir, "--system", "crm")
	if code != exitOK || !strings.Contains(out, `"_id": "crm-a"`) || !strings.Contains(out, `"_id": "crm-a-transform"`) {
		t.Errorf("--system crm: %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "expand"); code != exitUsage {
		t.Errorf("no dir: exit %d", code)
	}
}

// TestExpandOut writes the files sesam-py's expand_connector writes, with
// the webhook permission on "-event" http_endpoint pipes.
func TestExpandOut(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"manifest.json":         `{"use_webhook_secret": true, "system-template": "templates/system.json", "datatypes": {"a": {"template": "templates/a.json"}}}`,
		"templates/system.json": `{"_id": "{{@ system @}}", "type": "system:url", "base_url": "https://x/", "token": "$SECRET(t)"}`,
		"templates/a.json": `[{"_id": "{{@ system @}}-{{@ datatype @}}-event", "type": "pipe", "source": {"type": "http_endpoint"}},
			{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "embedded", "entities": []}}]`,
	})
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, errOut := runCLI(t, "expand", dir, "--system", "s", "--out", out)
	if code != exitOK || !strings.Contains(stdout, "wrote 3 pipes and 1 system") {
		t.Fatalf("exit %d: %s %s", code, stdout, errOut)
	}
	for _, f := range []string{"pipes/s-a-event.conf.json", "pipes/s-a-collect.conf.json", "pipes/s-a-transform.conf.json", "systems/s.conf.json"} {
		if !fileExists(filepath.Join(out, f)) {
			t.Errorf("%s not written", f)
		}
	}
	data, _ := os.ReadFile(filepath.Join(out, "pipes/s-a-event.conf.json"))
	if !strings.Contains(string(data), `"group:Anonymous"`) {
		t.Errorf("event pipe without the webhook permission:\n%s", data)
	}
	data, _ = os.ReadFile(filepath.Join(out, "systems/s.conf.json"))
	if !strings.Contains(string(data), `"$SECRET(t)"`) {
		t.Errorf("system file:\n%s", data)
	}
}

// TestExpandBadInput: every bad input of the issue fails with exit 2 and
// a message naming the file.
func TestExpandBadInput(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"manifest is not JSON", map[string]string{"manifest.json": "{\n \"datatypes\": {,}\n}"},
			[]string{"manifest.json:2:", "not valid JSON"}},
		{"datatype without template", map[string]string{"manifest.json": `{"datatypes": {"a": {"label": "A"}}}`},
			[]string{"manifest.json", "/datatypes/a/template"}},
		{"template outside the connector", map[string]string{"manifest.json": `{"datatypes": {"a": {"template": "../x.json"}}}`},
			[]string{"manifest.json", "outside the connector directory"}},
		{"unclosed expansion tag", map[string]string{
			"manifest.json":    `{"datatypes": {"a": {"template": "templates/a.json"}}}`,
			"templates/a.json": `[{"_id": "{{@ system -collect", "type": "pipe"}]`},
			[]string{"templates/a.json:1:", `"@}}"`}},
		{"invalid JSON output", map[string]string{
			"manifest.json":    `{"datatypes": {"a": {"template": "templates/a.json"}}}`,
			"templates/a.json": "[{\"_id\": \"{{@ system @}}\",}]"},
			[]string{"templates/a.json:1:", "not valid JSON"}},
		{"hyphenated variable", map[string]string{
			"manifest.json":    `{"additional_parameters": {"my-param": {}}, "datatypes": {"a": {"template": "templates/a.json"}}}`,
			"templates/a.json": `{"_id": "x", "type": "pipe", "v": "{{@ my-param @}}"}`},
			[]string{"templates/a.json", "'my' is undefined"}},
		{"bad additional_parameters name", map[string]string{"manifest.json": `{"additional_parameters": {"base url": {}}, "datatypes": {}}`},
			[]string{"manifest.json", `"base url"`}},
		{"no manifest", map[string]string{"other.json": `{}`},
			[]string{"manifest.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			code, out, errOut := runCLI(t, "expand", dir)
			if code != exitUsage || out != "" {
				t.Errorf("exit %d, stdout %q; want exit 2 and nothing on stdout", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not contain %q", errOut, w)
				}
			}
		})
	}
}

// writeFiles writes files (slash path -> content) into a fresh directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// What `ferry expand --out` writes validates as it is (with its
// test-env.json as --env): validate reads a Sesam node layout's pipes/,
// systems/ and node-metadata.conf.json, not test-env.json or expected/.
func TestValidateAcceptsExpandOut(t *testing.T) {
	conn := writeFiles(t, map[string]string{
		"manifest.json": `{"additional_parameters": {"base_url": {}}, "system-template": "templates/system.json",
			"datatypes": {"a": {"template": "templates/a.json"}}}`,
		"templates/system.json": `{"_id": "{{@ system @}}", "type": "system:url", "base_url": "$ENV(base_url)"}`,
		"templates/a.json": `[{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe",
			"source": {"type": "json", "system": "{{@ system @}}", "url": "a.json"}}]`,
	})
	out := filepath.Join(t.TempDir(), "out")
	if code, stdout, errOut := runCLI(t, "expand", conn, "--system", "s", "--out", out); code != exitOK {
		t.Fatalf("expand: %d %s %s", code, stdout, errOut)
	}
	os.MkdirAll(filepath.Join(out, "expected"), 0o755)
	os.WriteFile(filepath.Join(out, "expected", "s-a-collect.json"), []byte(`[{"_id": "1"}]`), 0o644)
	os.WriteFile(filepath.Join(out, "test-env.json"), []byte(`{"node-env": "test", "base_url": "https://x.example/"}`), 0o644)
	code, stdout, errOut := runCLI(t, "validate", out, "--env", filepath.Join(out, "test-env.json"))
	if code != exitOK || !strings.Contains(stdout, "ok: 2 pipes and 1 system valid") {
		t.Errorf("validate = %d %q %s", code, stdout, errOut)
	}
}
