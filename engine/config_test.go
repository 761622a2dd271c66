package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func noEnv(string) (string, bool) { return "", false }

func mapEnv(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadConfigDirectory(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"b.json":         `[{"_id":"p2","type":"pipe","source":{"type":"embedded"}},{"_id":"s1","type":"system:url"}]`,
		"a.json":         `{"_id":"p1","type":"pipe"}`,
		"sub/c.json":     `{"_id":"p3","type":"pipe"}`,
		"sub/readme.txt": `not json`,
		".hidden/x.json": `{"_id":"hidden","type":"pipe"}`,
		"node-meta.json": `{"_id":"node","type":"metadata"}`,
	})
	cfg, err := LoadConfig([]string{dir}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range cfg.Pipes {
		ids = append(ids, p.ID)
	}
	if strings.Join(ids, ",") != "p1,p2,p3" {
		t.Errorf("pipes = %v, want p1,p2,p3 (lexical file order, hidden dirs skipped)", ids)
	}
	if len(cfg.Systems) != 1 || cfg.System("s1") == nil || cfg.System("p1") != nil {
		t.Errorf("systems = %v", cfg.Systems)
	}
	p2 := cfg.Pipe("p2")
	if p2 == nil || p2.Pointer != "/0" || filepath.Base(p2.File) != "b.json" || !p2.IsPipe() {
		t.Errorf("p2 = %+v", p2)
	}
	if s := cfg.System("s1"); s.Pointer != "/1" || s.IsPipe() {
		t.Errorf("s1 = %+v", s)
	}
	if p := cfg.Pipe("p1"); p.Pointer != "" {
		t.Errorf("object-root file: pointer %q, want empty", p.Pointer)
	}
	if cfg.Pipe("nope") != nil {
		t.Error("Pipe(unknown) != nil")
	}
	if len(cfg.Diagnostics) != 0 {
		t.Errorf("diagnostics = %v", cfg.Diagnostics)
	}
	// A single file works too; a missing path is an error.
	if cfg, err := LoadConfig([]string{filepath.Join(dir, "a.json")}, noEnv); err != nil || len(cfg.Pipes) != 1 {
		t.Errorf("single file: %v", err)
	}
	if _, err := LoadConfig([]string{filepath.Join(dir, "missing")}, noEnv); err == nil {
		t.Error("missing path: no error")
	}
}

