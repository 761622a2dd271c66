package pipetest_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrydata/ferry/pipetest"
)

// system is a REST API that must never be called: it counts requests.
type system struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newSystem(t *testing.T) *system {
	s := &system{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		w.Write([]byte(`{"data": []}`))
	}))
	t.Cleanup(func() {
		s.srv.Close()
		if n := s.hits.Load(); n != 0 {
			t.Errorf("the system was reached %d times during a test", n)
		}
	})
	return s
}

// example writes files (slash paths under a fresh directory) and returns
// the directory.
func example(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func run(t *testing.T, dir string, update bool, pipes ...string) *pipetest.Result {
	t.Helper()
	res, err := pipetest.Run(context.Background(), pipetest.Options{Path: filepath.Join(dir, "config"), Update: update, Pipes: pipes, TempDir: t.TempDir()})
	if err != nil {
		var se *pipetest.SetupError
		if errors.As(err, &se) {
			t.Fatalf("setup: %v %v", se.Err, se.Diagnostics)
		}
		t.Fatal(err)
	}
	return res
}

func statuses(res *pipetest.Result) map[string]pipetest.Status {
	out := map[string]pipetest.Status{}
	for _, p := range res.Pipes {
		out[p.Pipe] = p.Status
	}
	return out
}

// crmConfig is a CRM on a REST API: collect, a derived dataset with a
// value that differs per run, a share pipe and a REST sink.
func crmConfig(url string) string {
	return `[
 {"_id": "crm", "type": "system:rest", "url_pattern": "` + url + `/%s", "headers": {"X-Key": "$SECRET(key)"},
  "operations": {"list": {"url": "people", "payload_property": "data", "id_expression": "{{ id }}"},
   "lookup": {"url": "people/{{ entity.id }}"}, "insert": {"method": "POST", "url": "people"},
   "update": {"method": "PUT", "url": "people/{{ entity.id }}"}, "delete": {"method": "DELETE", "url": "people/{{ entity.id }}"},
   "notify": {"method": "POST", "url": "notify"}}},
 {"_id": "crm-person-collect", "type": "pipe",
  "source": {"type": "rest", "system": "crm", "operation": "list", "supports_since": true},
  "transform": [{"type": "jq", "expression": "if .deleted == true then {_id, id, _deleted: true} else . end"},
   {"type": "template", "template": "transform-collect-rest", "properties": {"primary_key": "id", "share_dataset": "crm-person-share"}}]},
 {"_id": "person", "type": "pipe", "source": {"type": "dataset", "dataset": "crm-person-collect"},
  "transform": {"type": "jq", "expression": "{_id, _deleted, name: \"\\(.first) \\(.last)\", seen: now, address: {city, zip: \"$ENV(zip)\"}}"}},
 {"_id": "crm-person-transform", "type": "pipe", "source": {"type": "dataset", "dataset": "crm-person-collect"},
  "transform": {"type": "jq", "expression": "{_id, _deleted, id, first, last: (.last // \"\" | ascii_upcase), \"$based_on\": {first, last}}"}},
 {"_id": "crm-person-share", "type": "pipe", "source": {"type": "dataset", "dataset": "crm-person-transform"},
  "transform": {"type": "template", "template": "transform-share-rest", "properties": {"rest_system": "crm", "primary_key": "id", "share_dataset": "crm-person-share"}},
  "sink": {"deletion_tracking": false, "set_initial_offset": "onload"}},
 {"_id": "crm-notify", "type": "pipe", "source": {"type": "dataset", "dataset": "person"},
  "sink": {"type": "rest", "system": "crm", "operation": "notify"}},
 {"_id": "crm-event", "type": "pipe", "source": {"type": "http_endpoint", "allow_anonymous": true},
  "transform": {"type": "jq", "expression": ". + {received: true}"}}
]`
}

const crmPeople = `[
 {"_id": "1", "id": 1, "first": "Ada", "last": "Lovelace", "city": "London"},
 {"_id": "2", "id": 2, "first": "Alan", "last": "Turing", "city": "Wilmslow"},
 {"_id": "3", "id": 3, "deleted": true}
]`

// TestUpdateThenCompare: --update writes every pipe's output; the next
// run passes; changed test data fails with a diff of what changed.
func TestUpdateThenCompare(t *testing.T) {
	sys := newSystem(t)
	dir := example(t, map[string]string{
		"config/pipes.json":                     crmConfig(sys.srv.URL),
		"test/test.json":                        `{"env": {"zip": 1234}, "ignore": ["seen"], "pipes": {"crm-notify": {"ignore": ["address.*"]}}}`,
		"test/testdata/crm-person-collect.json": crmPeople,
		"test/testdata/crm-event.json":          `[{"_id": "e1", "kind": "created"}]`,
	})
	res := run(t, dir, true)
	if !res.Passed() || res.RunError != "" {
		t.Fatalf("update: %+v", res)
	}
	want := map[string]pipetest.Status{"crm-person-collect": pipetest.Updated, "person": pipetest.Updated, "crm-person-transform": pipetest.Updated,
		"crm-person-share": pipetest.Updated, "crm-notify": pipetest.Updated, "crm-event": pipetest.Updated}
	if got := statuses(res); len(got) != len(want) {
		t.Errorf("statuses %v, want %v", got, want)
	} else {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s, want %s", k, got[k], v)
			}
		}
	}
	person, err := os.ReadFile(filepath.Join(dir, "test/expected/person.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Internal properties and ignored paths are not written; deletes are.
	for _, s := range []string{"_updated", "_ts", "_hash", "seen"} {
		if strings.Contains(string(person), s) {
			t.Errorf("expected/person.json holds %s:\n%s", s, person)
		}
	}
	if !strings.Contains(string(person), `"_deleted": true`) || !strings.Contains(string(person), `"zip": "1234"`) {
		t.Errorf("expected/person.json:\n%s", person)
	}
	if notify, _ := os.ReadFile(filepath.Join(dir, "test/expected/crm-notify.json")); strings.Contains(string(notify), "zip") || !strings.Contains(string(notify), `"address": {}`) {
		t.Errorf("expected/crm-notify.json (address.* ignored):\n%s", notify)
	}
	share, _ := os.ReadFile(filepath.Join(dir, "test/expected/crm-person-share.json"))
	for _, s := range []string{`"$last_operation": "update"`, `"last": "LOVELACE"`, `"$last_operation": "discard-already-deleted"`} {
		if !strings.Contains(string(share), s) {
			t.Errorf("expected/crm-person-share.json lacks %s:\n%s", s, share)
		}
	}
	// A webhook pipe reads its test data as if it had been posted.
	if ev, _ := os.ReadFile(filepath.Join(dir, "test/expected/crm-event.json")); !strings.Contains(string(ev), `"received": true`) {
		t.Errorf("expected/crm-event.json:\n%s", ev)
	}
	notes := strings.Join(res.Notes, "\n")
	if !strings.Contains(notes, "crm-notify: its rest sink is captured") {
		t.Errorf("notes: %s", notes)
	}

	// Again: every pipe passes, nothing written.
	res = run(t, dir, false)
	for id, st := range statuses(res) {
		if st != pipetest.Passed {
			t.Errorf("second run: %s %s", id, st)
		}
	}

	// Changed input: the derived pipes fail with a diff.
	os.WriteFile(filepath.Join(dir, "test/testdata/crm-person-collect.json"), []byte(strings.Replace(crmPeople, "Wilmslow", "Manchester", 1)), 0o644)
	res = run(t, dir, false)
	if res.Passed() {
		t.Fatal("changed test data passed")
	}
	for _, p := range res.Pipes {
		switch p.Pipe {
		case "person":
			if p.Status != pipetest.Failed || !strings.Contains(p.Diff, `-      "city": "Wilmslow",`) || !strings.Contains(p.Diff, `+      "city": "Manchester",`) ||
				!strings.HasPrefix(p.Diff, "--- expected/person.json\n+++ person (actual)\n@@ ") {
				t.Errorf("person: %s\n%s", p.Status, p.Diff)
			}
		case "crm-person-transform", "crm-person-share":
			if p.Status != pipetest.Passed {
				t.Errorf("%s: %s (the city does not reach it)\n%s", p.Pipe, p.Status, p.Diff)
			}
		}
	}
	// A comparison restricted to one pipe.
	res = run(t, dir, false, "crm-person-share")
	if len(res.Pipes) != 1 || !res.Passed() {
		t.Errorf("restricted run: %+v", res.Pipes)
	}
}

// TestNeverReachesSystem: an input pipe without test data reads nothing,
// a pipe whose transform calls its system fails the test run naming the
// system, and test.json can skip it.
func TestNeverReachesSystem(t *testing.T) {
	sys := newSystem(t)
	cfg := strings.Replace(crmConfig(sys.srv.URL), `{"_id": "crm-notify"`, `{"_id": "crm-enrich", "type": "pipe", "source": {"type": "embedded", "entities": [{"_id": "1", "id": 1}]},
  "transform": {"type": "rest", "system": "crm", "operation": "lookup", "replace_entity": false}},
 {"_id": "crm-notify"`, 1)
	dir := example(t, map[string]string{"config/pipes.json": cfg, "test/test.json": `{"env": {"zip": "x"}}`})
	res, err := pipetest.Run(context.Background(), pipetest.Options{Path: filepath.Join(dir, "config"), Update: true, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed() || !strings.Contains(res.RunError, "a test never reaches a system") || !strings.Contains(res.RunError, `system "crm"`) {
		t.Errorf("run error %q", res.RunError)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "crm-person-collect: no testdata/crm-person-collect.json: its rest source reads nothing") {
		t.Errorf("notes %v", res.Notes)
	}
	if _, err := os.Stat(filepath.Join(dir, "test/expected")); err == nil {
		t.Error("a failed run wrote expected files")
	}

	os.WriteFile(filepath.Join(dir, "test/test.json"), []byte(`{"env": {"zip": "x"}, "pipes": {"crm-enrich": {"skip": true}}}`), 0o644)
	res = run(t, dir, true)
	if !res.Passed() {
		t.Fatalf("with crm-enrich skipped: %+v", res)
	}
	if _, ok := statuses(res)["crm-enrich"]; ok {
		t.Error("a skipped pipe was compared")
	}
}

// TestShareLookups: a share pipe's lookups are answered by its test data
// when it has some, else by the records its collect pipe collected, else
// by $based_on.
func TestShareLookups(t *testing.T) {
	sys := newSystem(t)
	files := map[string]string{
		"config/pipes.json":                     crmConfig(sys.srv.URL),
		"test/test.json":                        `{"env": {"zip": "x"}}`,
		"test/testdata/crm-person-collect.json": crmPeople,
		// The system's records: Ada changed after the collect, Alan gone.
		"test/testdata/crm-person-share.json": `[{"id": 1, "first": "Ada", "last": "King"}]`,
	}
	dir := example(t, files)
	run(t, dir, true, "crm-person-share")
	share, _ := os.ReadFile(filepath.Join(dir, "test/expected/crm-person-share.json"))
	if strings.Count(string(share), `"discard-modified-in-system"`) != 2 || strings.Contains(string(share), `"update"`) {
		t.Errorf("with the system's records as test data:\n%s", share)
	}

	// Without a collect pipe: $based_on answers (the system holds what
	// was collected), so both are updated.
	files["config/pipes.json"] = strings.Replace(crmConfig(sys.srv.URL), `{"type": "template", "template": "transform-collect-rest", "properties": {"primary_key": "id", "share_dataset": "crm-person-share"}}`, `{"type": "jq", "expression": "."}`, 1)
	delete(files, "test/testdata/crm-person-share.json")
	dir = example(t, files)
	run(t, dir, true, "crm-person-share")
	share, _ = os.ReadFile(filepath.Join(dir, "test/expected/crm-person-share.json"))
	if strings.Count(string(share), `"$last_operation": "update"`) != 2 {
		t.Errorf("answered from $based_on:\n%s", share)
	}
}

// TestSetupErrors: problems with the test itself are SetupErrors that
// name the file and what is wrong.
func TestSetupErrors(t *testing.T) {
	sys := newSystem(t)
	base := map[string]string{"config/pipes.json": crmConfig(sys.srv.URL), "test/test.json": `{"env": {"zip": "x"}}`}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no test directory", map[string]string{"test/test.json": ""}, "no test directory"},
		{"unknown key", map[string]string{"test/test.json": `{"env": {"zip": "x"}, "ignored": ["x"]}`}, `unknown field "ignored"`},
		{"malformed test.json", map[string]string{"test/test.json": "{\n  \"env\": \n}"}, "test.json:3:"},
		{"testdata of an unknown pipe", map[string]string{"test/testdata/crm-persn-collect.json": `[]`}, `no pipe "crm-persn-collect" in the config (did you mean "crm-person-collect"?)`},
		{"expected of an unknown pipe", map[string]string{"test/expected/nope.json": `[]`}, `expected/nope.json: no pipe "nope"`},
		{"testdata of a dataset pipe", map[string]string{"test/testdata/person.json": `[]`}, `pipe "person" reads datasets`},
		{"testdata not a list", map[string]string{"test/testdata/crm-person-collect.json": `{"_id": "1"}`}, "want a JSON array of objects"},
		{"expected of a skipped pipe", map[string]string{"test/test.json": `{"env": {"zip": "x"}, "pipes": {"person": {"skip": true}}}`, "test/expected/person.json": `[]`}, "is not compared"},
		{"bad ignore", map[string]string{"test/test.json": `{"env": {"zip": "x"}, "ignore": ["a.[b"]}`}, "bad pattern"},
		{"unknown pipe in test.json", map[string]string{"test/test.json": `{"env": {"zip": "x"}, "pipes": {"persn": {}}}`}, `pipes: no pipe "persn"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range base {
				files[k] = v
			}
			for k, v := range tc.files {
				files[k] = v
			}
			if tc.name == "no test directory" {
				delete(files, "test/test.json")
			}
			dir := example(t, files)
			_, err := pipetest.Run(context.Background(), pipetest.Options{Path: filepath.Join(dir, "config"), TempDir: t.TempDir()})
			var se *pipetest.SetupError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want a SetupError with %q", err, tc.want)
			}
		})
	}
}

// TestEnvIsTheTests: $ENV values come from test.json (and Options.Env),
// never from the process environment.
func TestEnvIsTheTests(t *testing.T) {
	sys := newSystem(t)
	t.Setenv("zip", "from-the-process")
	dir := example(t, map[string]string{"config/pipes.json": crmConfig(sys.srv.URL), "test/test.json": `{}`})
	_, err := pipetest.Run(context.Background(), pipetest.Options{Path: filepath.Join(dir, "config"), TempDir: t.TempDir()})
	var se *pipetest.SetupError
	if !errors.As(err, &se) || !strings.Contains(se.Diagnostics.Errors()[0].Message, `unknown environment variable "zip"`) {
		t.Fatalf("err = %v %v", err, se)
	}
	res, err := pipetest.Run(context.Background(), pipetest.Options{Path: filepath.Join(dir, "config"), Env: map[string]string{"zip": "0150"}, Update: true, TempDir: t.TempDir()})
	if err != nil || !res.Passed() {
		t.Fatalf("with Env: %v %+v", err, res)
	}
}

// TestConnectorDir: a connector directory is tested as one instance
// connected with the test's parameters, at a fixed connect time.
func TestConnectorDir(t *testing.T) {
	sys := newSystem(t)
	dir := example(t, map[string]string{
		"manifest.json": `{"additional_parameters": {"base_url": {}}, "system-template": "templates/system.json",
		  "datatypes": {"person": {"template": "templates/person.json"}}}`,
		"templates/system.json": `{"_id": "<<@ system @>>", "type": "system:rest", "url_pattern": "$ENV(base_url)/%s",
		  "operations": {"list": {"url": "people", "payload_property": "data"}}}`,
		"templates/person.json": `[{"_id": "<<@ system @>>-<<@ datatype @>>-collect", "type": "pipe",
		  "source": {"type": "rest", "system": "<<@ system @>>", "operation": "list"},
		  "transform": {"type": "jq", "expression": ". + {connected: \"<<@ connected_ts @>>\"}"}}]`,
		"test/test.json":                         `{"connectors": [{"system": "acme", "parameters": {"base_url": "` + sys.srv.URL + `"}}]}`,
		"test/testdata/acme-person-collect.json": `[{"_id": "1", "name": "Ada"}]`,
	})
	res, err := pipetest.Run(context.Background(), pipetest.Options{Path: dir, Update: true, TempDir: t.TempDir()})
	if err != nil || !res.Passed() {
		t.Fatalf("%v %+v", err, res)
	}
	got, err := os.ReadFile(filepath.Join(dir, "test/expected/acme-person-collect.json"))
	if err != nil || !strings.Contains(string(got), `"connected": "2024-01-01T00:00:00Z"`) {
		t.Errorf("expected output %s %v", got, err)
	}
}
