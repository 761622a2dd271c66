package rest_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// transformConfig collects 5 customers and runs transform (a JSON object)
// on them in pipe "t".
func transformConfig(transform string) string {
	return `[
  {"_id": "api", "type": "system:rest", "url_pattern": "$ENV(base)/api/%s", "worker_threads": 3, "operations": {
    "list": {"url": "customers", "params": {"limit": 5}, "payload_property": "data", "id_expression": "{{ id }}"},
    "get": {"url": "customers/{{ entity.id }}"},
    "get-shifted": {"url": "customers/{{ entity.id|int + 3 }}"},
    "products": {"url": "products", "params": {"limit": 2}, "payload_property": "data",
      "id_expression": "{{ entity.id }}-{{ id }}", "next_page_link": "{{ body.nextPageUrl }}"},
    "create": {"method": "POST", "url": "widgets", "payload": {"name": "from-op"}}}},
  {"_id": "t", "type": "pipe", "source": {"type": "rest", "system": "api"}, "transform": ` + transform + `}
]`
}

func TestTransformKeepsEntity(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 5}},
		transformConfig(`{"type": "rest", "system": "api", "operation": "get", "response_status_property": "status",
		  "response_headers_property": "rh", "side_effects": false}`), envOptions{})
	if rec := e.mustRun("t"); rec.Written != 5 {
		t.Fatalf("run = %+v", rec)
	}
	for id, ent := range e.entities("t") {
		resp, _ := ent["response"].(map[string]any)
		if resp == nil || resp["name"] != ent["name"] || jsonText(resp["id"]) != id {
			t.Errorf("entity %s: response %s", id, jsonText(ent["response"]))
		}
		if ent["status"] != json.Number("200") {
			t.Errorf("entity %s: status %v", id, ent["status"])
		}
		if h, _ := ent["rh"].(map[string]any); h == nil || !strings.Contains(h["Etag"].(string), id+".1") {
			t.Errorf("entity %s: headers %v", id, ent["rh"])
		}
	}
}

func TestTransformReplaceEntity(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 5, "products": 3}},
		transformConfig(`{"type": "rest", "system": "api", "operation": "products", "replace_entity": true}`), envOptions{})
	// 5 customers x 3 products, in pages of 2 per customer.
	if rec := e.mustRun("t"); rec.Written != 15 {
		t.Fatalf("run = %+v", rec)
	}
	got := e.entities("t")
	if p, ok := got["4-3"]; !ok || p["sku"] == nil {
		t.Errorf("entity 4-3 = %v", jsonText(p))
	}
}

func TestTransformStatusCodes(t *testing.T) {
	// Customers 1..5 look up 4..8: 4 and 5 exist, 6..8 are 404.
	t.Run("ignored", func(t *testing.T) {
		e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 5}},
			transformConfig(`{"type": "rest", "system": "api", "operation": "get-shifted", "ignored_status_codes": "404"}`), envOptions{})
		if rec := e.mustRun("t"); rec.Read != 5 || rec.Written != 2 {
			t.Fatalf("run = %+v, want 404s dropped", rec)
		}
		got := e.entities("t")
		if got["1"] == nil || got["2"] == nil || got["3"] != nil {
			t.Errorf("entities %v", len(got))
		}
	})
	t.Run("allowed", func(t *testing.T) {
		e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 5}},
			transformConfig(`{"type": "rest", "system": "api", "operation": "get-shifted", "allowed_status_codes": "200,404",
			  "response_status_property": "status"}`), envOptions{})
		if rec := e.mustRun("t"); rec.Written != 5 {
			t.Fatalf("run = %+v", rec)
		}
		if ent := e.entities("t")["5"]; ent["status"] != json.Number("404") {
			t.Errorf("entity 5 = %s", jsonText(ent))
		}
	})
	t.Run("fails", func(t *testing.T) {
		e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 5}},
			transformConfig(`{"type": "rest", "system": "api", "operation": "get-shifted"}`), envOptions{})
		_, err := e.run("t", engine.RunOptions{})
		// Requests run concurrently: any of the failing entities may be
		// the one reported, never one that succeeded.
		if err == nil || !regexp.MustCompile(`entity "([345])".*customers/([678]): status 404`).MatchString(err.Error()) {
			t.Fatalf("err = %v, want a failing entity's _id and the status", err)
		}
		if n := len(e.entities("t")); n != 0 {
			t.Errorf("%d entities written", n)
		}
	})
}

func TestTransformTriggerOn(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 5}},
		transformConfig(`{"type": "rest", "system": "api", "operation": "get", "trigger_on": {"key": "id", "value": "[12]"}}`), envOptions{})
	e.mustRun("t")
	got := e.entities("t")
	if len(got) != 5 || got["1"]["response"] == nil || got["2"]["response"] == nil || got["3"]["response"] != nil {
		t.Errorf("trigger_on: %s", jsonText(got))
	}
}

// TestTransformEntityOperationAndPayload: an entity's own operation and
// payload win, and its payload is sent as data, never rendered.
func TestTransformEntityOperationAndPayload(t *testing.T) {
	e := newEnv(t, fakeapi.Options{}, `[
  {"_id": "api", "type": "system:rest", "url_pattern": "$ENV(base)/api/%s", "operations": {
    "list": {"url": "jobs", "payload_property": "data", "id_expression": "{{ id }}"},
    "noop": {"url": "jobs"},
    "create": {"method": "POST", "url": "widgets", "payload": {"name": "from-op {{ entity.id }}"}}}},
  {"_id": "t", "type": "pipe", "source": {"type": "rest", "system": "api"},
   "transform": {"type": "rest", "system": "api", "operation": "noop", "response_status_property": "status",
     "payload": {"name": "from-transform"}}}
]`, envOptions{})
	for _, job := range []map[string]any{
		{"id": json.Number("1"), "operation": "create", "payload": map[string]any{"name": "{{ literal }}"}},
		{"id": json.Number("2"), "operation": "create"},
	} {
		if _, err := e.api.Put("jobs", job); err != nil {
			t.Fatal(err)
		}
	}
	e.mustRun("t")
	got := e.entities("t")
	if got["1"]["status"] != json.Number("201") || got["2"]["status"] != json.Number("201") {
		t.Fatalf("entities %s", jsonText(got))
	}
	var names []string
	for _, w := range e.api.Records("widgets") {
		names = append(names, w["name"].(string))
	}
	slices.Sort(names) // requests run concurrently
	if strings.Join(names, "|") != "from-transform|{{ literal }}" {
		t.Errorf("widget names %q: want the entity payload verbatim and the transform payload", names)
	}
}
