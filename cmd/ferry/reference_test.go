package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/pipetest"
)

// TestReferenceDoc checks that docs/reference.md is what `ferry reference`
// prints: it fails whenever a component or its schema changes until the
// file is regenerated.
func TestReferenceDoc(t *testing.T) {
	want, err := os.ReadFile("../../docs/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "reference")
	if code != exitOK {
		t.Fatalf("reference: exit %d: %s", code, errOut)
	}
	if out != string(want) {
		t.Errorf("docs/reference.md is stale; regenerate it with\n  %s\n(from the repository root)", referenceCommand)
		t.Log(pipetest.Unified("docs/reference.md", "ferry reference", string(want), out, 2))
	}
	// Every runnable component is documented, every option described.
	for _, s := range []string{"### system:rest", "### rest source", "### merge source", "### transform-share-rest", "### dataset sink", "`pump.schedule_interval`"} {
		if !strings.Contains(out, s) {
			t.Errorf("reference lacks %s", s)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "| `") && strings.HasSuffix(line, "|  |") {
			t.Errorf("option without a description (add one to its schema): %s", line)
		}
	}
}

func TestReferenceJSON(t *testing.T) {
	code, out, errOut := runCLI(t, "reference", "--json")
	if code != exitOK {
		t.Fatalf("reference --json: %d %s", code, errOut)
	}
	var ref map[string]map[string]struct {
		Status string         `json:"status"`
		Schema map[string]any `json:"schema"`
	}
	if err := json.Unmarshal([]byte(out), &ref); err != nil {
		t.Fatal(err)
	}
	if r := ref["sources"]["rest"]; r.Status != "stable" || r.Schema["properties"] == nil {
		t.Errorf("sources.rest = %+v", r)
	}
	var pipe struct {
		Pipe struct {
			Schema map[string]any `json:"schema"`
		} `json:"pipe"`
	}
	json.Unmarshal([]byte(out), &pipe)
	if pipe.Pipe.Schema["properties"] == nil {
		t.Error("no pipe schema")
	}
}
