package fakeapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

type reply struct {
	status int
	header http.Header
	raw    []byte
	body   any
}

func (r reply) obj(t *testing.T) map[string]any {
	t.Helper()
	m, ok := r.body.(map[string]any)
	if !ok {
		t.Fatalf("body is %T, not an object: %s", r.body, r.raw)
	}
	return m
}

func do(t *testing.T, method, u string, hdr map[string]string, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&r.body); err != nil {
			t.Fatalf("%s %s: bad JSON: %v: %s", method, u, err, raw)
		}
	}
	return r
}

func get(t *testing.T, u string) reply { t.Helper(); return do(t, http.MethodGet, u, nil, "") }

func ids(t *testing.T, items any) []int64 {
	t.Helper()
	list, ok := items.([]any)
	if !ok {
		t.Fatalf("items are %T", items)
	}
	out := make([]int64, len(list))
	for i, it := range list {
		n, err := it.(map[string]any)["id"].(json.Number).Int64()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = n
	}
	return out
}

func newServer(t *testing.T, opts fakeapi.Options) (*fakeapi.API, *httptest.Server) {
	t.Helper()
	a := fakeapi.New(opts)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return a, srv
}

// follow walks next links from start until none is given, returning the ids
// seen and the number of pages.
func follow(t *testing.T, start string, items func(reply) any, next func(reply) string) ([]int64, int) {
	t.Helper()
	var all []int64
	pages := 0
	for u := start; u != ""; {
		r := get(t, u)
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", u, r.status, r.raw)
		}
		pages++
		if pages > 100 {
			t.Fatal("too many pages")
		}
		all = append(all, ids(t, items(r))...)
		u = next(r)
	}
	return all, pages
}

func checkSequence(t *testing.T, got []int64, from, to int64) {
	t.Helper()
	if int64(len(got)) != to-from+1 {
		t.Fatalf("got %d ids, want %d", len(got), to-from+1)
	}
	for i, id := range got {
		if id != from+int64(i) {
			t.Fatalf("id[%d] = %d, want %d", i, id, from+int64(i))
		}
	}
}

func nextPageURL(r reply) string {
	s, _ := r.body.(map[string]any)["nextPageUrl"].(string)
	return s
}

func dataItems(r reply) any { return r.body.(map[string]any)["data"] }

func TestSeedIsDeterministicAndExact(t *testing.T) {
	a := fakeapi.New(fakeapi.Options{Seed: map[string]int{"customers": 20, "invoices": 5, "widgets": 3}})
	b := fakeapi.New(fakeapi.Options{Seed: map[string]int{"customers": 20, "invoices": 5, "widgets": 3}})
	ra, rb := a.Records("customers"), b.Records("customers")
	ja, _ := json.Marshal(ra)
	jb, _ := json.Marshal(rb)
	if !bytes.Equal(ja, jb) {
		t.Fatal("same options gave different seed data")
	}
	c := ra[6]
	if c["id"] != json.Number("7") || c["version"] != json.Number("1") {
		t.Fatalf("id/version: %v %v", c["id"], c["version"])
	}
	if got, want := c["lastChanged"], "2024-01-01T00:07:00.000Z"; got != want {
		t.Fatalf("lastChanged %v, want %v", got, want)
	}
	if c["updated_at"] != c["lastChanged"] {
		t.Fatal("updated_at differs from lastChanged")
	}
	if got := c["externalRef"]; got != json.Number("9007199254741007") {
		t.Fatalf("externalRef %v", got)
	}
	if _, ok := c["balance"].(json.Number); !ok {
		t.Fatalf("balance is %T", c["balance"])
	}
	if s, ok := c["creditLimit"].(string); !ok || !strings.HasSuffix(s, ".00") {
		t.Fatalf("creditLimit %v", c["creditLimit"])
	}
	addr, ok := c["address"].(map[string]any)
	if !ok || addr["city"] == "" {
		t.Fatalf("address %v", c["address"])
	}
	if !strings.HasSuffix(c["email"].(string), "7@example.com") {
		t.Fatalf("email %v", c["email"])
	}
	inv := a.Records("invoices")[0]
	if len(inv["lines"].([]any)) == 0 || inv["total"] == nil {
		t.Fatalf("invoice %v", inv)
	}
	if len(a.Records("widgets")) != 3 {
		t.Fatal("generic collection not seeded")
	}
}