// configErrors loads files and returns the rendered error diagnostics.
func configErrors(t *testing.T, files map[string]string, env Env) (string, *ConfigError) {
	t.Helper()
	dir := writeFiles(t, files)
	_, err := LoadConfig([]string{dir}, env)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("LoadConfig error = %v, want *ConfigError", err)
	}
	return err.Error(), ce
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		text string
		want []string // substrings of the error text
	}{
		{"malformed", "[\n  {\"_id\": \"a\",\n   \"type\": \"pipe\" \"x\"}\n]", []string{"f.json:3:19: malformed JSON: expected ',' or '}' in object"}},
		{"truncated", `{"_id":"a"`, []string{"f.json:1:11: malformed JSON"}},
		{"no id", `[{"type":"pipe"}]`, []string{"f.json: /0: component has no _id"}},
		{"number id", `[{"_id":5,"type":"pipe"}]`, []string{"f.json: /0/_id: _id must be a non-empty string"}},
		{"empty id", `{"_id":"","type":"pipe"}`, []string{"f.json: /_id: _id must be a non-empty string"}},
		{"slash id", `{"_id":"a/b","type":"pipe"}`, []string{`/_id: _id "a/b" must not contain '/'`}},
		{"no type", `{"_id":"a"}`, []string{`/type: component "a" has no type`}},
		{"bad type", `{"_id":"a","type":"pipes"}`, []string{`/type: component "a" has unknown type "pipes"`}},
		{"not object", `[1]`, []string{"/0: a component must be a JSON object, not a number"}},
		{"bad root", `"x"`, []string{"a config file must hold a JSON object or an array of objects, not a string"}},
		{"duplicate", `[{"_id":"a","type":"pipe"},{"_id":"a","type":"system:url"}]`, []string{`/0/_id: duplicate _id "a" (also in `, `f.json/1)`}},
		{"env", `{"_id":"a","type":"pipe","source":{"url":"$ENV(nope)/x","h":["$ENV(also)"]}}`, []string{
			`f.json: /source/url: unknown environment variable "nope"`, `f.json: /source/h/0: unknown environment variable "also"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg, _ := configErrors(t, map[string]string{"f.json": c.text}, noEnv)
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error:\n%s\nwant it to contain %q", msg, w)
				}
			}
		})
	}
}

func TestLoadConfigCollectsAllErrors(t *testing.T) {
	msg, ce := configErrors(t, map[string]string{
		"a.json": `{"_id":"a"`,
		"b.json": `[{"type":"pipe"},{"_id":"c","type":"pipe","x":"$ENV(missing)"}]`,
	}, noEnv)
	if n := len(ce.Diagnostics.Errors()); n != 3 {
		t.Errorf("%d errors, want 3: %v", n, ce.Diagnostics)
	}
	if !strings.HasPrefix(msg, "3 errors in config:\n  error: ") || !strings.Contains(msg, "a.json:1:11") || !strings.Contains(msg, "b.json: /0:") || !strings.Contains(msg, "b.json: /1/x:") {
		t.Errorf("error text:\n%s", msg)
	}
}

func TestResolveEnv(t *testing.T) {
	env := mapEnv(map[string]string{"host": "example.org", "port": "8080", "empty": ""})
	in := map[string]any{
		"url":    "https://$ENV(host):$ENV(port)/x",
		"whole":  "$ENV(port)",
		"empty":  "$ENV(empty)",
		"list":   []any{"$ENV(host)", 1.5, nil, map[string]any{"a~b/c": "$ENV(nope)"}},
		"plain":  "no refs $ENV",
		"nested": map[string]any{"n": "$ENV()"},
	}
	out, errs := ResolveEnv(in, env, "/3")
	m := out.(map[string]any)
	if m["url"] != "https://example.org:8080/x" || m["whole"] != "8080" || m["empty"] != "" || m["plain"] != "no refs $ENV" {
		t.Errorf("resolved = %v", m)
	}
	if l := m["list"].([]any); l[0] != "example.org" || l[1] != 1.5 || l[3].(map[string]any)["a~b/c"] != "$ENV(nope)" {
		t.Errorf("list = %v", l)
	}
	if len(errs) != 2 {
		t.Fatalf("errors = %v, want 2 (nope and the empty name)", errs)
	}
	ptrs := errs[0].Pointer + " " + errs[1].Pointer
	if !strings.Contains(ptrs, "/3/list/3/a~0b~1c") || !strings.Contains(ptrs, "/3/nested/n") {
		t.Errorf("pointers = %s", ptrs)
	}
	// The input is not modified.
	if in["url"] != "https://$ENV(host):$ENV(port)/x" {
		t.Error("ResolveEnv modified its input")
	}
}

func TestLoadConfigResolvesEnv(t *testing.T) {
	dir := writeFiles(t, map[string]string{"p.json": `{"_id":"$ENV(name)-pipe","type":"pipe","source":{"type":"json","url":"$ENV(url)"}}`})
	cfg, err := LoadConfig([]string{dir}, mapEnv(map[string]string{"name": "crm", "url": "x.json"}))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pipe("crm-pipe")
	if p == nil || p.Raw["source"].(map[string]any)["url"] != "x.json" {
		t.Errorf("resolved config = %+v", cfg.Pipes[0])
	}
}

func TestEnvFromAndEnvFile(t *testing.T) {
	t.Setenv("FERRY_TEST_PROC", "proc")
	t.Setenv("FERRY_TEST_BOTH", "proc")
	dir := writeFiles(t, map[string]string{
		"env.json":  `{"FERRY_TEST_BOTH":"file","n":12345678901234567890.5,"b":true,"s":"x"}`,
		"bad.json":  "{\n\"a\": }",
		"null.json": `{"a":null}`,
		"arr.json":  `["a"]`,
	})
	m, err := LoadEnvFile(filepath.Join(dir, "env.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m["n"] != "12345678901234567890.5" || m["b"] != "true" || m["s"] != "x" {
		t.Errorf("env file = %v", m)
	}
	env := EnvFrom(m)
	if v, _ := env("FERRY_TEST_BOTH"); v != "file" {
		t.Errorf("file value should win, got %q", v)
	}
	if v, ok := env("FERRY_TEST_PROC"); !ok || v != "proc" {
		t.Errorf("process env: %q %v", v, ok)
	}
	if _, ok := env("FERRY_TEST_UNSET_XYZ"); ok {
		t.Error("unset variable found")
	}
	for name, want := range map[string]string{
		"bad.json":     "line 2, column 6",
		"null.json":    `"a" must be a string, number or boolean, not null`,
		"arr.json":     "must be a JSON object",
		"missing.json": "env file",
	} {
		_, err := LoadEnvFile(filepath.Join(dir, name))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadEnvFile(%s) = %v, want %q", name, err, want)
		}
	}
}

func TestLineCol(t *testing.T) {
	data := []byte("ab\ncd\n\nx")
	cases := []struct{ off, line, col int }{{0, 1, 1}, {1, 1, 2}, {2, 1, 3}, {3, 2, 1}, {6, 3, 1}, {7, 4, 1}, {8, 4, 2}, {100, 4, 2}}
	for _, c := range cases {
		if l, col := LineCol(data, c.off); l != c.line || col != c.col {
			t.Errorf("LineCol(%d) = %d:%d, want %d:%d", c.off, l, col, c.line, c.col)
		}
	}
}

func TestDiagnostics(t *testing.T) {
	ds := Diagnostics{
		{Severity: SevError, File: "f.json", Line: 2, Column: 3, Message: "m1"},
		{Severity: SevWarning, File: "f.json", Pointer: "/0/x", Message: "m2"},
		{Severity: SevError, Message: "m3"},
	}
	if len(ds.Errors()) != 2 || len(ds.Warnings()) != 1 {
		t.Errorf("Errors %d Warnings %d", len(ds.Errors()), len(ds.Warnings()))
	}
	want := []string{"error: f.json:2:3: m1", "warning: f.json: /0/x: m2", "error: m3"}
	for i, d := range ds {
		if d.String() != want[i] {
			t.Errorf("String() = %q, want %q", d.String(), want[i])
		}
	}
	one := &ConfigError{Diagnostics: ds[:2]}
	if one.Error() != "error: f.json:2:3: m1" {
		t.Errorf("single error text = %q", one.Error())
	}
}

func TestCheckAndAddComponents(t *testing.T) {
	cfg := &Config{}
	cfg.AddComponents("expanded", []any{
		map[string]any{"_id": "a", "type": "pipe", "u": "$ENV(x)"},
		map[string]any{"_id": "a", "type": "pipe"},
	}, mapEnv(map[string]string{"x": "1"}))
	if cfg.Pipe("a").Raw["u"] != "1" || cfg.Pipe("a").Pointer != "/0" {
		t.Errorf("AddComponents: %+v", cfg.Pipes[0])
	}
	for i := 0; i < 2; i++ {
		err := cfg.Check()
		var ce *ConfigError
		if !errors.As(err, &ce) || len(ce.Diagnostics.Errors()) != 1 || !strings.Contains(err.Error(), "expanded: /1/_id: duplicate _id \"a\" (also in expanded/0)") {
			t.Errorf("Check() #%d = %v", i, err)
		}
	}
}
