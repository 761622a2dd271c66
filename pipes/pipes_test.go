package pipes_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/pipes/all"
)

type env struct {
	t     *testing.T
	dir   string
	eng   *engine.Engine
	store engine.Store
}

// setup writes files (config in pipes.json) into a temp dir, compiles the
// config and opens a store.
func setup(t *testing.T, config string, files map[string]string) *env {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eng, s := enginetest.NewEngine(t, all.Registry(), dir, config)
	return &env{t: t, dir: dir, eng: eng, store: s}
}

func compileErr(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pipes.json"), []byte(config), 0o644)
	cfg, err := engine.LoadConfig([]string{dir}, func(string) (string, bool) { return "", false })
	if err != nil {
		return err.Error()
	}
	_, err = engine.Compile(cfg, all.Registry(), nil)
	if err == nil {
		t.Fatalf("config compiled: %s", config)
	}
	return err.Error()
}

func (e *env) run(pipe string) (engine.RunRecord, error) {
	return e.eng.Run(context.Background(), pipe, engine.RunOptions{})
}

func (e *env) mustRun(pipe string) engine.RunRecord {
	e.t.Helper()
	rec, err := e.run(pipe)
	if err != nil {
		e.t.Fatalf("run %s: %v", pipe, err)
	}
	return rec
}