func TestPagePagingFollowsNextPageURLAndLink(t *testing.T) {
	_, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 250}})
	got, pages := follow(t, srv.URL+"/api/customers?limit=100", dataItems, nextPageURL)
	checkSequence(t, got, 1, 250)
	if pages != 3 {
		t.Fatalf("pages %d", pages)
	}
	r := get(t, srv.URL+"/api/customers?limit=100&page=2")
	want := srv.URL + "/api/customers?limit=100&page=3"
	if nextPageURL(r) != want {
		t.Fatalf("nextPageUrl %q, want %q", nextPageURL(r), want)
	}
	if got := r.header.Get("Link"); got != "<"+want+`>; rel="next"` {
		t.Fatalf("Link %q", got)
	}
	if r.header.Get("X-Total-Count") != "250" || r.obj(t)["total"] != json.Number("250") {
		t.Fatalf("total %v / %v", r.header.Get("X-Total-Count"), r.obj(t)["total"])
	}
	last := get(t, srv.URL+"/api/customers?limit=100&page=3")
	if last.obj(t)["nextPageUrl"] != nil || last.header.Get("Link") != "" {
		t.Fatalf("last page has a next link: %v %q", last.obj(t)["nextPageUrl"], last.header.Get("Link"))
	}
	// page=0 is the first page too, and its next link is page 2.
	r = get(t, srv.URL+"/api/customers?limit=100&page=0")
	if ids := ids(t, dataItems(r)); ids[0] != 1 || !strings.Contains(nextPageURL(r), "page=2") {
		t.Fatalf("page=0: %v %q", ids[:1], nextPageURL(r))
	}
	r = get(t, srv.URL+"/api/customers?limit=100&page=999999999999999999")
	if r.status != 200 || len(dataItems(r).([]any)) != 0 || r.obj(t)["nextPageUrl"] != nil {
		t.Fatalf("huge page: %d %s", r.status, r.raw)
	}
	// The page number may come from a header (constant-URL idiom).
	r = do(t, "GET", srv.URL+"/api/customers?limit=100", map[string]string{"X-Sesam-Page": "3"}, "")
	if ids := ids(t, dataItems(r)); len(ids) != 50 || ids[0] != 201 {
		t.Fatalf("header page: %v", ids)
	}
}

func TestOffsetCursorAndEnvelopes(t *testing.T) {
	_, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"products": 95}})
	got, pages := follow(t, srv.URL+"/api/products?$skip=0&$top=20", dataItems, nextPageURL)
	checkSequence(t, got, 1, 95)
	if pages != 5 {
		t.Fatalf("offset pages %d", pages)
	}
	r := get(t, srv.URL+"/api/products?$skip=20&$top=20")
	if !strings.Contains(nextPageURL(r), "%24skip=40") || r.obj(t)["offset"] != json.Number("20") {
		t.Fatalf("offset next %q", nextPageURL(r))
	}

	got, pages = follow(t, srv.URL+"/api/products?paging=cursor&limit=30", dataItems, func(r reply) string {
		next, _ := r.obj(t)["paging"].(map[string]any)["next"].(map[string]any)
		link, _ := next["link"].(string)
		return link
	})
	checkSequence(t, got, 1, 95)
	if pages != 4 {
		t.Fatalf("cursor pages %d", pages)
	}

	got, _ = follow(t, srv.URL+"/api/products?envelope=odata&limit=40", func(r reply) any {
		return r.obj(t)["value"]
	}, func(r reply) string { s, _ := r.obj(t)["@odata.nextLink"].(string); return s })
	checkSequence(t, got, 1, 95)

	got, _ = follow(t, srv.URL+"/api/products?envelope=array&limit=40", func(r reply) any { return r.body },
		func(r reply) string {
			l := r.header.Get("Link")
			if l == "" {
				return ""
			}
			return l[1:strings.Index(l, ">")]
		})
	checkSequence(t, got, 1, 95)

	if r := get(t, srv.URL+"/api/products?limit=x"); r.status != 400 {
		t.Fatalf("bad limit: %d", r.status)
	}
	if r := get(t, srv.URL+"/api/nope"); r.status != 404 {
		t.Fatalf("unknown collection: %d", r.status)
	}
}

