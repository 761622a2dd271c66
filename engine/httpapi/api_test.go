package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/pipes/all"
)

func server(t *testing.T) (*httptest.Server, *engine.Engine) {
	t.Helper()
	eng, _ := enginetest.Engine(t, all.Registry(), t.TempDir(), `[
 {"_id":"a","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1","n":12345678901234567890.10},{"_id":"2"},{"_id":"x/y"}]},"pump":{"schedule_interval":60}},
 {"_id":"b","type":"pipe","source":{"type":"dataset","dataset":"a"},"pump":{"mode":"manual"}}]`)
	api, err := httpapi.New(eng, httpapi.Options{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv, eng
}

const testToken = "the-token-of-the-tests"

// do sends a request with the API token (and a JSON content type on
// POSTs); hdr are extra header name/value pairs ("Authorization", "" drops
// the token).
func do(t *testing.T, method, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestAPI(t *testing.T) {
	srv, eng := server(t)
	u := srv.URL
	// Before any run.
	if code, body, _ := do(t, "GET", u+"/api/datasets"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("datasets before run = %d %s", code, body)
	}
	code, body, _ := do(t, "POST", u+"/api/pipes/a/run")
	var rec engine.RunRecord
	if json.Unmarshal([]byte(body), &rec); code != 200 || rec.Written != 3 || rec.Pipe != "a" {
		t.Fatalf("run a = %d %s", code, body)
	}
	if _, err := eng.Run(context.Background(), "b", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}

	code, body, _ = do(t, "GET", u+"/api/pipes")
	var pipes []httpapi.PipeView
	if err := json.Unmarshal([]byte(body), &pipes); err != nil || code != 200 || len(pipes) != 2 {
		t.Fatalf("pipes = %d %s", code, body)
	}
	if p := pipes[0]; p.ID != "a" || p.Source != "embedded" || p.Output != "a" || p.Schedule != "every 1m0s" || p.LastRun == nil || p.LastRun.Written != 3 {
		t.Errorf("pipe a = %+v", p)
	}
	if p := pipes[1]; p.ID != "b" || p.Schedule != "manual" || p.Inputs[0] != "a" || p.State.Since != "2" {
		t.Errorf("pipe b = %+v", p)
	}
	if code, body, _ := do(t, "GET", u+"/api/pipes/b"); code != 200 || !strings.Contains(body, `"_id": "b"`) {
		t.Errorf("pipe b = %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", u+"/api/pipes/a/runs?limit=1"); code != 200 || strings.Count(body, `"pipe"`) != 1 {
		t.Errorf("runs = %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", u+"/api/pipes/b/runs?limit=-1"); code != 400 || !strings.Contains(body, "non-negative") {
		t.Errorf("bad limit = %d %s", code, body)
	}

	code, body, _ = do(t, "GET", u+"/api/datasets")
	var infos []engine.DatasetInfo
	if json.Unmarshal([]byte(body), &infos); code != 200 || len(infos) != 2 || infos[0].Name != "a" || infos[0].Versions != 3 {
		t.Errorf("datasets = %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", u+"/api/datasets/a"); code != 200 || !strings.Contains(body, `"entities": 3`) {
		t.Errorf("dataset a = %d %s", code, body)
	}

	// Entities since an offset, as a JSON array; numbers keep their text.
	code, body, hdr := do(t, "GET", u+"/api/datasets/a/entities?since=1")
	var ents []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &ents); err != nil || code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("entities = %d %s (%v)", code, body, err)
	}
	if len(ents) != 2 || string(ents[0]["_id"]) != `"2"` || string(ents[0]["_updated"]) != "1" {
		t.Errorf("entities since 1 = %s", body)
	}
	if _, body, _ := do(t, "GET", u+"/api/datasets/a/entities?limit=1"); !strings.Contains(body, `"n":12345678901234567890.10`) || strings.Count(body, `"_id"`) != 1 {
		t.Errorf("entities limit 1 = %s", body)
	}
	if _, body, _ := do(t, "GET", u+"/api/datasets/a/entities?since=99"); strings.TrimSpace(body) != "[]" {
		t.Errorf("entities past the end = %q", body)
	}
	// NDJSON by parameter and by Accept header.
	for _, h := range [][]string{{}, {"Accept", "application/x-ndjson"}} {
		url := u + "/api/datasets/a/entities"
		if len(h) == 0 {
			url += "?format=ndjson"
		}
		code, body, hdr := do(t, "GET", url, h...)
		lines := strings.Split(strings.TrimSpace(body), "\n")
		if code != 200 || hdr.Get("Content-Type") != "application/x-ndjson" || len(lines) != 3 {
			t.Fatalf("ndjson = %d %q", code, body)
		}
		for _, l := range lines {
			if !json.Valid([]byte(l)) {
				t.Errorf("ndjson line %q is not JSON", l)
			}
		}
	}
	if code, _, _ := do(t, "GET", u+"/api/datasets/a/entities?since=x"); code != 400 {
		t.Errorf("bad since = %d", code)
	}

	// One entity, with history after a change.
	if code, body, _ := do(t, "GET", u+"/api/datasets/a/entities/1"); code != 200 || !strings.Contains(body, `"_id":"1"`) || !strings.Contains(body, `"_previous":null`) {
		t.Errorf("entity 1 = %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", u+"/api/datasets/a/entities/x%2Fy"); code != 200 || !strings.Contains(body, `"_id":"x/y"`) {
		t.Errorf("entity x/y = %d %s", code, body)
	}
	tx, _ := eng.Store.Begin(context.Background())
	ent, _ := engine.DecodeEntity([]byte(`{"_id":"1","_deleted":true}`))
	p, _ := engine.Prepare(ent)
	tx.Put("a", &p, 1)
	tx.Commit()
	code, body, _ = do(t, "GET", u+"/api/datasets/a/entities/1?history=true")
	var hist []map[string]any
	if err := json.Unmarshal([]byte(body), &hist); err != nil || code != 200 || len(hist) != 2 || hist[1]["_deleted"] != true || hist[1]["_previous"] != float64(0) {
		t.Errorf("history = %d %s", code, body)
	}
	if _, body, _ := do(t, "GET", u+"/api/datasets/a/entities?history=true"); strings.Count(body, `"_id"`) != 4 {
		t.Errorf("all versions = %s", body)
	}

	// 404s.
	for _, path := range []string{"/api/pipes/zz", "/api/pipes/zz/runs", "/api/datasets/zz", "/api/datasets/zz/entities", "/api/datasets/a/entities/zz", "/api/datasets/a/entities/zz?history=true"} {
		code, body, _ := do(t, "GET", u+path)
		if code != 404 || !strings.Contains(body, `"error"`) {
			t.Errorf("GET %s = %d %s", path, code, body)
		}
	}
	if code, _, _ := do(t, "POST", u+"/api/pipes/zz/run"); code != 404 {
		t.Errorf("run unknown = %d", code)
	}
	if code, _, _ := do(t, "POST", u+"/api/pipes/zz/reset"); code != 404 {
		t.Errorf("reset unknown = %d", code)
	}
	if code, _, _ := do(t, "GET", u+"/api/pipes/a/run"); code != 405 {
		t.Errorf("GET on run = %d, want 405", code)
	}

	// Reset clears the offset; the next run is full.
	if code, body, _ := do(t, "POST", u+"/api/pipes/b/reset"); code != 200 || !strings.Contains(body, `"reset": "b"`) {
		t.Errorf("reset = %d %s", code, body)
	}
	if st, _ := eng.Store.PipeState(context.Background(), "b"); st.Since != "" {
		t.Errorf("offset after reset = %q", st.Since)
	}
	code, body, _ = do(t, "POST", u+"/api/pipes/b/run")
	if json.Unmarshal([]byte(body), &rec); code != 200 || rec.SyncType != "full" {
		t.Errorf("run after reset = %d %s", code, body)
	}

	// Rescan keeps the offset but makes the next run (only) a full run.
	code, body, _ = do(t, "POST", u+"/api/pipes/b/run")
	if json.Unmarshal([]byte(body), &rec); code != 200 || rec.SyncType != "incremental" {
		t.Errorf("run after a full run = %d %s", code, body)
	}
	before, _ := eng.Store.PipeState(context.Background(), "b")
	if code, body, _ := do(t, "POST", u+"/api/pipes/b/rescan"); code != 200 || !strings.Contains(body, `"rescan": "b"`) {
		t.Errorf("rescan = %d %s", code, body)
	}
	if st, _ := eng.Store.PipeState(context.Background(), "b"); st.Since != before.Since || !st.RescanRequested {
		t.Errorf("state after rescan request = %+v, offset before %q", st, before.Since)
	}
	for i, want := range []string{"full", "incremental"} {
		code, body, _ = do(t, "POST", u+"/api/pipes/b/run")
		if json.Unmarshal([]byte(body), &rec); code != 200 || rec.SyncType != want {
			t.Errorf("run %d after rescan = %d %s, want %s", i, code, body, want)
		}
	}
}

func TestRunFailureIs500(t *testing.T) {
	srv, eng := server(t)
	tx, _ := eng.Store.Begin(context.Background())
	tx.SetPipeState("b", engine.PipeState{Since: "garbage"})
	tx.Commit()
	code, body, _ := do(t, "POST", srv.URL+"/api/pipes/b/run")
	if code != 500 || !strings.Contains(body, "bad stored offset") {
		t.Errorf("failed run = %d %s", code, body)
	}
}
