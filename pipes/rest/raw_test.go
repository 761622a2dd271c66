package rest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/pipes/all"
	"github.com/ferrydata/ferry/pipes/rest"
	"github.com/ferrydata/ferry/sinks"
)

// rawOps are operations whose pages can take the raw path, one per way of
// finding an item's _id and _updated.
var rawOps = []string{
	`"payload_property": "data", "id_expression": "{{ id }}", "next_page_link": "{{ body.next }}"`,
	`"id_expression": "{{ a.b }}", "updated_expression": "{{ upd }}"`,
	`"updated_expression": "{{ meta.ts }}"`,
	`"payload_property": "items", "id_expression": "{{ id }}", "updated_expression": "{{ id }}"`,
	`"payload_property": "results", "id_expression": "{{ id }}", "next_page_link": "{% if body.paging %}{{ body.paging.next.link.split('#')[0] }}{% endif %}"`,
}

// pageServer serves pages[i-1] for ?page=i (the last page for any later
// one), as application/json.
func pageServer(t testing.TB, pages *atomic.Pointer[[]string]) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps := *pages.Load()
		n, _ := strconv.Atoi(r.URL.Query().Get("page"))
		n = min(max(n, 1), len(ps))
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(ps[n-1]))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// readResult is what a run of a rest source read, prepared for storing.
type readResult struct {
	prepared []engine.Prepared
	since    string
	err      error
}