func TestSinceFiltersAndChangesComeLast(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	a, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 50}, Now: func() time.Time { return now }})
	since := url.QueryEscape("2024-01-01T00:40:00Z")
	r := get(t, srv.URL+"/api/customers?since="+since)
	checkSequence(t, ids(t, dataItems(r)), 40, 50)
	if r.obj(t)["total"] != json.Number("11") {
		t.Fatalf("total %v", r.obj(t)["total"])
	}
	// Records changed later sort after everything, with increasing stamps.
	if !a.Touch("customers", 3) || a.Touch("customers", 999) {
		t.Fatal("Touch result")
	}
	if _, err := a.Put("customers", map[string]any{"id": json.Number("7"), "name": "Changed"}); err != nil {
		t.Fatal(err)
	}
	r = get(t, srv.URL+"/api/customers?since="+since)
	got := ids(t, dataItems(r))
	if len(got) != 13 || got[11] != 3 || got[12] != 7 {
		t.Fatalf("after changes: %v", got)
	}
	items := dataItems(r).([]any)
	t3, t7 := items[11].(map[string]any)["lastChanged"], items[12].(map[string]any)["lastChanged"]
	if t3 != "2025-06-01T12:00:00.000Z" || t7 != "2025-06-01T12:00:00.001Z" {
		t.Fatalf("stamps %v %v", t3, t7)
	}
	// Incremental read: since = the newest stamp seen gives that record again only.
	r = get(t, srv.URL+"/api/customers?since="+url.QueryEscape(t7.(string)))
	if got := ids(t, dataItems(r)); len(got) != 1 || got[0] != 7 {
		t.Fatalf("incremental: %v", got)
	}
	// Deletions show up as tombstones with include_deleted.
	if !a.Delete("customers", 8) || a.Delete("customers", 8) {
		t.Fatal("Delete result")
	}
	r = get(t, srv.URL+"/api/customers?include_deleted=true&since="+url.QueryEscape(t7.(string)))
	items = dataItems(r).([]any)
	if len(items) != 2 || items[1].(map[string]any)["deleted"] != true {
		t.Fatalf("tombstones: %s", r.raw)
	}
	if len(a.Records("customers")) != 49 {
		t.Fatal("Records includes deleted")
	}
	if r := get(t, srv.URL+"/api/customers?since=yesterday"); r.status != 400 {
		t.Fatalf("bad since: %d", r.status)
	}
	r = get(t, srv.URL+"/api/customers?order=id&since="+since)
	if got := ids(t, dataItems(r)); got[0] != 3 || got[1] != 7 {
		t.Fatalf("order=id: %v", got)
	}
}

func TestTerminationIdioms(t *testing.T) {
	_, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 10}})
	// always_next: the page after the last is empty and still links on.
	r := get(t, srv.URL+"/api/customers?limit=5&page=3&always_next=true")
	if len(dataItems(r).([]any)) != 0 || nextPageURL(r) == "" {
		t.Fatalf("always_next: %s", r.raw)
	}
	// repeat: the next link is the request itself, the body identical.
	u := srv.URL + "/api/customers?limit=5&repeat=true"
	r1, r2 := get(t, u), get(t, u)
	if nextPageURL(r1) != u || !bytes.Equal(r1.raw, r2.raw) {
		t.Fatalf("repeat: %q\n%s\n%s", nextPageURL(r1), r1.raw, r2.raw)
	}
	_, srv2 := newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 10}, RepeatForever: true})
	if nextPageURL(get(t, srv2.URL+"/api/customers?limit=100")) == "" {
		t.Fatal("RepeatForever option")
	}
}

