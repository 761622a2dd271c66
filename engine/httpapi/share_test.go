package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/pipes/all"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// TestShareEndpoints: a share pipe's plan and retry through the API, and
// its counts in the run records.
func TestShareEndpoints(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{})
	api.Put("customers", map[string]any{"id": json.Number("1"), "name": "Acme"})
	crm := httptest.NewServer(api.Handler())
	defer crm.Close()
	eng, _ := enginetest.Engine(t, all.Registry(), t.TempDir(), `[
 {"_id":"crm","type":"system:rest","url_pattern":"`+crm.URL+`/api/%s","operations":{
   "lookup":{"url":"customers/{{ entity.id }}"},"insert":{"method":"POST","url":"customers"},
   "update":{"method":"PUT","url":"customers/{{ entity.id }}"},"delete":{"method":"DELETE","url":"customers/{{ entity.id }}"}}},
 {"_id":"t","type":"pipe","source":{"type":"embedded","entities":[
   {"_id":"1","id":1,"name":"Acme AS","$based_on":{"id":1,"name":"Acme"}},
   {"_id":"new","$ids":["~:new"],"$origin":"~:new"}]}},
 {"_id":"s","type":"pipe","source":{"type":"dataset","dataset":"t"},"pump":{"max_retries_per_entity":0},
  "transform":{"type":"template","template":"transform-share-rest","properties":{"rest_system":"crm","primary_key":"id","share_dataset":"s"}},
  "sink":{"deletion_tracking":false}}]`)
	h, err := httpapi.New(eng, httpapi.Options{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if _, err := eng.Run(context.Background(), "t", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	code, body, _ := do(t, "GET", srv.URL+"/api/pipes/s/share-plan")
	var plan struct {
		Entities []struct{ ID, Decision string } `json:"entities"`
		Counts   engine.ShareCounts              `json:"counts"`
	}
	json.Unmarshal([]byte(body), &plan)
	if code != 200 || plan.Counts.Updated != 1 || plan.Counts.Inserted != 1 || len(plan.Entities) != 2 {
		t.Fatalf("share-plan = %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", srv.URL+"/api/pipes/t/share-plan"); code != 400 {
		t.Errorf("share-plan of a plain pipe: %d", code)
	}
	// Inserts fail (503) and are dead-lettered at once (max_retries 0).
	api.SetFaults(fakeapi.Faults{Methods: []string{"POST"}, ErrorEvery: 1})
	code, body, _ = do(t, "POST", srv.URL+"/api/pipes/s/run")
	body = compact(body)
	if code != 500 || !strings.Contains(body, `"dead_lettered":1`) || !strings.Contains(body, `"updated":1`) {
		t.Fatalf("run = %d %s", code, body)
	}
	api.SetFaults(fakeapi.Faults{})
	if code, body, _ := do(t, "POST", srv.URL+"/api/pipes/s/retry?id=new"); code != 200 || !strings.Contains(compact(body), `"requeued":1`) {
		t.Errorf("retry = %d %s", code, body)
	}
	if code, body, _ := do(t, "POST", srv.URL+"/api/pipes/s/run"); code != 200 || !strings.Contains(compact(body), `"inserted":1`) {
		t.Errorf("run after retry = %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", srv.URL+"/api/pipes/s/runs?limit=1"); code != 200 || !strings.Contains(compact(body), `"share":{"inserted":1`) {
		t.Errorf("runs = %d %s", code, body)
	}
}

// compact drops the white space of an indented JSON answer.
func compact(s string) string { return strings.Join(strings.Fields(s), "") }
