package httpapi_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/pipes/all"
)

// TestResponsesAreRedacted: what the API and the browser answer is
// redacted with the plan's Redactor, including records a store kept from
// before errors were redacted at the source; entity data is served as
// stored.
func TestResponsesAreRedacted(t *testing.T) {
	const secret = "pa55-w0rd-of-the-crm"
	dir := t.TempDir()
	cfg := enginetest.Config(t, dir, `[
	 {"_id":"a","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1","note":"`+secret+`"}]}},
	 {"_id":"b","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1"}]},"transform":{"type":"jq","expression":"error(\"upstream echoed `+secret+`\")"}}]`)
	cfg.Redactor = &engine.Redactor{}
	cfg.Redactor.Add(secret)
	plan, err := engine.Compile(cfg, all.Registry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	store := enginetest.Store(t, dir+"/data")
	eng := engine.New(store, plan, nil)
	api, err := httpapi.New(eng, httpapi.Options{Token: testToken, UI: true})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, api)
	ctx := context.Background()
	eng.Run(ctx, "a", engine.RunOptions{})
	// A record written in plaintext by an older version.
	tx, _ := store.Begin(ctx)
	tx.AddRun(engine.RunRecord{Pipe: "a", Error: "old error with " + secret + " and " + base64.StdEncoding.EncodeToString([]byte("user:"+secret))})
	tx.SetPipeState("a", engine.PipeState{LastError: "old " + secret})
	tx.Commit()

	auth := []string{"Authorization", "Bearer " + testToken, "Content-Type", "application/json"}
	var all strings.Builder
	for _, rt := range []struct{ method, path string }{
		{"POST", "/api/pipes/b/run"}, {"GET", "/api/pipes"}, {"GET", "/api/pipes/a"}, {"GET", "/api/pipes/a/runs"},
		{"GET", "/api/pipes/b/runs"}, {"GET", "/"}, {"GET", "/ui/pipes/a"}, {"GET", "/ui/pipes/b"},
		{"GET", "/ui/datasets/a"}, {"GET", "/ui/datasets/a/entity?id=1"},
	} {
		code, body, _ := send(t, rt.method, base+rt.path, "", auth...)
		if code >= 400 && rt.path != "/api/pipes/b/run" {
			t.Errorf("%s %s = %d %s", rt.method, rt.path, code, body)
		}
		all.WriteString(body)
	}
	if strings.Contains(all.String(), secret) || strings.Contains(all.String(), base64.StdEncoding.EncodeToString([]byte("user:" + secret))[8:24]) {
		i := strings.Index(all.String(), secret)
		t.Errorf("a response holds the secret: ...%s...", all.String()[max(0, i-200):min(len(all.String()), i+50)])
	}
	if !strings.Contains(all.String(), "upstream echoed ***") {
		t.Error("the failed run's error is not shown (redacted)")
	}
	// Entity data is data: the API serves it as stored.
	if _, body, _ := send(t, "GET", base+"/api/datasets/a/entities/1", "", auth...); !strings.Contains(body, secret) {
		t.Errorf("entity data was altered: %s", body)
	}
}