func TestCRUDAndIfMatch(t *testing.T) {
	a, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 3},
		Required: map[string][]string{"customers": {"name"}}})
	base := srv.URL + "/api/customers"
	r := do(t, "POST", base, nil, `{"name": "New", "amount": 12345678901234567890.10}`)
	if r.status != 201 || r.obj(t)["id"] != json.Number("4") || r.header.Get("Location") != "/api/customers/4" {
		t.Fatalf("create: %d %s %v", r.status, r.raw, r.header)
	}
	if r.obj(t)["amount"] != json.Number("12345678901234567890.10") {
		t.Fatalf("number not exact: %v", r.obj(t)["amount"])
	}
	etag := r.header.Get("ETag")
	if etag != `"4.1"` {
		t.Fatalf("etag %q", etag)
	}
	if r := do(t, "POST", base, nil, `{"id": 4, "name": "Dup"}`); r.status != 409 {
		t.Fatalf("dup: %d", r.status)
	}
	if r := do(t, "POST", base, nil, `{"email": "x"}`); r.status != 422 {
		t.Fatalf("required: %d", r.status)
	}
	if r := do(t, "POST", base, nil, `[1]`); r.status != 400 {
		t.Fatalf("array body: %d", r.status)
	}
	if r := get(t, base+"/4"); r.status != 200 || r.header.Get("ETag") != etag {
		t.Fatalf("get: %d %v", r.status, r.header)
	}
	if r := do(t, "GET", base+"/4", map[string]string{"If-None-Match": etag}, ""); r.status != 304 {
		t.Fatalf("if-none-match: %d", r.status)
	}
	if r := do(t, "PUT", base+"/4", map[string]string{"If-Match": `"4.9"`}, `{"name": "Lost"}`); r.status != 412 {
		t.Fatalf("stale put: %d %s", r.status, r.raw)
	}
	r = do(t, "PUT", base+"/4", map[string]string{"If-Match": etag}, `{"name": "Won"}`)
	if r.status != 200 || r.obj(t)["version"] != json.Number("2") || r.obj(t)["amount"] != nil {
		t.Fatalf("put: %d %s", r.status, r.raw)
	}
	if r := do(t, "PUT", base+"/99", nil, `{"name": "x"}`); r.status != 404 {
		t.Fatalf("put absent: %d", r.status)
	}
	if r := do(t, "PUT", base+"/4", nil, `{"id": 5, "name": "x"}`); r.status != 400 {
		t.Fatalf("put id mismatch: %d", r.status)
	}
	r = do(t, "PATCH", base+"/1", nil, `{"address": {"city": "Bodø", "zip": null}, "note": "n"}`)
	addr := r.obj(t)["address"].(map[string]any)
	if r.status != 200 || addr["city"] != "Bodø" || addr["zip"] != nil || addr["street"] == nil || r.obj(t)["note"] != "n" {
		t.Fatalf("patch: %d %s", r.status, r.raw)
	}
	if r := do(t, "PATCH", base+"/1", map[string]string{"If-Match": `"1.1"`}, `{}`); r.status != 412 {
		t.Fatalf("stale patch: %d", r.status)
	}
	if r := do(t, "DELETE", base+"/2", map[string]string{"If-Match": `"2.7"`}, ""); r.status != 412 {
		t.Fatalf("stale delete: %d", r.status)
	}
	if r := do(t, "DELETE", base+"/2", nil, ""); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	if r := do(t, "DELETE", base+"/2", nil, ""); r.status != 404 {
		t.Fatalf("delete again: %d", r.status)
	}
	if r := get(t, base+"/2"); r.status != 404 {
		t.Fatalf("get deleted: %d", r.status)
	}
	if r := get(t, base+"/abc"); r.status != 400 {
		t.Fatalf("bad id: %d", r.status)
	}
	if _, ok := a.Get("customers", 4); !ok {
		t.Fatal("Get")
	}
	// POST creates unknown collections.
	if r := do(t, "POST", srv.URL+"/api/notes", nil, `{"text": "hi"}`); r.status != 201 || r.obj(t)["id"] != json.Number("1") {
		t.Fatalf("new collection: %d %s", r.status, r.raw)
	}
	reqs := a.Requests()
	if len(reqs) == 0 || reqs[0].Method != "POST" || !strings.Contains(string(reqs[0].Body), "New") || reqs[0].Status != 201 {
		t.Fatalf("request log: %+v", reqs[0])
	}
}

func tokenRequest(t *testing.T, srv string, form url.Values, basic bool) reply {
	t.Helper()
	form = maps.Clone(form)
	req, err := http.NewRequestWithContext(t.Context(), "POST", srv+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(form.Get("client_id")), url.QueryEscape(form.Get("client_secret")))
		form.Del("client_id")
		form.Del("client_secret")
		req.Body = io.NopCloser(strings.NewReader(form.Encode()))
		req.ContentLength = int64(len(form.Encode()))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body any
	_ = json.Unmarshal(raw, &body)
	return reply{status: resp.StatusCode, header: resp.Header, raw: raw, body: body}
}

