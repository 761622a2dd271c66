package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyTree copies the directory src into dst.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTestCommand: exit codes, the diff of a mismatch, --update and
// --json, on a copy of the one-way example.
func TestTestCommand(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, demo, dir)
	config := filepath.Join(dir, "config")
	if code, out, errOut := runCLI(t, "test", config); code != exitOK || !strings.Contains(out, "PASS: 4 pipes") {
		t.Fatalf("test = %d\n%s%s", code, out, errOut)
	}

	// A deliberate change in the config: the golden persons' names.
	pipes := filepath.Join(config, "pipes.json")
	b, _ := os.ReadFile(pipes)
	os.WriteFile(pipes, []byte(strings.Replace(string(b), `\"\\(.first_name) \\(.last_name)\"`, `\"\\(.last_name), \\(.first_name)\"`, 1)), 0o644)
	code, out, errOut := runCLI(t, "test", config)
	if code != exitFailed || !strings.Contains(out, "FAIL  person-golden") || !strings.Contains(out, `-    "name": "Ada Lovelace"`) ||
		!strings.Contains(out, `+    "name": "Lovelace, Ada"`) || !strings.Contains(out, "FAIL: 2 of 4 pipes differ") {
		t.Fatalf("after a change = %d\n%s%s", code, out, errOut)
	}
	// Only the pipes named are compared.
	if code, out, _ := runCLI(t, "test", config, "crm-person-collect"); code != exitOK || !strings.Contains(out, "PASS: 1 pipe ") {
		t.Errorf("test CONFIG crm-person-collect = %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, "test", config, "--update"); code != exitOK || !strings.Contains(out, "updated 2 expected files, 2 files unchanged") {
		t.Errorf("--update = %d\n%s", code, out)
	}
	var res struct {
		Passed bool `json:"passed"`
		Pipes  []struct {
			Pipe, Status string
		} `json:"pipes"`
	}
	code, out, _ = runCLI(t, "test", config, "--json")
	decodeCLIJSON(t, out, &res)
	if code != exitOK || !res.Passed || len(res.Pipes) != 4 || res.Pipes[0].Status != "ok" {
		t.Errorf("--json = %d %+v", code, res)
	}

	// Usage errors: no such path, no expected output, no test directory.
	if code, _, errOut := runCLI(t, "test", filepath.Join(dir, "nope")); code != exitUsage || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing path = %d %s", code, errOut)
	}
	os.RemoveAll(filepath.Join(dir, "test", "expected"))
	if code, _, errOut := runCLI(t, "test", config); code != exitUsage || !strings.Contains(errOut, "nothing compared") || !strings.Contains(errOut, "--update") {
		t.Errorf("no expected output = %d %s", code, errOut)
	}
	os.RemoveAll(filepath.Join(dir, "test"))
	if code, _, errOut := runCLI(t, "test", config); code != exitUsage || !strings.Contains(errOut, "no test directory") {
		t.Errorf("no test directory = %d %s", code, errOut)
	}
	// A config problem shows the diagnostics and where test $ENV values come from.
	os.MkdirAll(filepath.Join(dir, "test"), 0o755)
	if code, _, errOut := runCLI(t, "test", config); code != exitUsage || !strings.Contains(errOut, `unknown environment variable "crm_export"`) || !strings.Contains(errOut, `test.json's "env"`) {
		t.Errorf("missing env = %d %s", code, errOut)
	}
}
