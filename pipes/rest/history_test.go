package rest_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
	"github.com/ferrydata/ferry/sinks"
)

// recompile builds config against the env's store and server, replacing
// its engine: the same datasets and pipe state under a changed config (a
// connector instance reconnected with another --history).
func (e *env) recompile(config string) {
	t := e.t
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadConfig([]string{dir}, engine.EnvFrom(map[string]string{"base": e.srv.URL}))
	if err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	sinks.Register(reg)
	rest.Register(reg)
	plan, err := engine.Compile(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.eng = engine.New(e.store, plan, nil)
}

// TestInitialSinceIsNotDeletionTracked: a run that starts from
// initial_since_value (a since-limited first run: --history) reads only
// what changed since then, so it must not delete what it did not fetch;
// with an empty initial_since_value (--history all) the full run tracks
// deletions as before.
func TestInitialSinceIsNotDeletionTracked(t *testing.T) {
	src := func(initial string) string {
		return collectConfig("", membercareOp, `"supports_since": true, "updated_expression": "{{ lastChanged }}", "initial_since_value": "`+initial+`"`)
	}
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 30}}, src(""), envOptions{})
	if rec := e.mustRun("c"); rec.SyncType != "full" || rec.Read != 30 {
		t.Fatalf("first run = %+v, want a full run of 30", rec)
	}
	e.api.Delete("customers", 25)
	e.api.Touch("customers", 3)

	// Reconnected since 00:20: records 20..30 (25 is gone) and the touched 3.
	e.recompile(src("2024-01-01T00:20:00Z"))
	rec, err := e.run("c", engine.RunOptions{Reset: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SyncType != "incremental" || rec.Read != 11 || rec.Deleted != 0 {
		t.Errorf("since-limited run = %+v, want incremental, 11 read, none deleted", rec)
	}
	if got := len(e.entities("c")); got != 30 {
		t.Errorf("%d live entities after the since-limited run, want all 30 (none fetched means none deleted)", got)
	}
	if q := e.listRequests("customers"); len(q) == 0 || q[len(q)-1].RawQuery == "" {
		t.Fatalf("requests %+v", q)
	}
	// The token moved on: the next run is incremental from it.
	if e.since("c") == "" {
		t.Error("no since token after the since-limited run")
	}

	// Back to all history: a full run tracks deletions.
	e.recompile(src(""))
	rec, err = e.run("c", engine.RunOptions{Reset: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SyncType != "full" || rec.Read != 29 || rec.Deleted != 1 {
		t.Errorf("full run = %+v, want 29 read and customer 25 deleted", rec)
	}
	if _, live := e.entities("c")["25"]; live {
		t.Error("customer 25 is still live after the full run")
	}
}

// TestInitialSinceRescanStaysLimited: a rescan of a since-limited source
// starts from initial_since_value again and deletes nothing.
func TestInitialSinceRescanStaysLimited(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 30}},
		collectConfig("", membercareOp, `"supports_since": true, "updated_expression": "{{ lastChanged }}", "initial_since_value": "2024-01-01T00:20:00Z"`), envOptions{})
	if rec := e.mustRun("c"); rec.Read != 11 || rec.SyncType != "incremental" {
		t.Fatalf("first run = %+v", rec)
	}
	e.api.Delete("customers", 22)
	rec, err := e.eng.Run(context.Background(), "c", engine.RunOptions{Rescan: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Deleted != 0 || rec.Read != 10 {
		t.Errorf("rescan = %+v, want 10 read, none deleted", rec)
	}
}
