package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// historyConnector collects fakeapi's customers; its collect starts from
// the instance's historical-data setting (history_since).
var historyConnector = map[string]string{
	"manifest.json": `{"additional_parameters": {"base_url": {}}, "system-template": "templates/system.json",
  "datatypes": {"customer": {"template": "templates/customer.json"}}}`,
	"templates/system.json": `{"_id": "<<@ system @>>", "type": "system:rest", "url_pattern": "$ENV(base_url)/api/%s",
  "operations": {"list": {"url": "customers", "params": {"limit": "7"}, "payload_property": "data",
    "next_page_link": "{{ body.nextPageUrl }}", "id_expression": "{{ id }}", "updated_expression": "{{ lastChanged }}"}}}`,
	"templates/customer.json": `[{"_id": "<<@ system @>>-<<@ datatype @>>-collect", "type": "pipe",
  "source": {"type": "rest", "system": "<<@ system @>>", "operation": "list", "supports_since": true,
    "initial_since_value": "<<@ history_since @>>"}}]`,
}

func writeTree(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
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

// TestConnectHistory: --history all, a date and since-connected decide what
// the first collect of a new instance fetches; a since-limited first run
// deletes nothing it did not fetch.
func TestConnectHistory(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{Seed: map[string]int{"customers": 30}}) // lastChanged 2024-01-01T00:01Z + i min
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	dir := writeTree(t, filepath.Join(t.TempDir(), "acme-connector"), historyConnector)
	s := &cliSession{t: t, data: t.TempDir()}
	connect := func(system string, extra ...string) string {
		return s.run(append([]string{"connect", dir, "--system", system, "--param", "base_url=" + srv.URL}, extra...)...)
	}

	// All history (the default): a full first run.
	connect("all")
	s.run("run", "all-customer-collect")
	if r := s.lastRun("all-customer-collect"); r.SyncType != "full" || r.Read != 30 {
		t.Errorf("all: first run %+v", r)
	}

	// Since a date: records changed at 00:20 or later (20..30).
	if out := connect("dated", "--history", "2024-01-01T00:20:00Z"); !strings.Contains(out, "history since 2024-01-01T00:20:00Z") {
		t.Errorf("connect output %q does not name the history", out)
	}
	s.run("run", "dated-customer-collect")
	if r := s.lastRun("dated-customer-collect"); r.SyncType != "incremental" || r.Read != 11 || r.Deleted != 0 {
		t.Errorf("dated: first run %+v, want 11 read, incremental", r)
	}
	if got := len(s.entities("dated-customer-collect")); got != 11 {
		t.Errorf("dated: %d entities", got)
	}
	// A reset run starts from the history point again and deletes nothing
	// (customer 25 is gone upstream; what was never fetched stays unknown).
	api.Delete("customers", 25)
	s.run("run", "dated-customer-collect", "--reset")
	if r := s.lastRun("dated-customer-collect"); r.Read != 10 || r.Deleted != 0 {
		t.Errorf("dated: reset run %+v, want 10 read and nothing deleted", r)
	}

	// Since connected: nothing older than now, then what changes.
	connect("recent", "--history", "since-connected")
	s.run("run", "recent-customer-collect")
	if r := s.lastRun("recent-customer-collect"); r.Read != 0 || r.Deleted != 0 {
		t.Errorf("since-connected: first run %+v, want nothing read", r)
	}
	api.Touch("customers", 7)
	s.run("run", "recent-customer-collect")
	if got := s.entities("recent-customer-collect"); len(got) != 1 || got["7"] == nil {
		t.Errorf("since-connected after a change: %v", got)
	}

	var list []struct {
		ID      string `json:"id"`
		History string `json:"history"`
	}
	decodeCLIJSON(t, s.run("connectors", "--json"), &list)
	for _, in := range list {
		want := map[string]string{"all": "", "dated": "2024-01-01T00:20:00Z", "recent": "since-connected"}[in.ID]
		if in.History != want {
			t.Errorf("instance %s history %q, want %q", in.ID, in.History, want)
		}
	}
}

// TestConnectHistoryRefused: a bad --history value, and a connector whose
// templates ignore the setting, are usage errors that record nothing.
func TestConnectHistoryRefused(t *testing.T) {
	data := t.TempDir()
	dir := writeTree(t, filepath.Join(t.TempDir(), "acme-connector"), historyConnector)
	if code, _, errOut := runCLI(t, "connect", dir, "--system", "a", "--param", "base_url=http://127.0.0.1:1", "--history", "last-week", "--data", data); code != exitUsage || !strings.Contains(errOut, "since-connected") {
		t.Errorf("--history last-week = %d %s", code, errOut)
	}
	plain := map[string]string{}
	for k, v := range historyConnector {
		plain[k] = strings.ReplaceAll(v, `"initial_since_value": "<<@ history_since @>>"`, `"is_chronological": false`)
	}
	pdir := writeTree(t, filepath.Join(t.TempDir(), "plain-connector"), plain)
	code, _, errOut := runCLI(t, "connect", pdir, "--system", "p", "--param", "base_url=http://127.0.0.1:1", "--history", "since-connected", "--data", data)
	if code != exitUsage || !strings.Contains(errOut, "does not take a historical-data setting") {
		t.Errorf("connector without history_since = %d %s", code, errOut)
	}
	if code, out, _ := runCLI(t, "connectors", "--json", "--data", data); code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Errorf("instances recorded after refused connects: %s", out)
	}
}
