package rest_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// collectConfig is a system:rest with one list operation and a collect
// pipe "c" using it. op is the operation object's extra keys; src the
// source's extra keys.
func collectConfig(system, op, src string) string {
	if system != "" {
		system = "," + system
	}
	if op != "" {
		op = "," + op
	}
	if src != "" {
		src = "," + src
	}
	return `[
  {"_id": "api", "type": "system:rest", "url_pattern": "$ENV(base)/api/%s"` + system + `,
   "operations": {"list": {"method": "GET", "url": "customers", "payload_property": "data",
     "id_expression": "{{ id }}", "description": "tolerated"` + op + `}}},
  {"_id": "c", "type": "pipe", "source": {"type": "rest", "system": "api", "operation": "list"` + src + `}}
]`
}

// membercareOp pages with the body's next link (membercare idiom).
const membercareOp = `"params": {"limit": "100"}, "next_page_link": "{{ body.nextPageUrl }}"`

// TestCollectNextPageURL collects 250 customers in pages of 100 following
// body.nextPageUrl with the default termination strategies.
func TestCollectNextPageURL(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 250}}, collectConfig("", membercareOp, ""), envOptions{})
	rec := e.mustRun("c")
	if rec.Read != 250 || rec.Written != 250 || rec.SyncType != "full" {
		t.Fatalf("run = %+v", rec)
	}
	if n := len(e.listRequests("customers")); n != 3 {
		t.Errorf("%d list requests, want 3 pages", n)
	}
	got := e.entities("c")
	want := e.api.Records("customers")
	if len(got) != 250 {
		t.Fatalf("%d entities", len(got))
	}
	for _, rec := range want {
		id := rec["id"].(json.Number).String()
		ent, ok := got[id]
		if !ok {
			t.Fatalf("customer %s missing", id)
		}
		// Big integers and decimals keep their exact text.
		if ent["externalRef"] != rec["externalRef"] || ent["balance"] != rec["balance"] || ent["name"] != rec["name"] {
			t.Fatalf("customer %s = %s, want %s", id, jsonText(ent), jsonText(rec))
		}
	}
	// A second run that changes nothing writes nothing (the pages go to
	// the engine as text: unchanged items are found by their text's hash).
	rec = e.mustRun("c")
	if rec.Read != 250 || rec.Written != 0 || rec.Unchanged != 250 || rec.Deleted != 0 {
		t.Errorf("second run = %+v", rec)
	}
	// One customer changed upstream: one new version, of that customer.
	if _, err := e.api.Patch("customers", 42, map[string]any{"name": "Renamed AS"}); err != nil {
		t.Fatal(err)
	}
	rec = e.mustRun("c")
	if rec.Read != 250 || rec.Written != 1 || rec.Unchanged != 249 {
		t.Errorf("third run = %+v", rec)
	}
	if got := e.entities("c")["42"]["name"]; got != "Renamed AS" {
		t.Errorf("customer 42 name = %v", got)
	}
}

// TestCollectHeaderPaging is the powerofficego/wave idiom: a constant next
// link, a page counter header computed from previous_request_headers, and
// [same-next-page-request, empty-result].
func TestCollectHeaderPaging(t *testing.T) {
	op := `"params": {"limit": "100"},
	  "headers": {"X-Sesam-Page": "{% if (previous_request_headers is defined and previous_request_headers['X-Sesam-Page'] is defined) %}{{ previous_request_headers['X-Sesam-Page']|int + 1 }}{% else %}1{% endif %}"},
	  "next_page_link": "{{ url }}",
	  "next_page_termination_strategy": ["same-next-page-request", "empty-result"]`
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 250}}, collectConfig("", op, ""), envOptions{})
	rec := e.mustRun("c")
	if rec.Read != 250 || rec.Written != 250 {
		t.Fatalf("run = %+v", rec)
	}
	reqs := e.listRequests("customers")
	var pages []string
	for _, r := range reqs {
		pages = append(pages, r.Header.Get("X-Sesam-Page"))
		if q, _ := url.ParseQuery(r.RawQuery); len(q["limit"]) != 1 {
			t.Errorf("request %q repeats or drops the limit param", r.RawQuery)
		}
	}
	// Page 4 is empty and ends the run (empty-result).
	if got := strings.Join(pages, ","); got != "1,2,3,4" {
		t.Errorf("X-Sesam-Page sequence %s, want 1,2,3,4", got)
	}
}

