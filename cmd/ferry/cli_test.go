package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := newCLI(&stdout, &stderr)
	c.getenv = func(string) (string, bool) { return "", false }
	code := c.run(context.Background(), args)
	return code, stdout.String(), stderr.String()
}

const demo = "../../examples/demo"

func TestUsageAndUnknownCommand(t *testing.T) {
	if code, _, errOut := runCLI(t); code != exitUsage || !strings.Contains(errOut, "Commands:") {
		t.Errorf("no args = %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "help"); code != exitOK {
		t.Errorf("help = %d", code)
	}
	if code, _, errOut := runCLI(t, "frobnicate"); code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command = %d %s", code, errOut)
	}
	if code, out, _ := runCLI(t, "version"); code != exitOK || !strings.HasPrefix(out, "ferry ") {
		t.Errorf("version = %d %s", code, out)
	}
	if code, _, _ := runCLI(t, "validate", "--no-such-flag", "x"); code != exitUsage {
		t.Errorf("bad flag = %d", code)
	}
	if code, _, _ := runCLI(t, "validate"); code != exitUsage {
		t.Errorf("validate without config = %d", code)
	}
}

func TestValidateExample(t *testing.T) {
	code, out, errOut := runCLI(t, "validate", demo+"/config", "--env", demo+"/env/day1.json")
	if code != exitOK || !strings.Contains(out, "ok: 4 pipes valid") {
		t.Errorf("validate = %d %q %q", code, out, errOut)
	}
	code, out, _ = runCLI(t, "validate", "--json", "--env", demo+"/env/day1.json", demo+"/config")
	var res struct {
		Valid bool `json:"valid"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitOK || !res.Valid {
		t.Errorf("validate --json = %d %s", code, out)
	}
	// Without the env file $ENV(crm_export) is unknown.
	code, _, errOut = runCLI(t, "validate", demo+"/config")
	if code != exitUsage || !strings.Contains(errOut, "pipes.json: /0/source/url: unknown environment variable \"crm_export\"") {
		t.Errorf("validate without env = %d %s", code, errOut)
	}
}

func TestValidateListsAllErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.json"), []byte("[\n {\"_id\":\"p\",\"type\":\"pipe\",\"source\":{\"type\":\"embedded\",\"entities\":[]},\n  \"transform\":{\"type\":\"jq\",\"expression\":\"{\"}},\n {\"_id\":\"q\",\"type\":\"pipe\",\"source\":{\"type\":\"magic\"}}\n]"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte("{\"_id\": \"r\",\n \"type\": \"pipe\" ]"), 0o644)
	code, _, errOut := runCLI(t, "validate", dir)
	if code != exitUsage {
		t.Errorf("exit code = %d, want %d", code, exitUsage)
	}
	// b.json is malformed: the load step reports it (with line:col) and
	// stops before compiling.
	if !strings.Contains(errOut, "b.json:2:17: malformed JSON") {
		t.Errorf("stderr:\n%s\nwant the malformed file with line:col", errOut)
	}
	os.Remove(filepath.Join(dir, "b.json"))
	code, _, errOut = runCLI(t, "validate", dir)
	for _, w := range []string{"a.json: /0/transform/expression: jq expression does not parse", `a.json: /1/source/type: unknown source type "magic"`} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr:\n%s\nwant %q", errOut, w)
		}
	}
	if code != exitUsage {
		t.Errorf("exit code = %d", code)
	}
	code, out, _ := runCLI(t, "validate", "--json", dir)
	var res struct {
		Valid       bool `json:"valid"`
		Diagnostics []struct {
			File, Pointer, Message string
		} `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Valid || len(res.Diagnostics) != 2 || res.Diagnostics[0].Pointer != "/0/transform/expression" {
		t.Errorf("validate --json = %d %s", code, out)
	}
}

func TestRunExampleTwice(t *testing.T) {
	data := t.TempDir()
	code, out, errOut := runCLI(t, "run", demo+"/config", "--env", demo+"/env/day1.json", "--data", data)
	if code != exitOK || !strings.Contains(out, "crm-person-collect") {
		t.Fatalf("run day1 = %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "run", demo+"/config", "--env", demo+"/env/day2.json", "--data", data, "--json")
	var recs []struct {
		Pipe    string `json:"pipe"`
		Deleted int64  `json:"deleted"`
	}
	if err := json.Unmarshal([]byte(out), &recs); code != exitOK || err != nil || len(recs) != 4 || recs[0].Pipe != "crm-person-collect" || recs[0].Deleted != 1 {
		t.Fatalf("run day2 = %d %s %s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "dataset", "show", "crm-person-collect", "--id", "p2", "--history", "--json", "--data", data)
	var hist []map[string]any
	if err := json.Unmarshal([]byte(out), &hist); err != nil || code != exitOK {
		t.Fatalf("dataset show = %d %s %s", code, out, errOut)
	}
	if len(hist) != 2 || hist[0]["_deleted"] != nil || hist[1]["_deleted"] != true || hist[1]["first_name"] != "Alan" || hist[1]["_previous"] != hist[0]["_updated"] {
		t.Errorf("p2 history = %s", out)
	}
	code, out, _ = runCLI(t, "datasets", "--json", "--data", data)
	var infos []struct {
		Name     string `json:"name"`
		Entities int    `json:"entities"`
		Deleted  int    `json:"deleted"`
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil || code != exitOK || len(infos) != 4 || infos[0].Name != "crm-person-collect" || infos[0].Entities != 4 || infos[0].Deleted != 1 {
		t.Errorf("datasets --json = %d %s", code, out)
	}
	code, out, _ = runCLI(t, "pipe", "log", "crm-person-collect", "--json", "--data", data)
	var runs []struct {
		SyncType string `json:"sync_type"`
		Read     int    `json:"read"`
	}
	if err := json.Unmarshal([]byte(out), &runs); err != nil || code != exitOK || len(runs) != 2 || runs[0].Read != 3 || runs[1].Read != 4 {
		t.Errorf("pipe log --json = %d %s", code, out)
	}
	// Table output and other inspection commands.
	if code, out, _ := runCLI(t, "datasets", "--data", data); code != exitOK || !strings.Contains(out, "person-golden") {
		t.Errorf("datasets = %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "pipes", "--data", data); code != exitOK || !strings.Contains(out, "erp-customer-transform") {
		t.Errorf("pipes = %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "dataset", "show", "erp-customer-collect", "--data", data, "--json"); code != exitOK || !strings.Contains(out, "12345678901234567890.10") {
		t.Errorf("dataset show = %d %s", code, out)
	}
	if code, _, errOut := runCLI(t, "dataset", "show", "nope", "--data", data); code != exitUsage || !strings.Contains(errOut, `no dataset "nope"`) {
		t.Errorf("unknown dataset = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "dataset", "show", "person-golden", "--id", "zz", "--data", data); code != exitFailed || !strings.Contains(errOut, `no entity "zz"`) {
		t.Errorf("unknown id = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "pipe", "log", "nope", "--data", data); code != exitFailed || !strings.Contains(errOut, "has no runs") {
		t.Errorf("pipe log unknown = %d %s", code, errOut)
	}
}

func TestRunFailureExitsOne(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.json"), []byte(`{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[{"_id":"a"}]},"transform":{"type":"jq","expression":"error(\"no\")"}}`), 0o644)
	code, _, errOut := runCLI(t, "run", dir, "--data", filepath.Join(dir, "data"))
	if code != exitFailed || !strings.Contains(errOut, `entity "a"`) {
		t.Errorf("failed run = %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "run", dir, "zz", "--data", filepath.Join(dir, "data")); code != exitFailed {
		t.Errorf("unknown pipe id = %d", code)
	}
}

func TestStoreErrors(t *testing.T) {
	empty := t.TempDir()
	if code, _, errOut := runCLI(t, "datasets", "--data", empty); code != exitUsage || !strings.Contains(errOut, "no store in") {
		t.Errorf("datasets without store = %d %s", code, errOut)
	}
	os.WriteFile(filepath.Join(empty, "ferry.db"), bytes.Repeat([]byte("garbage!"), 4096), 0o600)
	code, _, errOut := runCLI(t, "datasets", "--data", empty)
	if code != exitUsage || !strings.Contains(errOut, "ferry.db") {
		t.Errorf("corrupt store = %d %s", code, errOut)
	}
}
