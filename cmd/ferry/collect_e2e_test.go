package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// powerOfficeGoDir is a verbatim copy of the public powerofficego connector
// (manifest.json and templates/ of /work/shared/connectors), so that the
// end-to-end test runs without the corpus; TestPowerOfficeGoCopyIsVerbatim
// keeps it identical while the corpus is present.
const powerOfficeGoDir = "testdata/powerofficego-connector"

// Credentials of the fake PowerOffice Go: the application key is the OAuth2
// client id (a connector parameter), api_key the client secret (a Ferry
// secret that must never be printed).
const (
	pogApplicationKey = "pog-application-key"
	pogAPIKey         = "pog-api-key-7f3a9c51e2"
)

// cliSession runs in-process CLI commands against one data directory and
// keeps everything they printed.
type cliSession struct {
	t      *testing.T
	data   string
	output strings.Builder
}

// run runs args with --data and fails the test unless the exit code is ok.
func (s *cliSession) run(args ...string) string {
	s.t.Helper()
	code, out, errOut := runCLIWith(s.t, runOpts{}, append(args, "--data="+s.data)...)
	// Only what ferry printed: the connect command line itself holds the
	// secret.
	fmt.Fprintf(&s.output, "$ ferry %s ...\n%s%s", args[0], out, errOut)
	if code != exitOK {
		s.t.Fatalf("ferry %s: exit %d\n%s%s", args[0], code, out, errOut)
	}
	return out
}

// entities is `ferry dataset show NAME --json` by _id.
func (s *cliSession) entities(dataset string) map[string]map[string]any {
	s.t.Helper()
	var list []map[string]any
	decodeCLIJSON(s.t, s.run("dataset", "show", dataset, "--json", "--limit", "100000"), &list)
	out := make(map[string]map[string]any, len(list))
	for _, e := range list {
		out[e["_id"].(string)] = e
	}
	return out
}

// lastRun is the newest record of `ferry pipe log NAME --json`.
func (s *cliSession) lastRun(pipe string) pipeRun {
	s.t.Helper()
	var runs []pipeRun
	decodeCLIJSON(s.t, s.run("pipe", "log", pipe, "--json", "--limit", "1"), &runs)
	if len(runs) != 1 {
		s.t.Fatalf("pipe log %s: %d runs", pipe, len(runs))
	}
	return runs[0]
}

// since is the pipe's stored since token (`ferry pipes --json`).
func (s *cliSession) since(pipe string) string {
	s.t.Helper()
	var pipes []struct {
		Pipe  string `json:"pipe"`
		State struct {
			Since string `json:"since"`
		} `json:"state"`
	}
	decodeCLIJSON(s.t, s.run("pipes", "--json"), &pipes)
	for _, p := range pipes {
		if p.Pipe == pipe {
			return p.State.Since
		}
	}
	s.t.Fatalf("pipe %s not listed", pipe)
	return ""
}

// pipeRun is the part of a run record the test checks.
type pipeRun struct {
	SyncType  string `json:"sync_type"`
	Read      int    `json:"read"`
	Written   int    `json:"written"`
	Unchanged int    `json:"unchanged"`
	Deleted   int    `json:"deleted"`
	Error     string `json:"error"`
}

func decodeCLIJSON(t *testing.T, text string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %q: %v", text, err)
	}
}

// pogCustomer is a customer as PowerOffice Go's v2 API lists it (the
// connector reads id and lastChanged; the rest is carried as collected).
func pogCustomer(id int, name string, changed time.Time) map[string]any {
	return map[string]any{
		"id":           json.Number(strconv.Itoa(id)),
		"code":         json.Number(strconv.Itoa(10000 + id)),
		"name":         name,
		"emailAddress": fmt.Sprintf("post@customer%d.example.no", id),
		"vatNumber":    fmt.Sprintf("NO9%08dMVA", id),
		"isArchived":   false,
		"mailAddress":  map[string]any{"address1": fmt.Sprintf("Strandkaien %d", id), "zipCode": "5013", "city": "Bergen", "countryCode": "NO"},
		"lastChanged":  changed.Format("2006-01-02T15:04:05.000Z"),
	}
}

