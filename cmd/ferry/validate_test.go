package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A malformed file does not hide the problems of the other files: validate
// reports them all in one go.
func TestValidateReportsErrorsOfAllFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"_id": "a", "type": "pipe", "source": {"type": "embedded", "entities": []}, "transform": {"type": "jq", "expression": "((("}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte("[{\"_id\": \"b\", \"type\": \"pipe\",\n"), 0o644)
	code, _, errOut := runCLI(t, "validate", dir, "--data", t.TempDir())
	if code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	for _, want := range []string{"b.json:2:1: malformed JSON", "a.json: /transform/expression: jq expression does not parse"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// A jq or DTL error names the file, the pointer, the pipe and the
// transform, in the text and in --json.
func TestValidateNamesPipeAndTransform(t *testing.T) {
	dir := writeFiles(t, map[string]string{"p.json": `[
 {"_id": "ok", "type": "pipe", "source": {"type": "embedded", "entities": []}},
 {"_id": "x", "type": "pipe", "source": {"type": "embedded", "entities": []},
  "transform": [{"type": "jq", "expression": "."},
                {"type": "chained", "transforms": [{"type": "dtl", "rules": {"default": [["add", "a", ["no-such-fn"]]]}}]},
                {"type": "jq", "expression": "{"}]}]`})
	code, _, errOut := runCLI(t, "validate", dir)
	if code != exitUsage {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		`p.json: /1/transform/1/transforms/0/rules/default/0/2: DTL: unknown function "no-such-fn"`,
		`(pipe "x", transform[1])`,
		`p.json: /1/transform/2/expression: jq expression does not parse`,
		`(pipe "x", transform[2])`,
		`ferry: the config has 2 errors`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	_, out, _ := runCLI(t, "validate", "--json", dir)
	var res struct {
		Diagnostics []struct{ Pointer, Pipe, Path, Message string }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Diagnostics) != 2 {
		t.Fatalf("--json: %v %s", err, out)
	}
	if d := res.Diagnostics[1]; d.Pipe != "x" || d.Path != "transform[2]" || d.Pointer != "/1/transform/2/expression" {
		t.Errorf("--json diagnostic = %+v", d)
	}
}

// Pipes that read each other's datasets are refused before anything runs,
// with the cycle; nothing is written.
func TestValidateRefusesDatasetCycles(t *testing.T) {
	dir := writeFiles(t, map[string]string{"p.json": `[
 {"_id": "seed", "type": "pipe", "source": {"type": "embedded", "entities": [{"_id": "1"}]}},
 {"_id": "a", "type": "pipe", "source": {"type": "merge_datasets", "datasets": ["seed", "c"]}},
 {"_id": "b", "type": "pipe", "source": {"type": "dataset", "dataset": "a"}},
 {"_id": "c", "type": "pipe", "source": {"type": "dataset", "dataset": "b"},
  "transform": {"type": "jq", "expression": "._id += \"x\""}}]`})
	want := `dataset cycle: "a" reads "c" (written by "c"), "c" reads "b" (written by "b"), "b" reads "a" (written by "a")`
	code, _, errOut := runCLI(t, "validate", dir)
	if code != exitUsage || !strings.Contains(errOut, want) || !strings.Contains(errOut, `(pipe "a", source)`) {
		t.Errorf("validate = %d\n%s", code, errOut)
	}
	data := t.TempDir()
	code, out, errOut := runCLI(t, "run", dir, "--data", data)
	if code != exitUsage || !strings.Contains(errOut, want) || out != "" {
		t.Errorf("run = %d %q\n%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(data, "ferry.db")); err == nil {
		t.Error("run of a cyclic config created the store")
	}
}

// An empty config directory, a config without components, and a missing
// path are usage errors naming the path.
func TestValidateEmptyConfig(t *testing.T) {
	empty := t.TempDir()
	os.Mkdir(filepath.Join(empty, "sub"), 0o755)
	os.WriteFile(filepath.Join(empty, "README.md"), []byte("# not a config"), 0o644)
	if code, _, errOut := runCLI(t, "validate", empty); code != exitUsage || !strings.Contains(errOut, empty+": the directory holds no *.json files") {
		t.Errorf("empty directory = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "run", empty, "--data", t.TempDir()); code != exitUsage || !strings.Contains(errOut, "holds no *.json files") {
		t.Errorf("run of an empty directory = %d %s", code, errOut)
	}
	nothing := writeFiles(t, map[string]string{"a.json": "[]", "b.json": "{\"_id\": \"m\", \"type\": \"metadata\"}"})
	if code, _, errOut := runCLI(t, "validate", nothing); code != exitUsage || !strings.Contains(errOut, "the config holds no systems or pipes") {
		t.Errorf("config without components = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "validate", filepath.Join(empty, "nope.json")); code != exitUsage || !strings.Contains(errOut, "nope.json: no such file or directory") {
		t.Errorf("missing file = %d %s", code, errOut)
	}
}

// A connector template whose expansion tag holds a statement keyword
// fails expand, connect and compat's expansion with the file and position,
// instead of expanding to nothing.
func TestExpandRefusesMalformedTag(t *testing.T) {
	conn := writeFiles(t, map[string]string{
		"manifest.json":        `{"datatypes": {"thing": {"template": "templates/thing.json"}}}`,
		"templates/thing.json": "[{\"_id\": \"{{@ system @}}-thing\", \"type\": \"pipe\",\n  \"source\": {\"type\": \"embedded\", \"entities\": [{{@ for @}}]}}]",
	})
	code, out, errOut := runCLI(t, "expand", conn)
	if code != exitUsage || out != "" || !strings.Contains(errOut, "templates/thing.json:2:51: datatype \"thing\": 'for' is a statement, not a value") {
		t.Errorf("expand = %d %q %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "connect", conn, "--system", "s", "--data", t.TempDir())
	if code != exitUsage || !strings.Contains(errOut, "'for' is a statement") {
		t.Errorf("connect = %d %s", code, errOut)
	}
}

// Input that is not UTF-8 fails the run with the entity's position, and
// writes nothing of the failing batch; the same file as UTF-8 loads.
func TestRunRejectsInvalidUTF8(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"p.json":        `{"_id": "people", "type": "pipe", "source": {"type": "json", "url": "people.ndjson"}}`,
		"people.ndjson": "{\"_id\": \"1\", \"name\": \"Ann\"}\n{\"_id\": \"2\", \"name\": \"Bj\xf6rn\"}\n",
	})
	data := t.TempDir()
	code, _, errOut := runCLI(t, "run", dir, "--data", data)
	if code != exitFailed || !strings.Contains(errOut, "people.ndjson: entity 2: invalid JSON at byte 24: invalid UTF-8 in string (bytes f6 72 6e)") {
		t.Errorf("run = %d %s", code, errOut)
	}
	os.WriteFile(filepath.Join(dir, "people.ndjson"), []byte("{\"_id\": \"1\", \"name\": \"Ann\"}\n{\"_id\": \"2\", \"name\": \"Björn\"}\n"), 0o644)
	if code, out, errOut := runCLI(t, "run", dir, "--data", data); code != exitOK {
		t.Errorf("run of UTF-8 = %d %s %s", code, out, errOut)
	}
}

// Authentication kinds Ferry does not implement are refused at validate
// time, naming the kind and the system; the kinds the public connectors
// use validate.
func TestValidateAuthenticationKinds(t *testing.T) {
	bad := writeFiles(t, map[string]string{"c.json": `[
 {"_id": "r", "type": "system:rest", "url_pattern": "https://x/%s", "authentication": "digest", "username": "u", "password": "p"},
 {"_id": "n", "type": "system:rest", "url_pattern": "https://x/%s", "authentication": "NTLM", "username": "u", "password": "p"},
 {"_id": "u", "type": "system:url", "base_url": "https://x/", "authentication": "digest", "username": "u", "password": "p"},
 {"_id": "t", "type": "system:rest", "url_pattern": "https://x/%s", "tripletex": {"consumer_token": "a"}}]`})
	code, _, errOut := runCLI(t, "validate", bad)
	for _, want := range []string{
		`c.json: /0/authentication: not supported: authentication "digest"`, `(system "r")`,
		`c.json: /1/authentication: not supported: authentication "ntlm"`,
		`c.json: /2/authentication: not supported: authentication "digest" (system:url supports basic`, `(system "u")`,
		`c.json: /3/tripletex: not supported: authentication "tripletex"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code != exitUsage {
		t.Errorf("exit %d", code)
	}
	good := writeFiles(t, map[string]string{"c.json": `[
 {"_id": "basic", "type": "system:rest", "url_pattern": "https://x/%s", "authentication": "basic", "username": "me/token", "password": "p"},
 {"_id": "jwt", "type": "system:rest", "url_pattern": "https://x/%s", "jwt_token": "t"},
 {"_id": "cc", "type": "system:rest", "url_pattern": "https://x/%s", "oauth2": {"client_id": "a", "client_secret": "b", "token_url": "https://x/token"}},
 {"_id": "rt", "type": "system:rest", "url_pattern": "https://x/%s", "oauth2": {"client_id": "a", "client_secret": "b", "token_url": "https://x/token", "access_token": "c", "refresh_token": "d"}},
 {"_id": "hdr", "type": "system:rest", "url_pattern": "https://x/%s", "headers": {"Authorization": "Bearer t"}},
 {"_id": "ub", "type": "system:url", "base_url": "https://x/", "authentication": "bearer", "token": "t"},
 {"_id": "p", "type": "pipe", "source": {"type": "json", "system": "ub", "url": "a.json"}}]`})
	if code, out, errOut := runCLI(t, "validate", good); code != exitOK || !strings.Contains(out, "ok: 1 pipe and 6 systems valid") {
		t.Errorf("supported kinds = %d %s %s", code, out, errOut)
	}
}