// TestCollectSkipParamFromHeaders: params computed from the request headers
// (superoffice/powerofficego `$skip`), markjson numbers.
func TestCollectSkipParamFromHeaders(t *testing.T) {
	op := `"params": {"$top": "{{ properties.top }}",
	    "$skip": "{% if (previous_request_headers['X-Sesam-Page'] is defined) %}{{ properties.top|int*(headers['X-Sesam-Page']|int-1) }}{% else %}0{% endif %}sesam:markjson"},
	  "headers": {"X-Sesam-Page": "{% if (previous_request_headers is defined and previous_request_headers['X-Sesam-Page'] is defined) %}{{ previous_request_headers['X-Sesam-Page']|int + 1 }}{% else %}1{% endif %}"},
	  "next_page_link": "$ENV(base)/api/customers",
	  "next_page_termination_strategy": ["same-next-page-request", "empty-result"]`
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 45}}, collectConfig("", op, `"properties": {"top": "20"}`), envOptions{})
	if rec := e.mustRun("c"); rec.Read != 45 || rec.Written != 45 {
		t.Fatalf("run = %+v", rec)
	}
	var skips []string
	for _, r := range e.listRequests("customers") {
		q, _ := url.ParseQuery(r.RawQuery)
		skips = append(skips, q.Get("$skip"))
	}
	if got := strings.Join(skips, ","); got != "0,20,40,60" {
		t.Errorf("$skip sequence %s, want 0,20,40,60", got)
	}
}

// TestSince: the second run sends the stored token and reads only what
// changed; the token is the largest updated_expression value.
func TestSince(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 120}},
		collectConfig("", membercareOp, `"supports_since": true, "updated_expression": "{{ lastChanged }}"`), envOptions{})
	rec := e.mustRun("c")
	last := e.api.Records("customers")[119]["lastChanged"].(string)
	if rec.Read != 120 || e.since("c") != last {
		t.Fatalf("first run = %+v, since %q want %q", rec, e.since("c"), last)
	}
	for _, id := range []int{5, 7} {
		r, _ := e.api.Get("customers", int64(id))
		r["name"] = fmt.Sprintf("Changed %d", id)
		if _, err := e.api.Put("customers", map[string]any{"id": r["id"], "name": r["name"], "email": r["email"]}); err != nil {
			t.Fatal(err)
		}
	}
	e.api.ResetStats()
	rec = e.mustRun("c")
	if rec.SyncType != "incremental" || rec.Written != 2 {
		t.Fatalf("second run = %+v", rec)
	}
	// fakeapi's since is inclusive: the record at the old token comes again.
	if rec.Read != 3 {
		t.Errorf("second run read %d, want 3 (2 changed + the one at the token)", rec.Read)
	}
	reqs := e.listRequests("customers")
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	if q, _ := url.ParseQuery(reqs[0].RawQuery); q.Get("since") != last {
		t.Errorf("second run query %q, want since=%s", reqs[0].RawQuery, last)
	}
	if got := e.entities("c")["7"]["name"]; got != "Changed 7" {
		t.Errorf("customer 7 name = %v", got)
	}
	r7, _ := e.api.Get("customers", 7)
	if e.since("c") != r7["lastChanged"] {
		t.Errorf("since %q, want customer 7's lastChanged %v", e.since("c"), r7["lastChanged"])
	}
	// A third run with nothing new keeps the token and writes nothing.
	if rec := e.mustRun("c"); rec.Written != 0 || e.since("c") != r7["lastChanged"] {
		t.Errorf("third run = %+v, since %q", rec, e.since("c"))
	}
}

// TestSinceHeaderAndInitial: since_property_location header with a custom
// name, and initial_since_value on the first run.
func TestSinceHeaderAndInitial(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 30}},
		collectConfig("", `"since_property_name": "Since", "since_property_location": "header"`,
			`"supports_since": true, "updated_expression": "{{ lastChanged }}", "initial_since_value": "2024-01-01T00:20:00Z"`), envOptions{})
	rec := e.mustRun("c")
	// Records 20..30 have lastChanged >= 00:20.
	if rec.Read != 11 {
		t.Errorf("first run read %d, want 11", rec.Read)
	}
	r := e.listRequests("customers")[0]
	if r.Header.Get("Since") != "2024-01-01T00:20:00Z" || strings.Contains(r.RawQuery, "since") {
		t.Errorf("request header Since=%q query %q", r.Header.Get("Since"), r.RawQuery)
	}
}