func TestOAuthTokenFlowsAndBearerCheck(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 2}, Auth: fakeapi.AuthBearer,
		Now: clock, TokenLifetime: time.Minute, RefreshTokenLifetime: time.Hour, ClientID: "cid", ClientSecret: "s3cr3t/+"})
	list := srv.URL + "/api/customers"
	if r := get(t, list); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("no token: %d %v", r.status, r.header)
	}
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {"s3cr3t/+"}, "scope": {"read"}}
	for _, basic := range []bool{true, false} {
		r := tokenRequest(t, srv.URL, url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {"s3cr3t/+"}, "scope": {"read"}}, basic)
		if r.status != 200 {
			t.Fatalf("client credentials (basic=%v): %d %s", basic, r.status, r.raw)
		}
		body := r.obj(t)
		if body["token_type"] != "Bearer" || body["expires_in"] != 60.0 || body["scope"] != "read" || body["refresh_token"] != nil {
			t.Fatalf("token body %v", body)
		}
		tok := body["access_token"].(string)
		if r := do(t, "GET", list, map[string]string{"Authorization": "Bearer " + tok}, ""); r.status != 200 {
			t.Fatalf("with token: %d", r.status)
		}
	}
	if got := a.Stats().TokensIssued; got != 2 {
		t.Fatalf("TokensIssued %d", got)
	}
	cc.Set("client_secret", "wrong")
	if r := tokenRequest(t, srv.URL, cc, false); r.status != 401 || r.obj(t)["error"] != "invalid_client" {
		t.Fatalf("bad client: %d %s", r.status, r.raw)
	}
	if r := tokenRequest(t, srv.URL, url.Values{"grant_type": {"password"}, "client_id": {"cid"}, "client_secret": {"s3cr3t/+"}}, false); r.status != 400 || r.obj(t)["error"] != "unsupported_grant_type" {
		t.Fatalf("bad grant: %d %s", r.status, r.raw)
	}

	pair := a.IssueToken()
	auth := map[string]string{"Authorization": "Bearer " + pair.AccessToken}
	if r := do(t, "GET", list, auth, ""); r.status != 200 {
		t.Fatalf("issued token: %d", r.status)
	}
	now = now.Add(2 * time.Minute) // access token expired
	if r := do(t, "GET", list, auth, ""); r.status != 401 {
		t.Fatalf("expired token: %d", r.status)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {pair.RefreshToken}, "client_id": {"cid"}, "client_secret": {"s3cr3t/+"}}
	r := tokenRequest(t, srv.URL, refresh, true)
	if r.status != 200 {
		t.Fatalf("refresh: %d %s", r.status, r.raw)
	}
	if r := do(t, "GET", list, map[string]string{"Authorization": "Bearer " + r.obj(t)["access_token"].(string)}, ""); r.status != 200 {
		t.Fatalf("refreshed token: %d", r.status)
	}
	a.ExpireAccessTokens()
	if r := do(t, "GET", list, map[string]string{"Authorization": "Bearer " + r.obj(t)["access_token"].(string)}, ""); r.status != 401 {
		t.Fatalf("ExpireAccessTokens: %d", r.status)
	}
	a.RevokeRefreshToken(pair.RefreshToken)
	if r := tokenRequest(t, srv.URL, refresh, true); r.status != 400 || r.obj(t)["error"] != "invalid_grant" {
		t.Fatalf("revoked: %d %s", r.status, r.raw)
	}
	pair = a.IssueToken()
	refresh.Set("refresh_token", pair.RefreshToken)
	now = now.Add(2 * time.Hour) // refresh token expired
	if r := tokenRequest(t, srv.URL, refresh, false); r.status != 400 || r.obj(t)["error"] != "invalid_grant" {
		t.Fatalf("expired refresh: %d %s", r.status, r.raw)
	}
	if a.Stats().Unauthorized < 3 {
		t.Fatalf("Unauthorized %d", a.Stats().Unauthorized)
	}
}

func TestRefreshTokenRotation(t *testing.T) {
	a, srv := newServer(t, fakeapi.Options{Auth: fakeapi.AuthBearer, RotateRefreshTokens: true})
	pair := a.IssueToken()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {pair.RefreshToken}, "client_id": {"ferry-client"}, "client_secret": {"ferry-secret"}}
	r := tokenRequest(t, srv.URL, form, false)
	newRT, _ := r.obj(t)["refresh_token"].(string)
	if r.status != 200 || newRT == "" || newRT == pair.RefreshToken {
		t.Fatalf("rotation: %d %s", r.status, r.raw)
	}
	if r := tokenRequest(t, srv.URL, form, false); r.status != 400 {
		t.Fatalf("old refresh token reused: %d", r.status)
	}
	form.Set("refresh_token", newRT)
	if r := tokenRequest(t, srv.URL, form, false); r.status != 200 {
		t.Fatalf("new refresh token: %d", r.status)
	}
}