// bodies lists a dataset's latest versions as "id=body" in log order.
func (e *env) bodies(ds string) string {
	e.t.Helper()
	var out []string
	_, err := e.store.Scan(context.Background(), ds, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		out = append(out, string(r.Body))
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

func (e *env) since(pipe string) string {
	st, _ := e.store.PipeState(context.Background(), pipe)
	return st.Since
}

func TestEmbedded(t *testing.T) {
	e := setup(t, `[{"_id":"p","type":"pipe","batch_size":1,"source":{"type":"embedded","entities":[{"_id":"a","x":1.50},{"_id":"b"}]}}]`, map[string]string{})
	rec := e.mustRun("p")
	if rec.Read != 2 || rec.Written != 2 || e.since("p") != "" {
		t.Errorf("run = %+v since %q", rec, e.since("p"))
	}
	if got := e.bodies("p"); got != "{\"_id\":\"a\",\"x\":1.50}\n{\"_id\":\"b\"}" {
		t.Errorf("dataset = %s", got)
	}
	// Without supports_since every run is full and reads everything.
	if rec := e.mustRun("p"); rec.SyncType != "full" || rec.Read != 2 || rec.Unchanged != 2 {
		t.Errorf("second run = %+v", rec)
	}
}

func TestEmbeddedSupportsSince(t *testing.T) {
	e := setup(t, `[{"_id":"p","type":"pipe","batch_size":2,"source":{"type":"embedded","supports_since":true,"entities":[
		{"_id":"a","_updated":3},{"_id":"b","_updated":10},{"_id":"c","_updated":9},{"_id":"d","_updated":1}]}}]`, map[string]string{})
	rec := e.mustRun("p")
	if rec.Read != 4 || e.since("p") != "10" {
		t.Errorf("first run = %+v, since %q; want 4 read and since 10 (numeric max, not 9)", rec, e.since("p"))
	}
	rec = e.mustRun("p")
	if rec.SyncType != "incremental" || rec.Read != 0 || e.since("p") != "10" {
		t.Errorf("second run = %+v since %q", rec, e.since("p"))
	}
	if msg := compileErr(t, `{"_id":"p","type":"pipe","source":{"type":"embedded","supports_since":true,"entities":[{"_id":"a"}]}}`); !strings.Contains(msg, "/source/entities/0: supports_since needs _updated") {
		t.Errorf("missing _updated: %s", msg)
	}
	if msg := compileErr(t, `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[{"_id":1}]}}`); !strings.Contains(msg, "/source/entities/0") {
		t.Errorf("non-string _id: %s", msg)
	}
}

func TestDatasetSource(t *testing.T) {
	ctx := context.Background()
	config := `[
 {"_id":"src","type":"pipe","source":{"type":"embedded","entities":[]}},
 {"_id":"latest","type":"pipe","batch_size":2,"source":{"type":"dataset","dataset":"src"},"transform":{"type":"jq","expression":". + {off: ._updated}"}},
 {"_id":"all","type":"pipe","batch_size":2,"source":{"type":"dataset","dataset":"src","include_previous_versions":true},"sink":{"type":"null"}}]`
	e := setup(t, config, map[string]string{})
	put := func(texts ...string) {
		tx, _ := e.store.Begin(ctx)
		for _, text := range texts {
			ent, _ := engine.DecodeEntity([]byte(text))
			p, _ := engine.Prepare(ent)
			tx.Put("src", &p, 1)
		}
		tx.SetPopulated("src")
		tx.Commit()
	}
	// a@0 b@1 a@2 c@3
	put(`{"_id":"a","v":1}`, `{"_id":"b","v":1}`, `{"_id":"a","v":2}`, `{"_id":"c","v":1}`)
	rec := e.mustRun("latest")
	if rec.Read != 3 || e.since("latest") != "3" {
		t.Errorf("latest-only run = %+v since %q; want 3 read (a@0 superseded) and since 3", rec, e.since("latest"))
	}
	if got := e.bodies("latest"); got != "{\"_id\":\"b\",\"off\":1,\"v\":1}\n{\"_id\":\"a\",\"off\":2,\"v\":2}\n{\"_id\":\"c\",\"off\":3,\"v\":1}" {
		t.Errorf("latest dataset:\n%s", got)
	}
	if rec := e.mustRun("all"); rec.Read != 4 || e.since("all") != "3" {
		t.Errorf("include_previous_versions run = %+v", rec)
	}
	// Incremental continuation: only what came after the offset.
	put(`{"_id":"b","v":2}`, `{"_id":"d","_deleted":true}`)
	rec = e.mustRun("latest")
	if rec.SyncType != "incremental" || rec.Read != 2 || e.since("latest") != "5" {
		t.Errorf("incremental run = %+v since %q", rec, e.since("latest"))
	}
	if r, _, _ := e.store.Get(ctx, "latest", "d"); !r.Deleted {
		t.Error("deleted version not passed on")
	}
	if rec := e.mustRun("latest"); rec.Read != 0 {
		t.Errorf("run with nothing new read %d", rec.Read)
	}
	// A stored offset that is not a number names the problem.
	tx, _ := e.store.Begin(ctx)
	tx.SetPipeState("latest", engine.PipeState{Since: "abc"})
	tx.Commit()
	if _, err := e.run("latest"); err == nil || !strings.Contains(err.Error(), `bad stored offset "abc"`) {
		t.Errorf("bad offset error = %v", err)
	}
}

func TestDatasetSourceSkipsOnlyVersionsSupersededAtReadTime(t *testing.T) {
	ctx := context.Background()
	e := setup(t, `[{"_id":"src","type":"pipe","source":{"type":"embedded","entities":[]}},
		{"_id":"p","type":"pipe","batch_size":1,"checkpoint_interval":1,"source":{"type":"dataset","dataset":"src"}}]`, map[string]string{})
	tx, _ := e.store.Begin(ctx)
	for i := 0; i < 5; i++ {
		ent, _ := engine.DecodeEntity([]byte(fmt.Sprintf(`{"_id":"x","v":%d}`, i)))
		p, _ := engine.Prepare(ent)
		tx.Put("src", &p, 1)
	}
	tx.Commit()
	rec := e.mustRun("p")
	if rec.Read != 1 || e.since("p") != "4" {
		t.Errorf("run = %+v since %q; want only x@4", rec, e.since("p"))
	}
}

const people = `[{"_id":"1","n":12345678901234567890.10},{"_id":"2"},{"_id":"3"}]`

func TestJSONSourceFile(t *testing.T) {
	cases := []struct {
		name, data string
		read       int64
		err        string
	}{
		{"array", people, 3, ""},
		{"ndjson", "{\"_id\":\"1\"}\n{\"_id\":\"2\"}\n", 2, ""},
		{"empty array", "[]", 0, ""},
		{"empty file", "", 0, ""},
		{"malformed entity", `[{"_id":"1"},{"_id":"2","x":tru}]`, 0, "in.json: entity 2: invalid JSON"},
		{"no _id", `[{"_id":"1"},{"_id":"2"},{"x":1}]`, 0, "in.json: entity 3: entity has no _id"},
		{"number _id", "{\"_id\":\"1\"}\n{\"_id\":7}\n", 0, "in.json: entity 2: entity _id is a number"},
		{"not an object", `[{"_id":"1"},"x"]`, 0, "in.json: entity 2: entity is a string"},
		{"truncated", `[{"_id":"1"},{"_id":"2"`, 0, "in.json: byte 23: unexpected end of input"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := setup(t, `{"_id":"p","type":"pipe","batch_size":2,"source":{"type":"json","url":"in.json"}}`, map[string]string{"in.json": c.data})
			rec, err := e.run("p")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || rec.Read != c.read {
				t.Fatalf("run = %+v, %v", rec, err)
			}
		})
	}
	e := setup(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"}}`, map[string]string{"in.json": people})
	e.mustRun("p")
	if r, _, _ := e.store.Get(context.Background(), "p", "1"); string(r.Body) != `{"_id":"1","n":12345678901234567890.10}` {
		t.Errorf("number text lost: %s", r.Body)
	}
	e = setup(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"missing.json"}}`, map[string]string{})
	if _, err := e.run("p"); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file error = %v", err)
	}
}

// TestJSONSourceNDJSON checks "format": "ndjson": lines are values, so
// an error names the line; a line that is not exactly one JSON value is
// refused, on a first load, through a transform, and on a re-run where
// its text is new (unchanged text is known to be one value: a stored
// version was decoded from it).
func TestJSONSourceNDJSON(t *testing.T) {
	const good = "{\"_id\":\"a\",\"n\":1}\r\n\n{\"_id\":\"b\",\"n\":2.50}\n  {\"_id\":\"c\"}"
	const pipe = `{"_id":"p","type":"pipe","batch_size":2,"source":{"type":"json","format":"ndjson","url":"in.json"}%s}`
	e := setup(t, fmt.Sprintf(pipe, ""), map[string]string{"in.json": good})
	if rec := e.mustRun("p"); rec.Written != 3 {
		t.Fatalf("run = %+v", rec)
	}
	if got := e.bodies("p"); got != "{\"_id\":\"a\",\"n\":1}\n{\"_id\":\"b\",\"n\":2.50}\n{\"_id\":\"c\"}" {
		t.Errorf("dataset = %s", got)
	}
	bad := map[string]struct{ data, err string }{
		"two values on a line": {"{\"_id\":\"a\"}\n\n{\"_id\":\"b\"} {\"_id\":\"c\"}\n", "in.json: line 3: invalid JSON at byte 12: unexpected '{' after top-level value"},
		"a value over lines":   {"{\"_id\":\"a\"}\n{\"_id\":\n\"b\"}\n", "in.json: line 2: invalid JSON"},
		"an array":             {"[{\"_id\":\"a\"},\n{\"_id\":\"b\"}]\n", "in.json: line 1: invalid JSON"},
	}
	for name, c := range bad {
		for _, tr := range []string{"", `,"transform":{"type":"jq","expression":"."}`} {
			e := setup(t, fmt.Sprintf(pipe, tr), map[string]string{"in.json": c.data})
			if _, err := e.run("p"); err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s (transform %q): error = %v, want %q", name, tr, err, c.err)
			}
			if got := e.bodies("p"); strings.Contains(got, `"c"`) || strings.Contains(got, `"b"`) {
				t.Errorf("%s (transform %q): written %s", name, tr, got)
			}
		}
	}
	// A re-run: a's line is now two values; its text is new, so it is
	// decoded and refused, naming the entity, and nothing of it lands.
	if err := os.WriteFile(filepath.Join(e.dir, "in.json"), []byte("{\"_id\":\"a\",\"n\":1} {\"_id\":\"z\"}\n{\"_id\":\"b\",\"n\":2.50}\n{\"_id\":\"c\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.run("p"); err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), "after top-level value") {
		t.Errorf("re-run with two values on a's line: error = %v", err)
	}
	if got := e.bodies("p"); strings.Contains(got, `"z"`) {
		t.Errorf("re-run wrote %s", got)
	}
	if msg := compileErr(t, `{"_id":"p","type":"pipe","source":{"type":"json","format":"lines","url":"in.json"}}`); !strings.Contains(msg, "format") {
		t.Errorf("unknown format: %s", msg)
	}
}

func TestJSONSourceHTTP(t *testing.T) {
	var gotSince, gotAuth, gotHeader string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotSince, gotAuth, gotHeader = r.URL.Query().Get("since"), r.Header.Get("Authorization"), r.Header.Get("X-Extra")
		switch r.URL.Path {
		case "/people":
			since := r.URL.Query().Get("since")
			if since == "" {
				fmt.Fprint(w, `[{"_id":"1","_updated":5},{"_id":"2","_updated":7}]`)
			} else {
				fmt.Fprint(w, `[{"_id":"3","_updated":9}]`)
			}
		case "/broken":
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "  maintenance until noon "+strings.Repeat("x", 1000))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	config := fmt.Sprintf(`[
 {"_id":"api","type":"system:url","base_url":"%s/","token":"sekret","authentication":"bearer","headers":{"X-Extra":"sys"}},
 {"_id":"p","type":"pipe","source":{"type":"json","system":"api","url":"people","supports_since":true}},
 {"_id":"direct","type":"pipe","source":{"type":"json","url":"%s/people?x=1","headers":{"X-Extra":"pipe"}}},
 {"_id":"broken","type":"pipe","source":{"type":"json","system":"api","url":"broken"}},
 {"_id":"missing","type":"pipe","source":{"type":"json","system":"api","url":"nope?token=secret"}}]`, srv.URL, srv.URL)
	e := setup(t, config, map[string]string{})
	rec := e.mustRun("p")
	if rec.Read != 2 || e.since("p") != "7" || gotSince != "" || gotAuth != "Bearer sekret" || gotHeader != "sys" {
		t.Errorf("first run = %+v since %q; request since %q auth %q header %q", rec, e.since("p"), gotSince, gotAuth, gotHeader)
	}
	rec = e.mustRun("p")
	if rec.Read != 1 || gotSince != "7" || e.since("p") != "9" || rec.SyncType != "incremental" {
		t.Errorf("second run = %+v; request since %q, stored %q", rec, gotSince, e.since("p"))
	}
	e.mustRun("direct")
	if gotHeader != "pipe" {
		t.Errorf("pipe header = %q", gotHeader)
	}
	_, err := e.run("broken")
	if err == nil || !strings.Contains(err.Error(), "HTTP 503: maintenance until noon") || strings.Count(err.Error(), "x") > 400 {
		t.Errorf("non-2xx error = %v", err)
	}
	_, err = e.run("missing")
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") || strings.Contains(err.Error(), "secret") {
		t.Errorf("404 error = %v (must not show the query string)", err)
	}
}

func TestJSONSourceMaxTokenIsCommittedOnlyAtTheEnd(t *testing.T) {
	// _updated is not in order: a token committed after the first batch
	// (max 9) would skip _updated 2 after a failure in the second batch.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("since") != "" {
			fmt.Fprint(w, `[]`)
			return
		}
		fmt.Fprint(w, `[{"_id":"a","_updated":9},{"_id":"b","_updated":2},{"_id":"c"}]`)
	}))
	defer srv.Close()
	e := setup(t, fmt.Sprintf(`{"_id":"p","type":"pipe","batch_size":1,"checkpoint_interval":1,"source":{"type":"json","url":"%s/","supports_since":true},
		"transform":{"type":"jq","expression":"if ._id == \"c\" then error(\"boom\") else . end"}}`, srv.URL), map[string]string{})
	if _, err := e.run("p"); err == nil {
		t.Fatal("run did not fail")
	}
	if s := e.since("p"); s != "" {
		t.Errorf("offset after a failed run = %q; the max token must only be stored after a complete read", s)
	}
}

func TestJQ(t *testing.T) {
	cases := []struct {
		name, expr, in, want, err string
	}{
		{"identity keeps big numbers", ".", `{"_id":"a","n":12345678901234567890.10,"m":1.0,"big":123456789012345678901234567890}`, `{"_id":"a","big":123456789012345678901234567890,"m":1.0,"n":12345678901234567890.10}`, ""},
		{"merge keeps big numbers", ". + {x: .n}", `{"_id":"a","n":12345678901234567890.10}`, `{"_id":"a","n":12345678901234567890.10,"x":12345678901234567890.10}`, ""},
		{"arithmetic", "{_id, y: (.n * 2), z: (.n / 4)}", `{"_id":"a","n":3}`, `{"_id":"a","y":6,"z":0.75}`, ""},
		{"zero outputs", "select(.keep)", `{"_id":"a"}`, ``, ""},
		{"two outputs", `., {_id: "b"}`, `{"_id":"a"}`, "{\"_id\":\"a\"}\n{\"_id\":\"b\"}", ""},
		{"$pipe", `. + {p: $pipe}`, `{"_id":"a"}`, `{"_id":"a","p":"p"}`, ""},
		{"empty halt", `halt`, `{"_id":"a"}`, ``, ""},
		{"runtime error names _id", `.n + "x"`, `{"_id":"a","n":1}`, "", `entity "a": jq: `},
		{"error()", `error("bad")`, `{"_id":"a"}`, "", `entity "a": jq: error: bad`},
		{"non-object output", `.n`, `{"_id":"a","n":1}`, "", `entity "a": jq produced a number, not an object`},
		{"array output", `[.]`, `{"_id":"a"}`, "", `jq produced an array, not an object`},
		{"output without _id", `{x: 1}`, `{"_id":"a"}`, "", `entity "a": jq output: entity has no _id`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := setup(t, fmt.Sprintf(`{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"transform":{"type":"jq","expression":%q}}`, c.expr),
				map[string]string{"in.json": c.in})
			_, err := e.run("p")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.bodies("p"); got != c.want {
				t.Errorf("output:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

func TestJQDoesNotModifyItsInput(t *testing.T) {
	e := setup(t, `[{"_id":"src","type":"pipe","source":{"type":"embedded","entities":[{"_id":"a","n":[1,2]}]},
		"transform":{"type":"jq","expression":".n[0] = 5"}}]`, map[string]string{})
	e.mustRun("src")
	e.mustRun("src")
	if got := e.bodies("src"); got != `{"_id":"a","n":[5,2]}` {
		t.Errorf("dataset = %s", got)
	}
}

func TestURLSystemValidation(t *testing.T) {
	if msg := compileErr(t, `{"_id":"s","type":"system:url"}`); !strings.Contains(msg, "needs url_pattern or base_url") {
		t.Errorf("system without url: %s", msg)
	}
	if msg := compileErr(t, `[{"_id":"s","type":"pipe","source":{"type":"embedded","entities":[]}},{"_id":"p","type":"pipe","source":{"type":"json","system":"s","url":"x"}}]`); !strings.Contains(msg, `unknown system "s"`) {
		t.Errorf("pipe as system: %s", msg)
	}
}

var _ = errors.New

// TestJQTextPathStoresWhatGojqStores runs a jq program of the text path's
// subset (jqtext.go) and the same program written outside it between
// datasets, in batches of 7 on all cores, a full run and an incremental
// one: both datasets must hold the same bodies and hashes. A record the
// text path declines fails the run as the decoded path does, naming it,
// with nothing of its batch written.
func TestJQTextPathStoresWhatGojqStores(t *testing.T) {
	var in strings.Builder
	for i := range 100 {
		a := fmt.Sprintf(`{"b":%d.50,"c":"x"}`, i)
		if i%9 == 0 {
			a = "null"
		}
		fmt.Fprintf(&in, `{"_id":"e%03d","a":%s,"name":"N\u00e9 %d","_deleted":%v,"z":[1,{"k":"v"}]}`+"\n", i, a, i, i%17 == 0)
	}
	config := `[
	 {"_id":"load","type":"pipe","source":{"type":"json","url":"in.json"}},
	 {"_id":"text","type":"pipe","batch_size":7,"source":{"type":"dataset","dataset":"load"},"transform":{"type":"jq","expression":". + {x: .a.b, y: {n: .name, u: ._updated}} | del(.z)"}},
	 {"_id":"decoded","type":"pipe","batch_size":7,"source":{"type":"dataset","dataset":"load"},"transform":{"type":"jq","expression":". + {x: (.a | .b), y: {n: .name, u: ._updated}} | del(.z)"}}
	]`
	e := setup(t, config, map[string]string{"in.json": in.String()})
	e.mustRun("load")
	same := func() {
		t.Helper()
		for _, p := range []string{"text", "decoded"} {
			if rec := e.mustRun(p); rec.Read == 0 {
				t.Fatalf("%s read nothing", p)
			}
		}
		hashes := func(ds string) string {
			var out []string
			e.store.Scan(context.Background(), ds, engine.ScanOptions{}, func(r engine.Record) error {
				out = append(out, fmt.Sprintf("%s %s %v %s", r.ID, r.Hash, r.Deleted, r.Body))
				return nil
			})
			return strings.Join(out, "\n")
		}
		if a, b := hashes("text"), hashes("decoded"); a != b || a == "" {
			t.Fatalf("text path:\n%s\ndecoded path:\n%s", a, b)
		}
	}
	same()
	if got := e.bodies("text"); !strings.Contains(got, `{"_id":"e001","a":{"b":1.50,"c":"x"},"name":"Né 1","x":1.50,"y":{"n":"Né 1","u":`) {
		t.Fatalf("text dataset:\n%s", got)
	}
	// Change some entities: the incremental runs read only those.
	in.Reset()
	for i := range 10 {
		fmt.Fprintf(&in, `{"_id":"e%03d","a":{"b":%d},"name":"changed"}`+"\n", i*10, i)
	}
	os.WriteFile(filepath.Join(e.dir, "in.json"), []byte(in.String()), 0o644)
	loadAll := func() {
		t.Helper()
		if _, err := e.eng.Run(context.Background(), "load", engine.RunOptions{AcceptDeletes: true}); err != nil {
			t.Fatal(err)
		}
	}
	loadAll() // a full run: the others are deleted
	same()

	// A record the text path cannot map (a path through a string) fails
	// the run as gojq does.
	os.WriteFile(filepath.Join(e.dir, "in.json"), []byte(`{"_id":"e000","a":{"b":1}}`+"\n"+`{"_id":"e010","a":"str"}`+"\n"), 0o644)
	loadAll()
	before := e.bodies("text")
	_, errText := e.run("text")
	_, errDecoded := e.run("decoded")
	if errText == nil || errDecoded == nil || errText.Error() != strings.ReplaceAll(errDecoded.Error(), `"decoded"`, `"text"`) {
		t.Fatalf("errors:\ntext    %v\ndecoded %v", errText, errDecoded)
	}
	if !strings.Contains(errText.Error(), `entity "e010"`) {
		t.Fatalf("error does not name the entity: %v", errText)
	}
	if e.bodies("text") != before {
		t.Fatal("the failed run wrote part of its batch")
	}
}

// TestJQTextPathFromText: a json source's text goes through jq's text
// path (its canonical form, every key kept, no record keys) and stores
// what the decoded path stores: unsorted keys, white space, duplicate
// keys, reserved keys the program reads, no _id in the input, escapes.
// A line the text path declines is transformed in its place; one that
// fails fails the run as on the decoded path.
func TestJQTextPathFromText(t *testing.T) {
	var in strings.Builder
	for i := range 60 {
		fmt.Fprintf(&in, `{ "id" : %d, "name":"N\u00e9 %d", "_links": {"self": "/c/%d"}, "a": {"b": %d.50}, "name": "dup %d", "_updated": "u%d", "_id": "\u0069d%d" }`+"\n", i, i, i, i, i, i, i)
	}
	in.WriteString(`{"_id": "x", "id": 61, "a": null}` + "\n")
	config := `[
	 {"_id":"text","type":"pipe","batch_size":7,"source":{"type":"json","url":"in.json"},"transform":{"type":"jq","expression":"{_id: (\"c-\" + .name), l: ._links.self, b: .a.b, u: ._updated, all: .}"}},
	 {"_id":"decoded","type":"pipe","batch_size":7,"source":{"type":"json","url":"in.json"},"transform":{"type":"jq","expression":"{_id: (\"c-\" + .name), l: ._links.self, b: (.a | .b), u: ._updated, all: .}"}}
	]`
	e := setup(t, config, map[string]string{"in.json": in.String()})
	for _, p := range []string{"text", "decoded"} {
		rec := e.mustRun(p)
		if rec.Read != 61 || rec.Written != 61 {
			t.Fatalf("%s: %+v", p, rec)
		}
	}
	if a, b := e.bodies("text"), e.bodies("decoded"); a != b || !strings.Contains(a, `{"_id":"c-dup 3","all":{"_id":"id3","_links":{"self":"/c/3"},"_updated":"u3","a":{"b":3.50},"id":3,"name":"dup 3"},"b":3.50,"l":"/c/3","u":"u3"}`) {
		t.Fatalf("text path:\n%s\ndecoded path:\n%s", a, b)
	}
	// A path through a string: gojq's error, naming the entity; an
	// entity without _id: the source's error.
	cfg2 := strings.ReplaceAll(config, `b: .a.b`, `b: .a.b.c`)
	cfg2 = strings.ReplaceAll(cfg2, `b: (.a | .b)`, `b: (.a | .b.c)`)
	e2 := setup(t, cfg2, map[string]string{"in.json": `{"_id":"x","name":"n","a":{"b":{"c":1}}}` + "\n" + `{"_id":"y","name":"m","a":"str"}` + "\n"})
	_, errText := e2.run("text")
	_, errDecoded := e2.run("decoded")
	if errText == nil || errDecoded == nil || errText.Error() != strings.ReplaceAll(errDecoded.Error(), `"decoded"`, `"text"`) {
		t.Fatalf("errors:\ntext    %v\ndecoded %v", errText, errDecoded)
	}
	if e2.bodies("text") != "" {
		t.Fatal("the failed run wrote part of its batch")
	}
	e3 := setup(t, config, map[string]string{"in.json": `{"_id":"x","name":"n"}` + "\n" + `{"name":"m"}` + "\n"})
	_, errText = e3.run("text")
	_, errDecoded = e3.run("decoded")
	if errText == nil || errDecoded == nil || errText.Error() != strings.ReplaceAll(errDecoded.Error(), `"decoded"`, `"text"`) || !strings.Contains(errText.Error(), "entity 2: entity has no _id") {
		t.Fatalf("errors:\ntext    %v\ndecoded %v", errText, errDecoded)
	}
}