// pogProduct is a product as PowerOffice Go lists it, with decimal prices
// whose text must survive unchanged.
func pogProduct(id int, changed time.Time) map[string]any {
	return map[string]any{
		"id":          json.Number(strconv.Itoa(id)),
		"code":        fmt.Sprintf("P-%03d", id),
		"name":        fmt.Sprintf("Product %d", id),
		"salesPrice":  json.Number(fmt.Sprintf("%d.90", 100*id)),
		"costPrice":   json.Number(fmt.Sprintf("%d.125", 40*id)),
		"unit":        "stk",
		"isActive":    true,
		"lastChanged": changed.Format("2006-01-02T15:04:05.000Z"),
	}
}

// day is 08:00 UTC on the n-th day after 2024-01-01.
func day(n int) time.Time { return time.Date(2024, 1, 1+n, 8, 0, 0, 0, time.UTC) }

// TestConnectPowerOfficeGoCollect is the end-to-end acceptance test of the
// REST collect side, as a user runs it: the unmodified powerofficego
// connector is connected with `ferry connect` (parameters base_url and
// application_key, secret api_key) against fakeapi shaped like PowerOffice
// Go (OAuth2 client credentials at base_url/OAuth/Token, OData $filter on
// LastChanged, $top/$skip paging from the X-Sesam-Page header, items under
// "data"), and `ferry run` fills the customer and product -collect datasets
// through the rest source and transform-collect-rest. Then: a second run
// changes nothing, an incremental run picks up exactly the records changed
// upstream through since, an incremental run does not see upstream deletes
// but a full run (`ferry run --reset`) marks them deleted and leaves the
// other entities untouched.
func TestConnectPowerOfficeGoCollect(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{Auth: fakeapi.AuthBearer, ClientID: pogApplicationKey, ClientSecret: pogAPIKey})
	// 45 customers (three pages of $top=20) and 7 products, each changed
	// on its own day, so that the date since token selects few records.
	for i := 1; i <= 45; i++ {
		mustPut(t, api, "Customer", pogCustomer(i, fmt.Sprintf("Kunde %d AS", i), day(i)))
	}
	for i := 1; i <= 7; i++ {
		mustPut(t, api, "Product", pogProduct(i, day(i)))
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	s := &cliSession{t: t, data: t.TempDir()}
	conn, err := filepath.Abs(powerOfficeGoDir)
	if err != nil {
		t.Fatal(err)
	}
	out := s.run("connect", conn, "--system", "pog", "--param", "base_url="+srv.URL+"/api",
		"--param", "application_key="+pogApplicationKey, "--secret", "api_key="+pogAPIKey, "--datatypes", "customer,product")
	if !strings.Contains(out, "connected pog: "+conn+" (4 pipes, 1 system), datatypes customer,product, share none") {
		t.Fatalf("connect: %s", out)
	}
	if api.Stats().Requests != 0 {
		t.Errorf("connect sent %d requests to the API", api.Stats().Requests)
	}

	// Run 1: full collect of both datatypes (no CONFIG: the instance).
	s.run("run")
	st := api.Stats()
	if st.TokensIssued != 1 || st.TokenErrors != 0 || st.Unauthorized != 0 {
		t.Errorf("oauth2 after the first run: %+v", st)
	}
	var skips []string
	for _, r := range api.Requests() {
		switch {
		case strings.EqualFold(r.Path, "/api/OAuth/Token"):
			continue
		case !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
			t.Errorf("%s %s without a bearer token", r.Method, r.Path)
		}
		q, _ := url.ParseQuery(r.RawQuery)
		if q.Get("$filter") != "(LastChanged ge datetimeoffset'1970-01-01')" {
			t.Errorf("first run %s $filter %q", r.Path, q.Get("$filter"))
		}
		if r.Path == "/api/Customer" {
			skips = append(skips, q.Get("$skip")+"@"+r.Header.Get("X-Sesam-Page"))
		}
	}
	if got := strings.Join(skips, ","); got != "0@1,20@2,40@3,60@4" {
		t.Errorf("customer pages ($skip@X-Sesam-Page) = %s", got)
	}
	checkCollect(t, s.entities("pog-customer-collect"), api.Records("Customer"))
	checkCollect(t, s.entities("pog-product-collect"), api.Records("Product"))
	for pipe, n := range map[string]int{"pog-customer-collect": 45, "pog-product-collect": 7} {
		if r := s.lastRun(pipe); r.SyncType != "full" || r.Read != n || r.Written != n || r.Error != "" {
			t.Errorf("first run of %s = %+v", pipe, r)
		}
	}
	// The since token is the newest lastChanged, truncated to its date by
	// the connector's updated_expression.
	if got := s.since("pog-customer-collect"); got != "2024-02-15" {
		t.Errorf("customer since = %q", got)
	}
	// The shim pipe carries the collected entities on with $based_on.
	if tr := s.entities("pog-customer-transform")["17"]; tr == nil || tr["$based_on"] == nil || tr["name"] != "Kunde 17 AS" {
		t.Errorf("pog-customer-transform 17 = %v", tr)
	}

	// Run 2: nothing changed upstream; the since filter returns only the
	// records of the newest day, and nothing is written.
	api.ResetStats()
	s.run("run")
	for pipe, want := range map[string]string{"pog-customer-collect": "2024-02-15", "pog-product-collect": "2024-01-08"} {
		if r := s.lastRun(pipe); r.SyncType != "incremental" || r.Read != 1 || r.Written != 0 || r.Deleted != 0 {
			t.Errorf("second run of %s = %+v", pipe, r)
		}
		if got := s.since(pipe); got != want {
			t.Errorf("%s since after the second run = %q, want %q", pipe, got, want)
		}
	}
	for _, r := range api.Requests() {
		if q, _ := url.ParseQuery(r.RawQuery); r.Path == "/api/Customer" && q.Get("$filter") != "(LastChanged ge datetimeoffset'2024-02-15')" {
			t.Errorf("second run $filter %q", q.Get("$filter"))
		}
	}
	if st := api.Stats(); st.RecordsServed != 2 || st.TokensIssued != 1 {
		t.Errorf("second run stats %+v", st)
	}

	// Run 3: customer 10 changes and customer 46 is created upstream; the
	// incremental run writes exactly those two.
	before := s.entities("pog-customer-collect")
	changed := pogCustomer(10, "Kunde 10 AS (ny adresse)", time.Date(2024, 3, 1, 9, 30, 0, 0, time.UTC))
	changed["mailAddress"] = map[string]any{"address1": "Torgallmenningen 2", "zipCode": "5014", "city": "Bergen", "countryCode": "NO"}
	mustPut(t, api, "Customer", changed)
	mustPut(t, api, "Customer", pogCustomer(46, "Kunde 46 AS", time.Date(2024, 3, 2, 10, 0, 0, 0, time.UTC)))
	s.run("run")
	if r := s.lastRun("pog-customer-collect"); r.SyncType != "incremental" || r.Read != 3 || r.Written != 2 || r.Unchanged != 1 {
		t.Errorf("run after the change = %+v", r)
	}
	if r := s.lastRun("pog-product-collect"); r.Written != 0 {
		t.Errorf("product run after a customer change = %+v", r)
	}
	after := s.entities("pog-customer-collect")
	checkCollect(t, after, api.Records("Customer"))
	for id, e := range before {
		if id != "10" && e["_updated"] != after[id]["_updated"] {
			t.Errorf("customer %s got a new version: %v -> %v", id, e["_updated"], after[id]["_updated"])
		}
	}
	if addr, _ := after["10"]["mailAddress"].(map[string]any); addr["address1"] != "Torgallmenningen 2" {
		t.Errorf("changed customer 10 = %v", after["10"])
	}
	if got := s.since("pog-customer-collect"); got != "2024-03-02" {
		t.Errorf("customer since after the change = %q", got)
	}

	// Customer 3 and product 2 are deleted upstream. An incremental run
	// cannot see that (the API lists live records changed since the token).
	if !api.Delete("Customer", 3) || !api.Delete("Product", 2) {
		t.Fatal("deleting upstream")
	}
	s.run("run")
	if e := s.entities("pog-customer-collect")["3"]; e == nil || e["_deleted"] == true {
		t.Errorf("an incremental run deleted customer 3: %v", e)
	}
	before = s.entities("pog-customer-collect")
	beforeProducts := s.entities("pog-product-collect")

	// Run 5: a full sync (--reset) marks the upstream deletes deleted and
	// leaves every other entity as it was.
	s.run("run", "--reset")
	if r := s.lastRun("pog-customer-collect"); r.SyncType != "full" || r.Read != 45 || r.Written != 0 || r.Deleted != 1 {
		t.Errorf("full customer run after the delete = %+v", r)
	}
	if r := s.lastRun("pog-product-collect"); r.SyncType != "full" || r.Read != 6 || r.Written != 0 || r.Deleted != 1 {
		t.Errorf("full product run after the delete = %+v", r)
	}
	for dataset, gone := range map[string]string{"pog-customer-collect": "3", "pog-product-collect": "2"} {
		was := before
		if dataset == "pog-product-collect" {
			was = beforeProducts
		}
		now := s.entities(dataset)
		if len(now) != len(was) {
			t.Errorf("%s: %d entities, had %d", dataset, len(now), len(was))
		}
		for id, e := range now {
			switch {
			case id == gone:
				if e["_deleted"] != true {
					t.Errorf("%s %s not deleted: %v", dataset, id, e)
				}
			case e["_deleted"] == true || e["_updated"] != was[id]["_updated"]:
				t.Errorf("%s %s changed by the full run: %v -> %v", dataset, id, was[id], e)
			}
		}
	}
	if e := s.entities("pog-customer-transform")["3"]; e == nil || e["_deleted"] != true {
		t.Errorf("the delete did not reach pog-customer-transform: %v", e)
	}
	live := s.entities("pog-customer-collect")
	delete(live, "3")
	checkCollect(t, live, api.Records("Customer"))

	// Run 6: after the full run the since token is back and nothing changes.
	s.run("run")
	if r := s.lastRun("pog-customer-collect"); r.SyncType != "incremental" || r.Read != 1 || r.Written != 0 || r.Deleted != 0 {
		t.Errorf("run after the full run = %+v", r)
	}

	// The api_key secret reached the token endpoint but never any output
	// or the store file.
	tokenReqs := 0
	for _, r := range api.Requests() {
		if strings.EqualFold(r.Path, "/api/OAuth/Token") {
			tokenReqs++
		}
	}
	if tokenReqs == 0 || api.Stats().TokensIssued == 0 {
		t.Errorf("no token requests in the last run")
	}
	if strings.Contains(s.output.String(), pogAPIKey) {
		t.Errorf("the api_key secret appears in CLI output:\n%s", s.output.String())
	}
	db, err := os.ReadFile(filepath.Join(s.data, "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(db, []byte(pogAPIKey)) {
		t.Error("the api_key secret is stored in clear in ferry.db")
	}
}

func mustPut(t *testing.T, api *fakeapi.API, collection string, rec map[string]any) {
	t.Helper()
	if _, err := api.Put(collection, rec); err != nil {
		t.Fatal(err)
	}
}

// checkCollect asserts that a -collect dataset holds exactly the live
// upstream records, each with _id = its id and the record's fields as the
// API served them (numbers by their text), and no $origin (nothing has been
// shared).
func checkCollect(t *testing.T, got map[string]map[string]any, records []map[string]any) {
	t.Helper()
	var want []string
	for _, rec := range records {
		id := string(rec["id"].(json.Number))
		want = append(want, id)
		e, ok := got[id]
		if !ok {
			t.Errorf("record %s missing", id)
			continue
		}
		if e["_deleted"] == true {
			t.Errorf("record %s deleted", id)
		}
		data := maps.Clone(e)
		for k := range data {
			if strings.HasPrefix(k, "_") {
				delete(data, k)
			}
		}
		g, _ := json.Marshal(data)
		w, _ := json.Marshal(rec)
		if !bytes.Equal(g, w) {
			t.Errorf("entity %s\n got %s\nwant %s", id, g, w)
		}
	}
	if len(got) != len(records) {
		ids := slices.Sorted(maps.Keys(got))
		t.Errorf("dataset has %d entities %v, want %d %v", len(got), ids, len(records), want)
	}
}

// TestPowerOfficeGoCopyIsVerbatim keeps testdata/powerofficego-connector
// identical to the corpus copy when the corpus is present.
func TestPowerOfficeGoCopyIsVerbatim(t *testing.T) {
	corpus := "../../../shared/connectors/powerofficego-connector"
	if _, err := os.Stat(corpus); err != nil {
		t.Skipf("connector corpus not available: %v", err)
	}
	var files []string
	err := filepath.WalkDir(corpus, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(corpus, p)
		if rel != "expanded.json" {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("corpus files %v", files)
	}
	for _, rel := range files {
		want, err := os.ReadFile(filepath.Join(corpus, rel))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(powerOfficeGoDir, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from the corpus (%v)", rel, err)
		}
	}
}