func TestBasicAndAPIKeyAuth(t *testing.T) {
	_, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 1}, Auth: fakeapi.AuthBasic, Username: "u", Password: "p"})
	if r := get(t, srv.URL+"/api/customers"); r.status != 401 {
		t.Fatalf("basic missing: %d", r.status)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/api/customers", nil)
	req.SetBasicAuth("u", "p")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("basic: %d", resp.StatusCode)
	}
	_, srv = newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 1}, Auth: fakeapi.AuthAPIKey, APIKeyHeader: "token", APIKey: "k"})
	if r := do(t, "GET", srv.URL+"/api/customers", map[string]string{"token": "k"}, ""); r.status != 200 {
		t.Fatalf("api key: %d", r.status)
	}
	if r := do(t, "GET", srv.URL+"/api/customers", map[string]string{"token": "x"}, ""); r.status != 401 {
		t.Fatalf("bad api key: %d", r.status)
	}
}

func TestFaultInjection(t *testing.T) {
	a, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 1},
		Faults: fakeapi.Faults{RateLimitNext: 2, RetryAfter: "7"}})
	u := srv.URL + "/api/customers"
	for i := range 2 {
		if r := get(t, u); r.status != 429 || r.header.Get("Retry-After") != "7" {
			t.Fatalf("429 #%d: %d %v", i, r.status, r.header)
		}
	}
	if r := get(t, u); r.status != 200 {
		t.Fatalf("after 429s: %d", r.status)
	}
	a.SetFaults(fakeapi.Faults{RateLimitEvery: 3, RetryAfter: "none"})
	var statuses []int
	for range 6 {
		r := get(t, u)
		statuses = append(statuses, r.status)
		if r.status == 429 && r.header.Get("Retry-After") != "" {
			t.Fatal("Retry-After sent with none")
		}
	}
	// Request numbers 4..9: 6 and 9 are multiples of 3.
	if want := []int{200, 200, 429, 200, 200, 429}; !equalInts(statuses, want) {
		t.Fatalf("every 3: %v", statuses)
	}
	a.SetFaults(fakeapi.Faults{ErrorNext: 1, ErrorStatus: 502})
	if r := get(t, u); r.status != 502 {
		t.Fatalf("error: %d", r.status)
	}
	a.SetFaults(fakeapi.Faults{ErrorNext: 1})
	if r := get(t, u); r.status != 503 {
		t.Fatalf("default error: %d", r.status)
	}
	a.SetFaults(fakeapi.Faults{NonJSONNext: 1})
	if r := get(t, u); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || r.body != nil {
		t.Fatalf("non-JSON: %d %v", r.status, r.header)
	}
	s := a.Stats()
	if s.RateLimited != 4 || s.InjectedErrors != 2 || s.NonJSON != 1 || s.APIRequests != 12 {
		t.Fatalf("stats %+v", s)
	}

	// Delay: a client that gives up early gets no answer; the handler
	// returns when the client goes away.
	a.SetFaults(fakeapi.Faults{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("delayed request answered")
	}

	// Admin endpoint.
	r := do(t, "PUT", srv.URL+"/_admin/faults", nil, `{"error_every": 2, "delay": "1ms"}`)
	if r.status != 200 || a.Faults().ErrorEvery != 2 || a.Faults().Delay != time.Millisecond {
		t.Fatalf("admin faults: %d %s %+v", r.status, r.raw, a.Faults())
	}
	if r := do(t, "PUT", srv.URL+"/_admin/faults", nil, `{"bogus": 1}`); r.status != 400 {
		t.Fatalf("admin unknown field: %d", r.status)
	}
	if r := get(t, srv.URL+"/_admin/stats"); r.status != 200 || r.obj(t)["APIRequests"] == nil {
		t.Fatalf("admin stats: %s", r.raw)
	}
	a.ResetStats()
	if a.Stats().Requests != 0 || len(a.Requests()) != 0 {
		t.Fatal("ResetStats")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestServeStopsOnContextCancel(t *testing.T) {
	a := fakeapi.New(fakeapi.Options{Seed: map[string]int{"customers": 1}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	if r := get(t, "http://"+ln.Addr().String()+"/api/"); r.status != 200 {
		t.Fatalf("serve: %d", r.status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func BenchmarkListPage1000(b *testing.B) {
	const n, limit = 100_000, 1000
	a := fakeapi.New(fakeapi.Options{Seed: map[string]int{"customers": n}, LogLimit: -1})
	h := a.Handler()
	reqs := make([]*http.Request, n/limit)
	for i := range reqs {
		reqs[i] = httptest.NewRequest("GET", "/api/customers?limit=1000&page="+strconv.Itoa(i+1), nil)
	}
	h.ServeHTTP(&discard{}, reqs[0]) // build the view
	w := &discard{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w.header = nil
		h.ServeHTTP(w, reqs[i%len(reqs)])
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*limit)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(w.bytes)/float64(b.N), "bytes/page")
}

type discard struct {
	header http.Header
	status int
	bytes  int64
}

func (d *discard) Header() http.Header {
	if d.header == nil {
		d.header = http.Header{}
	}
	return d.header
}
func (d *discard) WriteHeader(s int)           { d.status = s }
func (d *discard) Write(p []byte) (int, error) { d.bytes += int64(len(p)); return len(p), nil }

func TestZeroBasedPagesAndExplicitTimestamps(t *testing.T) {
	a, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"customers": 5}, ZeroBasedPages: true, DefaultLimit: 2})
	got, pages := follow(t, srv.URL+"/api/customers?page=0", dataItems, nextPageURL)
	checkSequence(t, got, 1, 5)
	if pages != 3 {
		t.Fatalf("pages %d", pages)
	}
	rec, err := a.Put("customers", map[string]any{"id": "2", "name": "Old", "lastChanged": "2020-05-05T10:00:00Z"})
	if err != nil || rec["lastChanged"] != "2020-05-05T10:00:00.000Z" || rec["version"] != json.Number("2") {
		t.Fatalf("Put: %v %v", rec, err)
	}
	// Oldest change first in the default order.
	r := get(t, srv.URL+"/api/customers?page=0&limit=10")
	if got := ids(t, dataItems(r)); got[0] != 2 {
		t.Fatalf("order: %v", got)
	}
	if _, err := a.Put("customers", map[string]any{"id": "x"}); err == nil {
		t.Fatal("bad id accepted")
	}
}

// TestODataFilterAndTokenPathAlias: the PowerOffice Go connector's shapes —
// "$filter=(LastChanged ge datetimeoffset'T')" with $top/$skip, and a token
// URL of base_url + "/OAuth/Token".
func TestODataFilterAndTokenPathAlias(t *testing.T) {
	a, srv := newServer(t, fakeapi.Options{Seed: map[string]int{"Customer": 50}, Auth: fakeapi.AuthBearer})
	list := func(filter string, extra string) reply {
		t.Helper()
		pair := a.IssueToken()
		return do(t, "GET", srv.URL+"/api/Customer?$filter="+url.QueryEscape(filter)+extra,
			map[string]string{"Authorization": "Bearer " + pair.AccessToken}, "")
	}
	// Seed record i has lastChanged 2024-01-01T00:00Z + i minutes.
	r := list("(LastChanged ge datetimeoffset'2024-01-01T00:40:00Z')", "")
	checkSequence(t, ids(t, dataItems(r)), 40, 50)
	r = list("lastchanged GT datetimeoffset'2024-01-01T00:40:00.000Z'", "")
	checkSequence(t, ids(t, dataItems(r)), 41, 50)
	r = list("((LastChanged ge datetimeoffset'1970-01-01'))", "&$top=20&$skip=40")
	checkSequence(t, ids(t, dataItems(r)), 41, 50)
	if r.obj(t)["total"] != json.Number("50") {
		t.Errorf("total %v", r.obj(t)["total"])
	}
	// With since as well, the later bound wins.
	r = list("(LastChanged ge datetimeoffset'1970-01-01')", "&since="+url.QueryEscape("2024-01-01T00:45:00Z"))
	checkSequence(t, ids(t, dataItems(r)), 45, 50)
	r = list("(LastChanged ge datetimeoffset'2024-01-01T00:48:00Z')", "&since=2024-01-01")
	checkSequence(t, ids(t, dataItems(r)), 48, 50)
	for _, bad := range []string{"Name eq 'x'", "(LastChanged ge datetimeoffset'2024-01-01') and (Id gt 3)", "LastChanged ge datetimeoffset'soon'"} {
		if r := list(bad, ""); r.status != 400 {
			t.Errorf("$filter %q: %d %s", bad, r.status, r.raw)
		}
	}

	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"ferry-client"}, "client_secret": {"ferry-secret"}}
	for _, path := range []string{"/OAuth/Token", "/api/OAuth/Token", "/oauth/token"} {
		r := do(t, "POST", srv.URL+path, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, form.Encode())
		if r.status != 200 || r.obj(t)["access_token"] == nil {
			t.Errorf("POST %s: %d %s", path, r.status, r.raw)
		}
	}
	if r := do(t, "POST", srv.URL+"/api/OAuth/Tokens", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, form.Encode()); r.status == 200 {
		t.Errorf("a path that only starts like the token path was served: %s", r.raw)
	}
}

func TestIdempotencyKey(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	post := func(key, name string) (int, map[string]any, string) {
		req, _ := http.NewRequest("POST", srv.URL+"/api/things", strings.NewReader(`{"name":"`+name+`"}`))
		if key != "" {
			req.Header.Set(fakeapi.IdempotencyKeyHeader, key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m, resp.Header.Get("Idempotent-Replayed")
	}
	_, first, replayed := post("k1", "a")
	if replayed != "" {
		t.Errorf("first create replayed")
	}
	st, again, replayed := post("k1", "different body")
	if st != 201 || replayed != "true" || again["id"] != first["id"] || again["name"] != "a" {
		t.Errorf("replay = %d %v %q, want the first record", st, again, replayed)
	}
	_, other, _ := post("k2", "b")
	_, plain, _ := post("", "c")
	if other["id"] == first["id"] || plain["id"] == first["id"] {
		t.Errorf("different keys created one record")
	}
	if n := len(api.Records("things")); n != 3 {
		t.Errorf("%d records, want 3", n)
	}
	// Concurrent creates with one key create one record.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); post("k3", "race") }()
	}
	wg.Wait()
	if n := len(api.Records("things")); n != 4 {
		t.Errorf("%d records after concurrent keyed creates, want 4", n)
	}
}

func TestFilterAndPatch(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{})
	for i, ref := range []string{"a", "b", "a"} {
		if _, err := api.Put("c", map[string]any{"id": json.Number(fmt.Sprint(i + 1)), "ref": ref, "n": json.Number(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	get := func(q string) []any {
		resp, err := http.Get(srv.URL + "/api/c?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		l, _ := m["data"].([]any)
		return l
	}
	if n := len(get("filter[ref]=a")); n != 2 {
		t.Errorf("filter ref=a: %d records", n)
	}
	if n := len(get("filter[ref]=a&filter[n]=2")); n != 1 {
		t.Errorf("two filters: %d records", n)
	}
	if n := len(get("filter[missing]=x")); n != 0 {
		t.Errorf("filter on a missing field: %d records", n)
	}
	before, _ := api.Get("c", 2)
	got, err := api.Patch("c", 2, map[string]any{"ref": "z"})
	if err != nil || got["ref"] != "z" || got["version"] == before["version"] {
		t.Errorf("Patch = %v, %v", got, err)
	}
	if _, err := api.Patch("c", 99, map[string]any{"ref": "z"}); err == nil {
		t.Error("patching a missing record succeeded")
	}
}

func TestWriteThenFailAndMethods(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{})
	api.SetFaults(fakeapi.Faults{Methods: []string{"PUT"}, ErrorNext: 1, WriteThenFailNext: 2, WriteThenFailStatus: 502})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	do := func(method, path, body string) (int, error) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// The POST is not a PUT: the method filter lets it through, but it is
	// the first write: applied, then 502.
	if st, _ := do("POST", "/api/c", `{"name":"x"}`); st != 502 {
		t.Errorf("POST status %d, want 502 after the write", st)
	}
	if n := len(api.Records("c")); n != 1 {
		t.Fatalf("the failed POST was not applied: %d records", n)
	}
	// The PUT gets the method-scoped 503 before anything happens.
	if st, _ := do("PUT", "/api/c/1", `{"name":"y"}`); st != 503 {
		t.Errorf("PUT status %d, want 503", st)
	}
	if r, _ := api.Get("c", 1); r["name"] != "x" {
		t.Errorf("the refused PUT was applied: %v", r)
	}
	// A GET is neither filtered nor a write.
	if st, _ := do("GET", "/api/c/1", ""); st != 200 {
		t.Errorf("GET status %d", st)
	}
	// The next write is applied, then answered 502.
	if st, _ := do("PUT", "/api/c/1", `{"name":"z"}`); st != 502 {
		t.Errorf("second write status %d", st)
	}
	if r, _ := api.Get("c", 1); r["name"] != "z" {
		t.Errorf("the write-then-fail PUT was not applied: %v", r)
	}
	// Status 0 closes the connection without an answer.
	api.SetFaults(fakeapi.Faults{WriteThenFailNext: 1})
	if _, err := do("DELETE", "/api/c/1", ""); err == nil {
		t.Error("DELETE got an answer; want the connection closed")
	}
	if _, ok := api.Get("c", 1); ok {
		t.Error("the DELETE was not applied")
	}
}
