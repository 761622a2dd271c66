package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestCompat runs compat over a small corpus whose unsupported parts stay
// unsupported: an ldap source, a mail sink, an unknown template and an
// unknown DTL function; a nested chained transform is flattened.
func TestCompat(t *testing.T) {
	if !dtlImplemented() {
		t.Skip("transform dtl is not implemented yet: every shim pipe is unsupported")
	}
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good-connector/manifest.json", `{"additional_parameters": {"base_url": {}}, "system-template": "templates/system.json", "datatypes": {"a": {"template": "templates/a.json"}}}`)
	write("good-connector/templates/system.json", `{"_id": "{{@ system @}}", "type": "system:url", "base_url": "$ENV(base_url)", "authentication": "bearer", "token": "$SECRET(t)"}`)
	write("good-connector/templates/a.json", `{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "embedded", "entities": []},
		"transform": [{"type": "chained", "transforms": [{"type": "dtl", "rules": {"default": [["copy", "*"]]}}]}]}`)
	write("odd-connector/manifest.json", `{"datatypes": {"a": {"template": "templates/a.json"}}}`)
	write("odd-connector/templates/a.json", `[
		{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "ldap"}, "sink": {"type": "mail"}},
		{"_id": "{{@ system @}}-{{@ datatype @}}-x", "type": "pipe", "source": {"type": "embedded", "entities": []},
		 "transform": [{"type": "dtl", "rules": {"default": [["add", "x", ["no-such-fn", 1]], ["add", "y", ["no-such-fn", 2]]]}},
		               {"type": "template", "template": "no-such-template", "properties": {}}]}]`)
	write("broken-connector/manifest.json", `{"datatypes": {,}}`)
	write("_edgecases/x/input/manifest.json", `{}`)
	write("not-a-connector/readme.txt", `x`)

	code, out, errOut := runCLI(t, "compat", root, "--json")
	if code != exitFailed {
		t.Errorf("exit %d, want 1 (a connector does not expand): %s", code, errOut)
	}
	var got map[string]struct {
		Components  int            `json:"components"`
		Valid       int            `json:"valid"`
		Unsupported map[string]int `json:"unsupported"`
		Error       string         `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(got) != 3 {
		t.Errorf("connectors %v, want good, odd and broken only", got)
	}
	if g := got["good-connector"]; g.Components != 3 || g.Valid != 3 || len(g.Unsupported) != 0 {
		t.Errorf("good-connector %+v", g)
	}
	odd := got["odd-connector"]
	want := map[string]int{"source:ldap": 1, "sink:mail": 1, "dtl:no-such-fn": 2, "template:no-such-template": 1}
	for k, n := range want {
		if odd.Unsupported[k] != n {
			t.Errorf("odd-connector unsupported %v, want %s %d", odd.Unsupported, k, n)
		}
	}
	if odd.Components != 3 || odd.Valid != 1 { // only the shim pipe
		t.Errorf("odd-connector %+v", odd)
	}
	if b := got["broken-connector"]; !strings.Contains(b.Error, "manifest.json") {
		t.Errorf("broken-connector %+v", b)
	}

	code, out, _ = runCLI(t, "compat", root)
	if code != exitFailed || !strings.Contains(out, "odd-connector: 3 components, 1 valid") || !strings.Contains(out, "source:ldap") {
		t.Errorf("text: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "compat", root, "--markdown")
	if !strings.Contains(out, "| odd-connector | 3 | 1 | ") || !strings.Contains(out, "| `dtl:no-such-fn` | 2 | odd |") {
		t.Errorf("markdown: %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "compat", filepath.Join(root, "nope")); code != exitUsage {
		t.Errorf("missing dir: exit %d", code)
	}
}

// TestCompatibilityDoc checks that docs/compatibility.md is what the
// command prints for the shared corpus. It fails whenever support changes
// until the file is regenerated (see the top of the file).
func TestCompatibilityDoc(t *testing.T) {
	if !fileExists(sharedConnectors) {
		t.Skipf("shared corpus not found at %s", sharedConnectors)
	}
	want, err := os.ReadFile("../../docs/compatibility.md")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "compat", sharedConnectors, "--markdown")
	if code != exitOK {
		t.Fatalf("compat: exit %d: %s", code, errOut)
	}
	if out != string(want) {
		t.Errorf("docs/compatibility.md is stale; regenerate it with\n  %s\n(from the repository root)", compatCommand)
		gl, wl := strings.Split(out, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if !reflect.DeepEqual(g, w) {
				t.Logf("first difference at line %d:\n got %s\nwant %s", i+1, g, w)
				break
			}
		}
	}
}
