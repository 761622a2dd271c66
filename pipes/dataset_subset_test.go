package pipes_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/pipes"
	"github.com/ferrydata/ferry/pipes/all"
)

// setupEnv is setup with $ENV values.
func setupEnv(t *testing.T, config string, envVals map[string]string) *env {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pipes.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadConfig([]string{dir}, func(k string) (string, bool) { v, ok := envVals[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	plan, err := engine.Compile(cfg, all.Registry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := boltstore.Open(filepath.Join(dir, "data"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &env{t: t, dir: dir, eng: engine.New(s, plan, nil), store: s}
}

// hubspotEventPipe returns the hubspot connector's company -event pipe
// (a dataset source with a subset over the shared webhook dataset) as
// JSON, with a small batch size so that batches of skipped entities
// occur.
func hubspotEventPipe(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("/work/shared/connectors/hubspot-connector/expanded.json")
	if err != nil {
		t.Skipf("connector corpus not available: %v", err)
	}
	var comps []map[string]any
	if err := json.Unmarshal(raw, &comps); err != nil {
		t.Fatal(err)
	}
	for _, c := range comps {
		if c["_id"] == "xxxxxx-company-event" {
			c["batch_size"] = 2
			b, _ := json.Marshal(c)
			return string(b)
		}
	}
	t.Fatal("xxxxxx-company-event not found in the hubspot connector")
	return ""
}

// TestDatasetSourceSubsetHubspot runs hubspot's company -event pipe over a
// webhook dataset shared by two portals and several object types: only
// company events of the configured portal pass; the token advances over
// skipped entities, so incremental runs examine only what is new.
func TestDatasetSourceSubsetHubspot(t *testing.T) {
	ctx := context.Background()
	e := setupEnv(t, "["+hubspotEventPipe(t)+"]", map[string]string{"hubspot_webhook_dataset": "hubspot-webhook", "account_id": "42"})
	p := e.eng.Plan.Pipe("xxxxxx-company-event")
	src := p.Source.(*pipes.DatasetSource)
	if src.Subset == nil {
		t.Fatal("subset not compiled")
	}
	putJSON(t, e.store, "hubspot-webhook", 0, `[
	  {"_id":"w1","portalId":42,"subscriptionType":"company.creation","objectId":101},
	  {"_id":"w2","portalId":42,"subscriptionType":"contact.creation","objectId":201},
	  {"_id":"w3","portalId":43,"subscriptionType":"company.creation","objectId":102},
	  {"_id":"w4","portalId":42,"subscriptionType":"company.propertyChange","objectId":103},
	  {"_id":"w5","portalId":"42","subscriptionType":"company.deletion","objectId":104},
	  {"_id":"w6","portalId":42,"subscriptionType":"deal.creation","objectId":301}]`)
	rec := e.mustRun(p.ID)
	if rec.Read != 2 || rec.Written != 2 || e.since(p.ID) != "5" {
		t.Fatalf("first run = %+v since %q; want w1 and w4 read, since 5", rec, e.since(p.ID))
	}
	if got := e.entity(p.ID, "101"); !strings.Contains(got, `"$original_id":"w1"`) || !strings.Contains(got, `"subscriptionType":"company.creation"`) {
		t.Errorf("101 = %s", got)
	}
	if e.entity(p.ID, "103") == "" || e.entity(p.ID, "102") != "" || e.entity(p.ID, "104") != "" {
		t.Errorf("dataset = %s", e.bodies(p.ID))
	}
	behind := func() bool {
		t.Helper()
		b, err := src.Behind(ctx, e.store, e.since(p.ID))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if behind() {
		t.Error("behind after a complete run")
	}

	// Only entities outside the subset arrive: the run reads nothing but
	// the token moves past them.
	putJSON(t, e.store, "hubspot-webhook", 0, `[
	  {"_id":"w7","portalId":43,"subscriptionType":"company.creation","objectId":105},
	  {"_id":"w8","portalId":42,"subscriptionType":"contact.deletion","objectId":202},
	  {"_id":"w9","portalId":42,"subscriptionType":"ticket.creation","objectId":401}]`)
	if !behind() {
		t.Error("not behind after new webhook entities")
	}
	rec = e.mustRun(p.ID)
	if rec.SyncType != "incremental" || rec.Read != 0 || rec.Written != 0 || e.since(p.ID) != "8" {
		t.Errorf("skip-only run = %+v since %q; want nothing read, since 8", rec, e.since(p.ID))
	}
	if behind() {
		t.Error("behind after a run that skipped everything")
	}

	// One more match after skipped ones is found incrementally.
	putJSON(t, e.store, "hubspot-webhook", 0, `[
	  {"_id":"w10","portalId":43,"subscriptionType":"company.deletion","objectId":106},
	  {"_id":"w11","portalId":42,"subscriptionType":"company.deletion","objectId":101}]`)
	rec = e.mustRun(p.ID)
	if rec.Read != 1 || e.since(p.ID) != "10" {
		t.Errorf("incremental run = %+v since %q", rec, e.since(p.ID))
	}
	if got := e.entity(p.ID, "101"); !strings.Contains(got, `"$original_id":"w11"`) {
		t.Errorf("101 after deletion event = %s", got)
	}
}

// TestDatasetSourceSubsetValues pins the equality: a list result matches
// when any element equals the value, numbers compare by value, and the
// value may be any constant expression.
func TestDatasetSourceSubsetValues(t *testing.T) {
	e := setup(t, `[
	 {"_id":"tagged","type":"pipe","source":{"type":"dataset","dataset":"raw","subset":["eq","_S.tags","b"]}},
	 {"_id":"num","type":"pipe","source":{"type":"dataset","dataset":"raw","subset":["eq","_S.n",["integer","1"]]}},
	 {"_id":"lst","type":"pipe","source":{"type":"dataset","dataset":"raw","subset":["eq","_S.tags",["list","a","b"]]}}]`, map[string]string{})
	putJSON(t, e.store, "raw", 0, `[
	  {"_id":"1","tags":["a","b"],"n":1.0},
	  {"_id":"2","tags":"b","n":2},
	  {"_id":"3","tags":["c"],"n":1},
	  {"_id":"4"}]`)
	for pipe, want := range map[string]string{"tagged": "1,2", "num": "1,3", "lst": "1"} {
		e.mustRun(pipe)
		var got []string
		e.store.Scan(context.Background(), pipe, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
			got = append(got, r.ID)
			return nil
		})
		if strings.Join(got, ",") != want {
			t.Errorf("%s: ids %v, want %s", pipe, got, want)
		}
	}
}

// TestDatasetSourceSubsetErrors checks that subset problems are reported
// at compile time under /source/subset.
func TestDatasetSourceSubsetErrors(t *testing.T) {
	cases := []struct{ subset, want string }{
		{`["eq", ["and", true, ["no-such-fn", 1]], true]`, `/source/subset/1/2: DTL: unknown function "no-such-fn"`},
		{`["eq", "_S.x", ["bogus"]]`, `/source/subset/2: DTL: unknown function "bogus"`},
		{`["eq", "_S.x"]`, `/source/subset: subset must be ["eq", expression, value]`},
		{`["neq", "_S.x", 1]`, `/source/subset: subset must be`},
		{`"_S.x"`, `/source/subset: subset must be`},
	}
	for _, c := range cases {
		msg := compileErr(t, `{"_id":"p","type":"pipe","source":{"type":"dataset","dataset":"raw","subset":`+c.subset+`}}`)
		if !strings.Contains(msg, c.want) {
			t.Errorf("subset %s: error %s\nwant %s", c.subset, msg, c.want)
		}
	}
}
