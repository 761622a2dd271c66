package main

import (
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
