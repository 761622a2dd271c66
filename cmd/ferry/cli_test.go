package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
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
	// Help goes to stdout with exit 0: bare, -h, --help, help, and per
	// command (with a description, the arguments and an example).
	for _, args := range [][]string{{}, {"-h"}, {"--help"}, {"help"}} {
		if code, out, errOut := runCLI(t, args...); code != exitOK || !strings.Contains(out, "Pipelines:") || !strings.Contains(out, "validate") || errOut != "" {
			t.Errorf("%v = %d %q %q", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"run", "--help"}, {"secret", "--help"}, {"help", "dataset", "show"}, {"dataset", "show", "-h"}, {"secret", "set", "--help"}} {
		code, out, errOut := runCLI(t, args...)
		if code != exitOK || errOut != "" || !strings.Contains(out, "Usage:") || !strings.Contains(out, "Examples:") || !strings.Contains(out, "--data") {
			t.Errorf("%v = %d %q %q", args, code, out, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "frobnicate"); code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "valdate"); code != exitUsage || !strings.Contains(errOut, "validate") {
		t.Errorf("misspelt command = %d %s, want a suggestion", code, errOut)
	}
	if code, _, errOut := runCLI(t, "validate", "--no-such-flag", "x"); code != exitUsage || !strings.Contains(errOut, "unknown flag: --no-such-flag") {
		t.Errorf("bad flag = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "validate"); code != exitUsage || !strings.Contains(errOut, "give one or more config files") {
		t.Errorf("validate without config = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "validate", "/nonexistent/config"); code != exitUsage || !strings.Contains(errOut, "/nonexistent/config") {
		t.Errorf("validate of a missing path = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "run", "/nonexistent/config", "--data", t.TempDir()); code != exitUsage || !strings.Contains(errOut, "config /nonexistent/config: no such file or directory") {
		t.Errorf("run of a missing path = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "run", "nosuchpipe", "--data", t.TempDir()); code != exitUsage || !strings.Contains(errOut, `"nosuchpipe" is neither a config file or directory nor a pipe of a connector instance`) {
		t.Errorf("run of an unknown name = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "--log-format", "xml", "version"); code != exitUsage || !strings.Contains(errOut, "want text or json") {
		t.Errorf("bad --log-format = %d %s", code, errOut)
	}
	// --json is honoured or rejected, never ignored.
	if code, _, errOut := runCLI(t, "serve", "--json"); code != exitUsage || !strings.Contains(errOut, "ferry serve does not print JSON") {
		t.Errorf("serve --json = %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "completion", "bash", "--json"); code != exitUsage || !strings.Contains(errOut, "does not print JSON") {
		t.Errorf("completion --json = %d %s", code, errOut)
	}
}

// Every command honours --json or rejects it: walk the whole tree.
func TestEveryCommandHonoursOrRejectsJSON(t *testing.T) {
	c := newCLI(io.Discard, io.Discard)
	c.getenv = func(string) (string, bool) { return "", false }
	root := c.rootCmd()
	var walk func(cmd *cobra.Command)
	honours := map[string]bool{}
	walk = func(cmd *cobra.Command) {
		if cmd.Runnable() && cmd.HasParent() {
			honours[cmd.CommandPath()] = cmd.Annotations[annJSON] != ""
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, path := range []string{"ferry validate", "ferry run", "ferry datasets", "ferry dataset show", "ferry pipes", "ferry pipe log",
		"ferry expand", "ferry connect", "ferry connectors", "ferry disconnect", "ferry secret set", "ferry secret list", "ferry secret rm",
		"ferry compat", "ferry fake-api", "ferry bench", "ferry version"} {
		if !honours[path] {
			t.Errorf("%s does not honour --json", path)
		}
	}
	// Every command of ours explains itself: a summary and an example.
	var check func(cmd *cobra.Command)
	check = func(cmd *cobra.Command) {
		for _, sub := range cmd.Commands() {
			if sub.Name() != "help" && sub.Name() != "completion" && !sub.Hidden {
				if sub.Short == "" || sub.Example == "" {
					t.Errorf("%s lacks a summary or an example", sub.CommandPath())
				}
				check(sub)
			}
		}
	}
	check(root)
	for path, ok := range honours {
		if ok {
			continue
		}
		args := append(strings.Fields(path)[1:], "--json")
		if code, _, errOut := runCLI(t, args...); code != exitUsage || !strings.Contains(errOut, "does not print JSON") {
			t.Errorf("%s --json = %d %s, want it rejected", path, code, errOut)
		}
	}
}

// Global flags go anywhere on the line, before or after the command.
func TestGlobalFlagsAnywhere(t *testing.T) {
	data := t.TempDir()
	if code, out, errOut := runCLI(t, "--data", data, "run", demo+"/config", "--env", demo+"/env/day1.json"); code != exitOK {
		t.Fatalf("run = %d %s %s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"--data", data, "datasets", "--json"},
		{"--json", "--data=" + data, "datasets"},
		{"datasets", "--data", data, "--json"},
		{"--max-rss-mib", "64", "datasets", "--json", "--data", data},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != exitOK || !strings.HasPrefix(out, "[") || !strings.Contains(out, "crm-person-collect") {
			t.Errorf("%v = %d %s %s", args, code, out, errOut)
		}
	}
	// FERRY_DATA sets the default of --data.
	code, out, errOut := runCLIWith(t, runOpts{env: map[string]string{"FERRY_DATA": data}}, "datasets")
	if code != exitOK || !strings.Contains(out, "person-golden") {
		t.Errorf("FERRY_DATA = %d %s %s", code, out, errOut)
	}
	// --log-format json makes the log lines JSON objects.
	bad := writeFiles(t, map[string]string{"p.json": `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[{"_id":"a"}]},"transform":{"type":"jq","expression":"error(\"no\")"}}`})
	_, _, errOut = runCLI(t, "--log-format", "json", "run", bad, "--data", t.TempDir())
	var sawJSON bool
	for _, line := range strings.Split(errOut, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["level"] == "ERROR" && m["pipe"] == "p" {
			sawJSON = true
		}
	}
	if !sawJSON {
		t.Errorf("--log-format json: no JSON log line for the failed run in\n%s", errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != exitOK || !strings.HasPrefix(out, "ferry ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version = %d %q", code, out)
	}
	code, out2, _ := runCLI(t, "--version")
	if code != exitOK || out2 != out {
		t.Errorf("--version = %d %q, want %q", code, out2, out)
	}
	code, out, _ = runCLI(t, "version", "--json")
	var info buildInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil || code != exitOK || info.Go != runtime.Version() || info.Version == "" {
		t.Errorf("version --json = %d %s", code, out)
	}
	// The VCS stamp, as `go build` in a git checkout writes it.
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/ferrydata/ferry", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-11-01T10:00:00Z"}}}
	info = buildInfoFrom(bi)
	if got := versionString(info); got != "v0.3.0 (commit 0123456789ab, modified, go1.26.8)" {
		t.Errorf("versionString = %q", got)
	}
	if !info.Modified || info.Commit != "0123456789abcdef0123" || info.CommitTime != "2026-11-01T10:00:00Z" {
		t.Errorf("buildInfoFrom = %+v", info)
	}
}

func TestValidateExample(t *testing.T) {
	code, out, errOut := runCLI(t, "validate", demo+"/config", "--env", demo+"/env/day1.json")
	if code != exitOK || !strings.Contains(out, "ok: 4 pipes and 0 systems valid") {
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
	if code, _, errOut := runCLI(t, "pipe", "log", "crm-person-colect", "--data", data); code != exitUsage || !strings.Contains(errOut, `has no runs`) || !strings.Contains(errOut, `did you mean "crm-person-collect"?`) {
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
	if code, _, errOut := runCLI(t, "run", dir, "q", "--data", filepath.Join(dir, "data")); code != exitUsage || !strings.Contains(errOut, `unknown pipe "q" (did you mean "p"?)`) {
		t.Errorf("unknown pipe id = %d %s", code, errOut)
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

// The datasets table shows the counts --json prints, under the same names.
func TestDatasetsTableMatchesJSON(t *testing.T) {
	data := t.TempDir()
	for _, day := range []string{"day1", "day2"} {
		if code, out, errOut := runCLI(t, "run", demo+"/config", "--env", demo+"/env/"+day+".json", "--data", data); code != exitOK {
			t.Fatalf("run %s = %d %s %s", day, code, out, errOut)
		}
	}
	_, out, _ := runCLI(t, "datasets", "--json", "--data", data)
	var rows []struct {
		Name                              string
		Entities, Live, Deleted, Versions uint64
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) == 0 {
		t.Fatalf("datasets --json: %v %s", err, out)
	}
	_, table, _ := runCLI(t, "datasets", "--data", data)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if h := strings.Fields(lines[0]); h[1] != "ENTITIES" || h[2] != "LIVE" || h[3] != "DELETED" || h[4] != "VERSIONS" {
		t.Fatalf("header %q", lines[0])
	}
	for i, r := range rows {
		f := strings.Fields(lines[i+1])
		want := []string{r.Name, fmt.Sprint(r.Entities), fmt.Sprint(r.Live), fmt.Sprint(r.Deleted), fmt.Sprint(r.Versions)}
		if !slices.Equal(f[:5], want) {
			t.Errorf("table row %q, json %v", lines[i+1], want)
		}
		if r.Live+r.Deleted != r.Entities {
			t.Errorf("%s: live %d + deleted %d != entities %d", r.Name, r.Live, r.Deleted, r.Entities)
		}
	}
	if rows[0].Name != "crm-person-collect" || rows[0].Entities != 4 || rows[0].Live != 3 || rows[0].Deleted != 1 {
		t.Errorf("crm-person-collect: %+v", rows[0])
	}
	if code, _, errOut := runCLI(t, "dataset", "show", "person-goldn", "--data", data); code != exitUsage || !strings.Contains(errOut, `no dataset "person-goldn" (did you mean "person-golden"?)`) {
		t.Errorf("unknown dataset = %d %s", code, errOut)
	}
}

// Shell completion completes pipe and dataset names from the store, and
// completes nothing (exit 0) when there is no store.
func TestCompletion(t *testing.T) {
	data := t.TempDir()
	if code, out, errOut := runCLI(t, "run", demo+"/config", "--env", demo+"/env/day1.json", "--data", data); code != exitOK {
		t.Fatalf("run = %d %s %s", code, out, errOut)
	}
	complete := func(args ...string) []string {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{cobra.ShellCompRequestCmd}, args...)...)
		if code != exitOK {
			t.Fatalf("%v = %d %s", args, code, errOut)
		}
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") && l != "" {
				names = append(names, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return names
	}
	if got := complete("dataset", "show", "--data", data, "crm-"); !slices.Equal(got, []string{"crm-person-collect"}) {
		t.Errorf("dataset show crm- = %v", got)
	}
	if got := complete("--data", data, "pipe", "log", "erp"); !slices.Equal(got, []string{"erp-customer-collect", "erp-customer-transform"}) {
		t.Errorf("pipe log erp = %v", got)
	}
	if got := complete("run", demo+"/config", "person-golden", "--data", data, ""); slices.Contains(got, "person-golden") || !slices.Contains(got, "crm-person-collect") {
		t.Errorf("run CONFIG person-golden '' = %v", got)
	}
	if got := complete("dataset", "show", "--data", t.TempDir(), ""); len(got) != 0 {
		t.Errorf("without a store = %v", got)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if code, out, _ := runCLI(t, "completion", shell); code != exitOK || !strings.Contains(out, "ferry") {
			t.Errorf("completion %s = %d", shell, code)
		}
	}
}

// A full run over an empty source does not wipe a dataset: it fails (exit
// 1) naming what it would have deleted, the run log records it as
// would_delete, and --accept-deletes PIPE is the way through.
func TestRunDeletionGuard(t *testing.T) {
	var people []string
	for i := range 501 {
		people = append(people, fmt.Sprintf(`{"_id": "p%d"}`, i))
	}
	dir := writeFiles(t, map[string]string{
		"p.json": `[{"_id": "people", "type": "pipe", "source": {"type": "json", "url": "people.json"}},
			{"_id": "names", "type": "pipe", "source": {"type": "dataset", "dataset": "people"}}]`,
		"people.json": "[" + strings.Join(people, ",") + "]",
	})
	cfg, data := filepath.Join(dir, "p.json"), t.TempDir()
	if code, out, errOut := runCLI(t, "run", cfg, "--data", data); code != exitOK {
		t.Fatalf("first run = %d %s %s", code, out, errOut)
	}
	os.WriteFile(filepath.Join(dir, "people.json"), []byte("[]"), 0o644)
	code, out, errOut := runCLI(t, "run", cfg, "--data", data)
	if code != exitFailed || !strings.Contains(errOut, `deletion tracking would delete 501 of the 501 live entities of dataset "people"`) ||
		!strings.Contains(errOut, "ferry run --accept-deletes people") || !strings.Contains(out, "0 (would 501)") {
		t.Fatalf("empty source = %d\n%s\n%s", code, out, errOut)
	}
	_, out, _ = runCLI(t, "pipe", "log", "people", "--limit", "1", "--json", "--data", data)
	var runs []struct {
		Deleted     int64 `json:"deleted"`
		WouldDelete int64 `json:"would_delete"`
	}
	if err := json.Unmarshal([]byte(out), &runs); err != nil || len(runs) != 1 || runs[0].Deleted != 0 || runs[0].WouldDelete != 501 {
		t.Errorf("run log = %s", out)
	}
	if code, _, errOut := runCLI(t, "run", cfg, "--accept-deletes", "--data", data); code != exitUsage || !strings.Contains(errOut, "--accept-deletes applies to the pipes you name") {
		t.Errorf("--accept-deletes without pipes = %d %s", code, errOut)
	}
	code, out, errOut = runCLI(t, "run", cfg, "--accept-deletes", "people", "--data", data, "--json")
	var recs []engine.RunRecord
	if err := json.Unmarshal([]byte(out), &recs); code != exitOK || err != nil || len(recs) != 1 || recs[0].Deleted != 501 {
		t.Fatalf("--accept-deletes = %d %s %s", code, out, errOut)
	}
	// The deletions flowed on as versions, which the reader takes without
	// a guard (they are data, not absence).
	if code, out, errOut := runCLI(t, "run", cfg, "names", "--data", data, "--json"); code != exitOK || !strings.Contains(out, `"written": 501`) {
		t.Errorf("reader = %d %s %s", code, out, errOut)
	}
}

// TestRunLongIDError: an _id too long to store fails the run with an error
// that names the entity by its first bytes and its length, not by all of
// its 70 KB, and says the limit; nothing of the batch is written.
func TestRunLongIDError(t *testing.T) {
	long := strings.Repeat("x", 70000) + "-1"
	cfg := writeFiles(t, map[string]string{"p.json": `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[{"_id":"a"},{"_id":"` + long + `"}]},"sink":{"type":"dataset","dataset":"d"}}`})
	data := t.TempDir()
	code, out, errOut := runCLI(t, "run", cfg, "--data", data)
	all := out + errOut
	if code != exitFailed || !strings.Contains(all, `"… (70002 bytes)`) || !strings.Contains(all, "cannot be stored (at most 32759)") {
		t.Fatalf("run = %d\n%.2000s", code, all)
	}
	if len(all) > 4000 {
		t.Errorf("the run's output is %d bytes: the _id is quoted whole", len(all))
	}
	if code, out, _ := runCLI(t, "datasets", "--data", data, "--json"); code != exitOK || strings.Contains(out, `"d"`) {
		t.Errorf("datasets after the failed run = %d %s", code, out)
	}
}

// TestGCPressure: without GOGC the store's pressure moves the collector
// between defaultGCPercent and nearGCPercent; with GOGC set it is left
// alone (no callback).
func TestGCPressure(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(defaultGCPercent))
	t.Setenv("GOGC", "")
	f := gcPressure()
	if f == nil {
		t.Fatal("no pressure callback without GOGC")
	}
	f(true)
	if got := debug.SetGCPercent(defaultGCPercent); got != nearGCPercent {
		t.Errorf("under pressure: GOGC %d, want %d", got, nearGCPercent)
	}
	f(true)
	f(false)
	if got := debug.SetGCPercent(defaultGCPercent); got != defaultGCPercent {
		t.Errorf("after pressure: GOGC %d, want %d", got, defaultGCPercent)
	}
	t.Setenv("GOGC", "80")
	if gcPressure() != nil {
		t.Error("a pressure callback although GOGC is set")
	}
}