// compileRawPipe compiles pipe "p" of a rest source with operation op of
// system "api" at base; pipe holds the pipe's other keys (with a trailing
// comma), source the source's.
func compileRawPipe(t testing.TB, base, op, pipe, source string) *engine.Plan {
	t.Helper()
	cfg := fmt.Sprintf(`[
 {"_id": "api", "type": "system:rest", "url_pattern": "%s/%%s",
  "operations": {"list": {"url": "x?page=1", "max_pages": 4, %s}}},
 {"_id": "p", "type": "pipe", %s "source": {"type": "rest", "system": "api", "operation": "list" %s}}]`, base, op, pipe, source)
	c, err := engine.ParseConfig("raw.json", []byte(cfg), engine.EnvFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	sinks.Register(reg)
	rest.RegisterWith(reg, rest.Options{})
	plan, err := engine.Compile(c, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// compileRawSource compiles a rest source with operation op against base
// (with supports_since).
func compileRawSource(t testing.TB, base, op string) engine.Source {
	return compileRawPipe(t, base, op, "", `, "supports_since": true`).Pipe("p").Source
}

// readAll runs src once, as text (raw) or as maps, and prepares every
// entity read.
func readAll(src engine.Source, raw bool) readResult {
	ctx := context.Background()
	r, err := src.Open(ctx, engine.ReadRequest{Full: true})
	if err != nil {
		return readResult{err: err}
	}
	defer r.Close()
	var res readResult
	for {
		var (
			vals [][]byte
			ents []engine.Entity
			b    string
		)
		if raw {
			rb, err := r.(engine.RawReader).NextRaw(ctx)
			if errors.Is(err, engine.EOF) {
				return res
			}
			if err != nil {
				res.err = err
				return res
			}
			vals, b = rb.Values, rb.Since
		} else {
			mb, err := r.Next(ctx)
			if errors.Is(err, engine.EOF) {
				return res
			}
			if err != nil {
				res.err = err
				return res
			}
			ents, b = mb.Entities, mb.Since
		}
		if b != "" {
			res.since = b
		}
		for _, v := range vals {
			p, _, err := engine.PrepareRaw(nil, v)
			if err != nil {
				res.err = fmt.Errorf("prepare %s: %w", v, err)
				return res
			}
			res.prepared = append(res.prepared, p)
		}
		for _, e := range ents {
			p, err := engine.Prepare(e)
			if err != nil {
				res.err = fmt.Errorf("prepare: %w", err)
				return res
			}
			res.prepared = append(res.prepared, p)
		}
	}
}

// sameRead reports how a raw read differs from a map read ("" if not):
// both fail, or both store the same entities and the same since token.
func sameRead(m, r readResult) string {
	if (m.err != nil) != (r.err != nil) {
		return fmt.Sprintf("maps: %v, raw: %v", m.err, r.err)
	}
	if m.err != nil {
		return ""
	}
	if m.since != r.since {
		return fmt.Sprintf("since: maps %q, raw %q", m.since, r.since)
	}
	if len(m.prepared) != len(r.prepared) {
		return fmt.Sprintf("maps read %d entities, raw %d", len(m.prepared), len(r.prepared))
	}
	for i := range m.prepared {
		a, b := m.prepared[i], r.prepared[i]
		if a.ID != b.ID || !bytes.Equal(a.Body, b.Body) || a.Hash != b.Hash || a.Deleted != b.Deleted || a.Filtered != b.Filtered {
			return fmt.Sprintf("entity %d: maps %q %s, raw %q %s", i, a.ID, a.Body, b.ID, b.Body)
		}
	}
	return ""
}

// TestRawPageMatchesMaps: a rest source hands over as text exactly the
// entities it builds as maps (same _id, stored form, hash and flags, same
// since token), and fails where the map path fails.
func TestRawPageMatchesMaps(t *testing.T) {
	var pages atomic.Pointer[[]string]
	srv := pageServer(t, &pages)
	cases := []struct {
		op    int
		pages []string
		fail  bool
	}{
		{0, []string{`{"data": [{"id": 1, "name": "a"}, {"id": "x\"y", "z": [1, {"k": null}]}], "next": "?page=2", "total": 3}`,
			` {"next": "", "data": [ { "id" : 1.50 , "_id": "own", "_updated": "u1" } ] } `}, false},
		{0, []string{`{"data": [{"id": 7, "id": 8}, {"i\u0064": 9, "_deleted": true}, {"id": "\u00e9t\u00e9", "_filtered": false}], "next": ""}`}, false},
		{0, []string{`{"data": {"id": 5}, "next": null}`}, false},
		{0, []string{`{"data": null, "next": ""}`}, false},
		{0, []string{`{"next": "", "data": []}`}, false},
		{0, []string{`{"data": [{"id": true}, {"id": [1]}, {"id": {"a": 1}}], "next": null}`}, false},
		{0, []string{`{"data": [{"id": null}], "next": null}`}, true},
		{0, []string{`{"data": [{"id": 1}]}`}, true},
		{0, []string{`{"data": [{"name": "no id"}]}`}, true},
		{0, []string{`{"data": [{"id": ""}]}`}, true},
		{0, []string{`{"data": [{"id": 1}, 5]}`}, true},
		{0, []string{`{"data": [{"id": 1}, {"id": tru}]}`}, true},
		{0, []string{`{"data": [{"id": 1}] `}, true},
		{0, []string{`{"data": [{"id": 1}]} x`}, true},
		{0, []string{`{"rows": []}`}, true},
		{0, []string{`[{"id": 1}]`}, true},
		{0, []string{`{"data": 5}`}, true},
		{1, []string{`[{"a": {"b": "k1"}, "upd": "2024-01-02"}, {"a": {"b": 2, "b": 3}, "upd": 20240101}, {"a": {"b": "x"}, "upd": null}, {"a": {"b": "y"}, "upd": false}]`}, false},
		{1, []string{`[{"a": {"b": null}, "upd": "x"}]`}, true},
		{1, []string{`[{"a": {"c": 1}, "upd": "x"}]`}, true},
		{1, []string{`[{"a": "flat", "upd": "x"}]`}, true},
		{1, []string{`{"a": {"b": "single"}, "upd": "2030"}`}, false},
		{1, []string{`[]`}, false},
		{1, []string{`[{}]`}, true},
		{2, []string{`[{"_id": "e1", "meta": {"ts": "2024-05-01"}}, {"_id": "e2", "meta": {"ts": 17}, "_updated": "old"}, {"_id": "e3", "_updated": "2099", "meta": {"ts": null}}]`}, false},
		{2, []string{`[{"_id": "e3", "_updated": "2099"}]`}, true},
		{2, []string{`[{"_id": 5, "meta": {"ts": "x"}}]`}, true},
		{2, []string{`[{"_id": "a", "meta": {}}, {"_id": "b", "_id": "c", "meta": {"ts": ""}}]`}, true},
		{2, []string{`[{"_id": "a", "meta": {"ts": "1"}}, {"_id": "b", "_id": "c", "meta": {"ts": ""}}]`}, false},
		{2, []string{`[{"_id": "\ud800x", "meta": {"ts": "\u0041"}}]`}, false},
		{3, []string{`{"items": [{"id": "2024-01-01"}, {"id": "2023-12-31", "_updated": 7}, {}]}`}, true},
		{3, []string{`{"items": [{"id": "2024-01-01"}, {"id": "2023-12-31", "_updated": 7}], "items": [{"id": "2025"}]}`}, false},
		{3, []string{"{\"items\": [{\"id\": \"a\tb\"}]}"}, true},
		{4, []string{`{"results": [{"id": 1}, {"id": 2}], "paging": {"next": {"link": "?page=2#x"}}}`,
			`{"paging": {"next": {"link": "?page=3"}}, "results": [{"id": 3}]}`, `{"results": [{"id": 4}], "paging": null}`}, false},
	}
	for i, tc := range cases {
		pages.Store(&tc.pages)
		src := compileRawSource(t, srv.URL, rawOps[tc.op])
		r, _ := src.Open(context.Background(), engine.ReadRequest{Full: true})
		if !r.(engine.RawReader).RawOK() {
			t.Fatalf("case %d: operation %d does not take the raw path", i, tc.op)
		}
		r.Close()
		m, raw := readAll(src, false), readAll(src, true)
		if d := sameRead(m, raw); d != "" {
			t.Errorf("case %d (%s): %s", i, tc.pages[0], d)
		}
		if (m.err != nil) != tc.fail {
			t.Errorf("case %d (%s): error %v, want failure %v", i, tc.pages[0], m.err, tc.fail)
		}
	}
}

// TestRawEligible: calls whose templates could read the items through the
// page body, or that need the template engine per item, keep the map path.
func TestRawEligible(t *testing.T) {
	var pages atomic.Pointer[[]string]
	pages.Store(&[]string{`[]`})
	srv := pageServer(t, &pages)
	for _, tc := range []struct {
		op  string
		raw bool
	}{
		{`"id_expression": "{{ id }}"`, true},
		{`"payload_property": "data", "next_page_link": "{{ body.links.next }}"`, true},
		{`"payload_property": "data", "next_page_link": "{{ body.data[-1].url }}"`, false},
		{`"payload_property": "data", "next_page_link": "{{ body.data.next }}"`, false},
		{`"next_page_link": "{{ body.next }}"`, false},
		{`"payload_property": "a.b"`, false},
		{`"id_expression": "{{ id }}-{{ kind }}"`, false},
		{`"updated_expression": "{{ ts|string }}"`, false},
		{`"payload_property": "data", "params": {"after": "{{ previous_body.data[-1].id }}"}`, false},
		{`"payload_property": "data", "headers": {"X-Page": "{{ page }}"}, "params": {"p": "{{ page + 1 }}"}`, true},
		{`"payload_property": "data", "error_expression": "{{ body.error }}"`, true},
		{`"payload_property": "data", "error_expression": "{{ body|tojson }}"`, false},
		{`"payload_property": "results", "id_expression": "{{ id }}", "next_page_link": "{{ body.paging.next.link.split('?')[0] ~ '?after=' ~ body.paging.next.after }}"`, true},
		{`"payload_property": "results", "next_page_link": "{% if body.results %}{{ url }}{% endif %}"`, false},
		{`"payload_property": "data", "params": {"after": "{{ previous_body.cursor }}"}`, true},
		{`"payload_property": "data", "params": {"{{ previous_body['data'] }}": "1"}`, false},
		{`"next_page_link": "{{ headers.Link.next }}"`, true},
	} {
		src := compileRawSource(t, srv.URL, tc.op)
		r, err := src.Open(context.Background(), engine.ReadRequest{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.(engine.RawReader).RawOK(); got != tc.raw {
			t.Errorf("%s: RawOK %v, want %v", tc.op, got, tc.raw)
		}
		r.Close()
	}
}

// FuzzRawPage serves an arbitrary page to a rest source in each raw-path
// style and checks that the raw path stores what the map path stores, or
// fails where it fails.
func FuzzRawPage(f *testing.F) {
	for _, s := range []string{
		`{"data": [{"id": 1, "name": "a"}, {"id": "b", "_id": "x"}], "next": ""}`,
		`[{"a": {"b": "k"}, "upd": "2024"}, {"a": {"b": 1.0}, "upd": 3}]`,
		`[{"_id": "e1", "meta": {"ts": "t"}}, {"_id": "e2", "_updated": "u"}]`,
		`{"items": [{"id": "2024-01-01", "_updated": null}], "more": {"x": [1, "]"]}}`,
		`{"data": {"id": "\u0000"}}`,
		`[ {} , {"_id":"a"} ]`,
	} {
		for op := range rawOps {
			f.Add(uint8(op), s)
		}
	}
	var pages atomic.Pointer[[]string]
	pages.Store(&[]string{""})
	srv := pageServer(f, &pages)
	srcs := make([]engine.Source, len(rawOps))
	for i, op := range rawOps {
		srcs[i] = compileRawSource(f, srv.URL, strings.Replace(op, `"{{ body.next }}"`, `""`, 1))
	}
	f.Fuzz(func(t *testing.T, op uint8, body string) {
		pages.Store(&[]string{body})
		src := srcs[int(op)%len(srcs)]
		if d := sameRead(readAll(src, false), readAll(src, true)); d != "" {
			t.Fatalf("%q: %s", body, d)
		}
	})
}

// TestRawPageWholeOrNothing: a page whose item 950 is not valid JSON
// fails the run naming the item, and nothing of that page is written,
// although the engine cuts the page into batches of 100 and commits
// every 3 batches; the page before it is kept.
func TestRawPageWholeOrNothing(t *testing.T) {
	page := func(n int, bad int, next string) string {
		var b strings.Builder
		b.WriteString(`{"next": "` + next + `", "data": [`)
		for i := range 1000 {
			if i > 0 {
				b.WriteByte(',')
			}
			if i == bad {
				fmt.Fprintf(&b, `{"id": %d, "x": tru}`, n*1000+i)
				continue
			}
			fmt.Fprintf(&b, `{"id": %d, "x": true}`, n*1000+i)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	var pages atomic.Pointer[[]string]
	pages.Store(&[]string{page(0, -1, "?page=2"), page(1, 950, "")})
	srv := pageServer(t, &pages)
	plan := compileRawPipe(t, srv.URL, rawOps[0], `"batch_size": 100, "checkpoint_interval": 3,`, "")
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "data"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, err = engine.New(store, plan, nil).Run(context.Background(), "p", engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), `page 1: item 950`) {
		t.Fatalf("run error %v, want one naming page 1 item 950", err)
	}
	info, _, err := store.Dataset(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if info.Entities != 1000 {
		t.Errorf("the dataset holds %d entities, want the 1000 of the first page", info.Entities)
	}
}

// TestRawPageThroughJQ: a collect pipe with a jq transform of the text
// path's subset takes the raw path and stores what the same program
// outside the subset stores on the map path, for every page case of
// TestRawPageMatchesMaps that reads.
func TestRawPageThroughJQ(t *testing.T) {
	var pages atomic.Pointer[[]string]
	srv := pageServer(t, &pages)
	cases := []struct {
		op    int
		pages []string
	}{
		{0, []string{`{"data": [{"id": 1, "name": "a"}, {"id": "x\"y", "z": [1, {"k": null}]}], "next": "?page=2", "total": 3}`,
			` {"next": "", "data": [ { "id" : 1.50 , "_id": "own", "_updated": "u1", "name": "b" } ] } `}},
		{0, []string{`{"data": [{"id": 7, "id": 8}, {"i\u0064": 9, "_deleted": true}, {"id": "\u00e9t\u00e9", "_filtered": false}], "next": ""}`}},
		{1, []string{`[{"a": {"b": "k1"}, "upd": "2024-01-02"}, {"a": {"b": 2, "b": 3}, "upd": 20240101}, {"a": {"b": "x"}, "upd": null}]`}},
		{2, []string{`[{"_id": "e1", "meta": {"ts": "2024-05-01"}}, {"_id": "e2", "meta": {"ts": 17}, "_updated": "old"}]`}},
		{4, []string{`{"results": [{"id": 1}, {"id": 2}], "paging": {"next": {"link": "?page=2#x"}}}`,
			`{"paging": {"next": {"link": "?page=3"}}, "results": [{"id": 3}]}`, `{"results": [{"id": 4}], "paging": null}`}},
	}
	for i, tc := range cases {
		pages.Store(&tc.pages)
		cfg := fmt.Sprintf(`[
 {"_id": "api", "type": "system:rest", "url_pattern": "%s/%%s", "operations": {"list": {"url": "x?page=1", "max_pages": 4, %s}}},
 {"_id": "text", "type": "pipe", "source": {"type": "rest", "system": "api", "operation": "list"}, "transform": {"type": "jq", "expression": ". + {n: (\"n-\" + .name), u: ._updated} | del(.z)"}},
 {"_id": "decoded", "type": "pipe", "source": {"type": "rest", "system": "api", "operation": "list"}, "transform": {"type": "jq", "expression": ". + {n: (\"n-\" + (.name | .)), u: ._updated} | del(.z)"}}]`, srv.URL, rawOps[tc.op])
		c, err := engine.ParseConfig("raw.json", []byte(cfg), engine.EnvFrom(nil))
		if err != nil {
			t.Fatal(err)
		}
		plan, err := engine.Compile(c, all.Registry(), nil)
		if err != nil {
			t.Fatal(err)
		}
		store, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		eng := engine.New(store, plan, nil)
		dump := map[string]string{}
		for _, p := range []string{"text", "decoded"} {
			if _, err := eng.Run(context.Background(), p, engine.RunOptions{}); err != nil {
				t.Fatalf("case %d: %s: %v", i, p, err)
			}
			var b strings.Builder
			store.Scan(context.Background(), p, engine.ScanOptions{}, func(r engine.Record) error {
				fmt.Fprintf(&b, "%s %s %v %s\n", r.ID, r.Hash, r.Deleted, r.Body)
				return nil
			})
			dump[p] = b.String()
		}
		store.Close()
		if dump["text"] != dump["decoded"] || dump["text"] == "" {
			t.Errorf("case %d:\ntext path:\n%s\nmap path:\n%s", i, dump["text"], dump["decoded"])
		}
	}
}