// TestURLUsesSince: a url template reading since disables the automatic
// param; manual sends nothing.
func TestURLUsesSince(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 10}}, `[
  {"_id": "api", "type": "system:rest", "url_pattern": "$ENV(base)/api/%s", "operations": {
    "list": {"url": "customers{% if since %}?since={{ since }}{% endif %}", "payload_property": "data", "id_expression": "{{ id }}"},
    "manual": {"url": "customers", "payload_property": "data", "id_expression": "{{ id }}", "since_property_location": "manual"}}},
  {"_id": "c", "type": "pipe", "source": {"type": "rest", "system": "api", "supports_since": true, "updated_expression": "{{ lastChanged }}"}},
  {"_id": "m", "type": "pipe", "source": {"type": "rest", "system": "api", "operation": "manual", "supports_since": true, "updated_expression": "{{ lastChanged }}"}}
]`, envOptions{})
	e.mustRun("c")
	e.mustRun("m")
	e.api.ResetStats()
	e.mustRun("c")
	e.mustRun("m")
	reqs := e.listRequests("customers")
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	if q, _ := url.ParseQuery(reqs[0].RawQuery); len(q["since"]) != 1 {
		t.Errorf("url with since: query %q, want since exactly once", reqs[0].RawQuery)
	}
	if reqs[1].RawQuery != "" || reqs[1].Header.Get("Since") != "" {
		t.Errorf("manual: query %q header %q, want nothing", reqs[1].RawQuery, reqs[1].Header.Get("Since"))
	}
}

// TestDeletedUpstream: records deleted in the API get deleted versions on
// a full run; an incremental run cannot see deletions.
func TestDeletedUpstream(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 50}},
		collectConfig("", membercareOp, `"supports_since": true, "updated_expression": "{{ lastChanged }}"`), envOptions{})
	e.mustRun("c")
	for _, id := range []int64{3, 10, 50} {
		if !e.api.Delete("customers", id) {
			t.Fatal("delete failed")
		}
	}
	if rec := e.mustRun("c"); rec.SyncType != "incremental" || rec.Deleted != 0 {
		t.Errorf("incremental run = %+v", rec)
	}
	rec, err := e.run("c", engine.RunOptions{Reset: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SyncType != "full" || rec.Deleted != 3 {
		t.Errorf("full run = %+v, want 3 deleted", rec)
	}
	got := e.entities("c")
	if len(got) != 47 || got["3"] != nil || got["10"] != nil || got["50"] != nil {
		t.Errorf("%d live entities after the full run", len(got))
	}
	if info := e.info("c"); info.Deleted != 3 {
		t.Errorf("dataset info %+v", info)
	}
}

// TestOAuth2ClientCredentials fetches a token from fakeapi's token
// endpoint and reuses it for every page.
func TestOAuth2ClientCredentials(t *testing.T) {
	sys := `"oauth2": {"client_id": "ferry-client", "client_secret": "ferry-secret", "token_url": "$ENV(base)/oauth/token"}`
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 250}, Auth: fakeapi.AuthBearer},
		collectConfig(sys, membercareOp, ""), envOptions{})
	if rec := e.mustRun("c"); rec.Read != 250 {
		t.Fatalf("run = %+v", rec)
	}
	if st := e.api.Stats(); st.TokensIssued != 1 || st.Unauthorized != 0 {
		t.Errorf("stats %+v: want one token, no 401", st)
	}
}

// TestRefreshTokenExpired: a refresh token the server refuses fails the
// run with the token error, and writes nothing.
func TestRefreshTokenExpired(t *testing.T) {
	sys := `"oauth2": {"client_id": "ferry-client", "client_secret": "ferry-secret", "token_url": "$ENV(base)/oauth/token",
	  "refresh_token": "expired-refresh-token"}`
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 10}, Auth: fakeapi.AuthBearer},
		collectConfig(sys, "", ""), envOptions{})
	_, err := e.run("c", engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "refreshing token") || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("err = %v, want an oauth2 refresh error naming invalid_grant", err)
	}
	if strings.Contains(err.Error(), "expired-refresh-token") || strings.Contains(err.Error(), "ferry-secret") {
		t.Errorf("error leaks a secret: %v", err)
	}
	if n := len(e.entities("c")); n != 0 {
		t.Errorf("%d entities written", n)
	}
}

// TestRateLimited: 429 with Retry-After is retried after the announced
// delay (the test's sleep records it instead of waiting).
func TestRateLimited(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 250}, Faults: fakeapi.Faults{RateLimitEvery: 2, RetryAfter: "7"}},
		collectConfig("", membercareOp, ""), envOptions{})
	if rec := e.mustRun("c"); rec.Read != 250 {
		t.Fatalf("run = %+v", rec)
	}
	if st := e.api.Stats(); st.RateLimited < 2 {
		t.Errorf("stats %+v, want 429s", st)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	seven := 0
	for _, d := range e.sleeps {
		if d > 6*time.Second && d <= 7*time.Second {
			seven++
		}
	}
	if seven < 2 {
		t.Errorf("sleeps %v, want Retry-After 7s honoured for each 429", e.sleeps)
	}
}

// TestRateLimitExhausted: pipe-level rate_limiting_retries 0 fails at the
// first 429 with the status in the message.
func TestRateLimitExhausted(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 10}, Faults: fakeapi.Faults{RateLimitNext: 1}},
		collectConfig("", "", `"rate_limiting_retries": 0`), envOptions{})
	_, err := e.run("c", engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "status 429") {
		t.Fatalf("err = %v", err)
	}
}

// TestNonJSON: a 200 HTML page fails the run (it must not become the
// collection), naming the status and the start of the body; the page's
// records are not written.
func TestNonJSON(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 250}, Faults: fakeapi.Faults{NonJSONEvery: 2}},
		collectConfig("", membercareOp, ""), envOptions{})
	_, err := e.run("c", engine.RunOptions{})
	if err == nil {
		t.Fatal("run succeeded")
	}
	for _, want := range []string{"status 200", "not JSON", "text/html", "<!DOCTYPE html>", `operation "list" page 1`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for id := range e.entities("c") {
		var n int
		fmt.Sscan(id, &n)
		if n > 100 {
			t.Fatalf("entity %s of the failed page was written", id)
		}
	}
}

// TestStatusError: a non-2xx fails the run with method, URL, status and
// body; nothing is written.
func TestStatusError(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 10}, Faults: fakeapi.Faults{ErrorNext: 1, ErrorStatus: 500}},
		collectConfig("", "", ""), envOptions{})
	_, err := e.run("c", engine.RunOptions{})
	if err == nil {
		t.Fatal("run succeeded")
	}
	for _, want := range []string{"GET " + e.srv.URL + "/api/customers", "status 500", `"injected_error"`, `pipe "c"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n := len(e.entities("c")); n != 0 {
		t.Errorf("%d entities written", n)
	}
	// The next run works.
	if rec := e.mustRun("c"); rec.Written != 10 {
		t.Errorf("retry run = %+v", rec)
	}
}

// TestRepeatingPage: an API whose next link is the page itself is stopped
// by the default strategies (same request), by same-response, and, when
// the strategies cannot see it, by the max_pages guard.
func TestRepeatingPage(t *testing.T) {
	api := fakeapi.Options{Seed: map[string]int{"customers": 10}, RepeatForever: true}
	t.Run("default", func(t *testing.T) {
		e := newEnv(t, api, collectConfig("", `"next_page_link": "{{ body.nextPageUrl }}"`, ""), envOptions{})
		if rec := e.mustRun("c"); rec.Read != 10 {
			t.Errorf("run = %+v", rec)
		}
		if n := len(e.listRequests("customers")); n != 1 {
			t.Errorf("%d requests, want 1 (the next request equals this one)", n)
		}
	})
	t.Run("same-response", func(t *testing.T) {
		e := newEnv(t, api, collectConfig("",
			`"headers": {"X-Trace": "{{ page }}"}, "next_page_link": "{{ body.nextPageUrl }}", "next_page_termination_strategy": "same-response"`, ""), envOptions{})
		if rec := e.mustRun("c"); rec.Read != 10 {
			t.Errorf("run = %+v, want the repeated page not emitted twice", rec)
		}
		if n := len(e.listRequests("customers")); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
	})
	t.Run("max_pages", func(t *testing.T) {
		e := newEnv(t, api, collectConfig("",
			`"headers": {"X-Trace": "{{ page }}"}, "next_page_link": "{{ body.nextPageUrl }}", "next_page_termination_strategy": ["empty-result"]`,
			`"max_pages": 5`), envOptions{})
		_, err := e.run("c", engine.RunOptions{})
		if err == nil || !strings.Contains(err.Error(), "more than max_pages=5 pages") {
			t.Fatalf("err = %v", err)
		}
		if n := len(e.listRequests("customers")); n != 5 {
			t.Errorf("%d requests, want 5", n)
		}
	})
}

// TestEmptyID: an id_expression that renders empty fails naming the
// operation and the item.
func TestEmptyID(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 3}},
		collectConfig("", "", `"id_expression": "{% if id > 100 %}{{ id }}{% endif %}"`), envOptions{})
	_, err := e.run("c", engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), `operation "list" page 0: item 0`) || !strings.Contains(err.Error(), "empty _id") {
		t.Fatalf("err = %v", err)
	}
}

// TestErrorExpression: a non-empty error_expression fails the run.
func TestErrorExpression(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 3}},
		collectConfig("", `"error_expression": "{{ 'too many: ' ~ body.total if body.total > 2 else '' }}"`, ""), envOptions{})
	_, err := e.run("c", engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "error_expression: too many: 3") {
		t.Fatalf("err = %v", err)
	}
}

// TestEnvelopes: a top-level array body, the Link header, and pipe-level
// id_expression and properties overriding the operation.
func TestEnvelopes(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 25}}, `[
  {"_id": "api", "type": "system:rest", "url_pattern": "$ENV(base)/api/%s", "operations": {
    "array": {"url": "customers", "params": {"envelope": "array", "limit": 10}, "id_expression": "{{ id }}",
      "next_page_link": "{% if headers.Link is defined %}{{ headers.Link.next }}{% endif %}"}}},
  {"_id": "a", "type": "pipe", "source": {"type": "rest", "system": "api", "operation": "array"}},
  {"_id": "o", "type": "pipe", "source": {"type": "rest", "system": "api", "operation": "array",
    "id_expression": "c-{{ id }}-{{ properties.p }}", "properties": {"p": "q"}}}
]`, envOptions{})
	if rec := e.mustRun("a"); rec.Read != 25 || len(e.listRequests("customers")) != 3 {
		t.Errorf("array run = %+v, %d requests", rec, len(e.listRequests("customers")))
	}
	e.mustRun("o")
	got := e.entities("o")
	if _, ok := got["c-25-q"]; !ok || len(got) != 25 {
		t.Errorf("override ids: %d entities", len(got))
	}
}

// TestTLS: a certificate the system does not trust fails the run with a
// TLS error; verify_ssl false (unsafe) accepts it.
func TestTLS(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 5}}, collectConfig("", "", ""), envOptions{tls: true})
	_, err := e.run("c", engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v, want a certificate error", err)
	}
	if n := len(e.entities("c")); n != 0 {
		t.Errorf("%d entities written", n)
	}
	e.compile(collectConfig(`"verify_ssl": false`, "", ""), envOptions{})
	if rec := e.mustRun("c"); rec.Read != 5 {
		t.Errorf("verify_ssl false: run = %+v", rec)
	}
}

// TestConfigErrors: problems in operations are reported when the config
// is compiled, with a pointer.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ system, src, want string }{
		{`"operations": {"list": {"url": "{{ x", "id_expression": "{{ id }}"}}`, "", "/operations/list/url"},
		{`"operations": {"list": {"url": "x", "next_page_termination_strategy": ["bogus"]}}`, "", "unknown strategy"},
		{`"operations": {"list": {"url": "x", "next_page_termination_strategy": "not-full-page"}}`, "", "needs page_size"},
		{`"operations": {"list": {"url": "x"}}`, `,"operation": "nope"`, `operation "nope" is not defined`},
		{`"operations": {"list": {"url": "x"}}, "oauth2": {"client_id": "a"}`, "", "oauth2"},
	} {
		cfg := `[{"_id": "api", "type": "system:rest", "url_pattern": "http://127.0.0.1:1/%s", ` + tc.system + `},
		  {"_id": "c", "type": "pipe", "source": {"type": "rest", "system": "api"` + tc.src + `}}]`
		err := compileErr(t, cfg)
		if !strings.Contains(err, tc.want) {
			t.Errorf("%s: error %q lacks %q", tc.system, err, tc.want)
		}
	}
}

// TestPipeOperations: an operation in the pipe's own operations wins over
// the system's of the same name.
func TestPipeOperations(t *testing.T) {
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"customers": 5, "products": 3}}, collectConfig("", "",
		`"operations": {"list": {"url": "products", "payload_property": "data", "id_expression": "p{{ id }}"}}`), envOptions{})
	e.mustRun("c")
	got := e.entities("c")
	if len(got) != 3 || got["p1"] == nil {
		t.Errorf("entities %s", jsonText(got))
	}
}
