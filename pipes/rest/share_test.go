package rest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/pipes"
	"github.com/ferrydata/ferry/pipes/rest"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
	"github.com/ferrydata/ferry/sinks"
)

// shareEnv is a CRM on fakeapi (collection "customers") with a connector
// in the contract's shape: crm-customer-collect (REST list +
// transform-collect-rest), crm-customer-transform (the desired state, an
// embedded source the test rewrites each round, as an upstream mapping
// pipe would) and crm-customer-share (transform-share-rest). The store
// lives across rounds; each round recompiles the config.
type shareEnv struct {
	t     testing.TB
	api   *fakeapi.API
	srv   *httptest.Server
	dir   string
	store *boltstore.Store
	eng   *engine.Engine
	// props are extra transform-share-rest properties, pump the share
	// pipe's pump object, ops the system's operations (JSON fragments).
	props, pump, ops string
	// readTimeout is the system's read_timeout in seconds (default 2).
	readTimeout int
}

const shareOps = `{
   "list": {"url": "customers", "payload_property": "data", "params": {"limit": "1000"}, "next_page_link": "{{ body.nextPageUrl }}"},
   "lookup": {"url": "customers/{{ entity.id }}"},
   "insert": {"method": "POST", "url": "customers"},
   "update": {"method": "PUT", "url": "customers/{{ entity.id }}"},
   "delete": {"method": "DELETE", "url": "customers/{{ entity.id }}"},
   "find-inserted": {"url": "customers", "params": {"filter[externalRef]": "{{ entity._id }}"}, "payload_property": "data"}}`

func newShareEnv(t testing.TB, apiOpts fakeapi.Options, props string) *shareEnv {
	return newShareEnvSync(t, apiOpts, props, false)
}

// newShareEnvSync is newShareEnv with fsync on commits when sync is set.
func newShareEnvSync(t testing.TB, apiOpts fakeapi.Options, props string, sync bool) *shareEnv {
	t.Helper()
	e := &shareEnv{t: t, api: fakeapi.New(apiOpts), dir: t.TempDir(), props: props, pump: "{}", ops: shareOps}
	e.srv = httptest.NewServer(e.api.Handler())
	t.Cleanup(e.srv.Close)
	s, err := boltstore.Open(filepath.Join(e.dir, "data"), boltstore.Options{NoSync: !sync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e.store = s
	e.compile(nil)
	return e
}

func (e *shareEnv) config(desired []map[string]any) string {
	if desired == nil {
		desired = []map[string]any{}
	}
	props := e.props
	if props != "" {
		props = "," + props
	}
	timeout := e.readTimeout
	if timeout == 0 {
		timeout = 2
	}
	return `[
 {"_id": "crm", "type": "system:rest", "url_pattern": "` + e.srv.URL + `/api/%s", "worker_threads": 8, "read_timeout": ` + strconv.Itoa(timeout) + `,
  "operations": ` + e.ops + `},
 {"_id": "crm-customer-collect", "type": "pipe",
  "source": {"type": "rest", "system": "crm", "operation": "list", "id_expression": "{{ id }}"},
  "transform": {"type": "template", "template": "transform-collect-rest",
   "properties": {"primary_key": "id", "share_dataset": "crm-customer-share"}}},
 {"_id": "crm-customer-transform", "type": "pipe", "source": {"type": "embedded", "entities": ` + jsonText(desired) + `}},
 {"_id": "crm-customer-share", "type": "pipe", "batch_size": 1, "pump": ` + e.pump + `,
  "source": {"type": "dataset", "dataset": "crm-customer-transform"},
  "transform": {"type": "template", "template": "transform-share-rest",
   "properties": {"rest_system": "crm", "primary_key": "id", "share_dataset": "crm-customer-share"` + props + `}},
  "sink": {"deletion_tracking": false, "set_initial_offset": "onload"}}
]`
}

func (e *shareEnv) compile(desired []map[string]any) {
	e.t.Helper()
	plan, err := compileText(e.t, e.config(desired))
	if err != nil {
		e.t.Fatal(err)
	}
	e.eng = engine.New(e.store, plan, nil)
}

func shareRegistry() *engine.Registry {
	reg := engine.NewRegistry()
	pipes.Register(reg)
	pipes.RegisterCollect(reg)
	sinks.Register(reg)
	rest.Register(reg)
	return reg
}

func compileText(t testing.TB, text string) (*engine.Plan, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadConfig([]string{dir}, engine.EnvFrom(nil))
	if err != nil {
		return nil, err
	}
	return engine.Compile(cfg, shareRegistry(), nil)
}

func (e *shareEnv) run(pipe string, opts engine.RunOptions) (engine.RunRecord, error) {
	return e.eng.Run(context.Background(), pipe, opts)
}

func (e *shareEnv) mustRun(pipe string) engine.RunRecord {
	e.t.Helper()
	rec, err := e.run(pipe, engine.RunOptions{})
	if err != nil {
		e.t.Fatalf("run %s: %v", pipe, err)
	}
	return rec
}

// round sets the desired state and runs the transform and share pipes,
// returning the share run.
func (e *shareEnv) round(desired []map[string]any) (engine.RunRecord, error) {
	e.t.Helper()
	e.compile(desired)
	e.mustRun("crm-customer-transform")
	return e.run("crm-customer-share", engine.RunOptions{})
}

// entities returns a dataset's latest versions by _id (deleted included).
func (e *shareEnv) entities(ds string) map[string]map[string]any {
	e.t.Helper()
	out := map[string]map[string]any{}
	_, err := e.store.Scan(context.Background(), ds, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		v, err := r.Entity()
		out[r.ID] = v
		return err
	})
	if err != nil && !strings.Contains(err.Error(), "no dataset") {
		e.t.Fatal(err)
	}
	return out
}

// desired builds the desired state from the collect dataset: every live
// collected customer with its mapped properties (id, name, email) and
// $based_on as collected, then edit changes it (nil drops it).
func (e *shareEnv) desired(edit func(id string, ent map[string]any) map[string]any) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	coll := e.entities("crm-customer-collect")
	ids := make([]string, 0, len(coll))
	for id := range coll {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c := coll[id]
		if c["_deleted"] == true {
			continue
		}
		ent := map[string]any{"_id": id, "id": c["id"], "name": c["name"], "email": c["email"],
			"$based_on": map[string]any{"id": c["id"], "name": c["name"], "email": c["email"]}}
		if o, ok := c["$origin"]; ok {
			ent["$origin"] = o
		}
		if edit != nil {
			if ent = edit(id, ent); ent == nil {
				continue
			}
		}
		out = append(out, ent)
	}
	return out
}

// writes returns the logged write requests (POST, PUT, PATCH, DELETE).
func (e *shareEnv) writes() []string {
	var out []string
	for _, r := range e.api.Requests() {
		if r.Method != "GET" {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

func (e *shareEnv) putCustomer(id int, name string) {
	e.t.Helper()
	if _, err := e.api.Put("customers", map[string]any{"id": json.Number(fmt.Sprint(id)), "name": name,
		"email": strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.com"}); err != nil {
		e.t.Fatal(err)
	}
}

// newCustomer is a desired entity that originates elsewhere (an ERP) and
// must be inserted into the CRM.
func newCustomer(origin, name string) map[string]any {
	return map[string]any{"_id": origin, "$ids": []any{"~:" + origin}, "$origin": "~:" + origin,
		"name": name, "email": "info@" + strings.ToLower(strings.ReplaceAll(name, " ", "")) + ".example", "externalRef": origin}
}

func shareCounts(t testing.TB, rec engine.RunRecord) engine.ShareCounts {
	t.Helper()
	if rec.Share == (engine.ShareCounts{}) {
		t.Logf("run record has no share counts: %+v", rec)
	}
	return rec.Share
}

// TestShareLoop runs the whole contract loop against the fake API:
// collect, a change of the desired state upstream (an update and an
// insert), share, collect again. The collect dataset then carries $origin
// on the inserted record, and the next round, whose desired state comes
// from the new collect, sends nothing at all.
func TestShareLoop(t *testing.T) {
	e := newShareEnv(t, fakeapi.Options{}, "")
	for i := 1; i <= 5; i++ {
		e.putCustomer(i, fmt.Sprintf("Customer %d", i))
	}
	e.mustRun("crm-customer-collect")

	// Round 1: the desired state equals the system: nothing is sent.
	e.api.ResetStats()
	rec, err := e.round(e.desired(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c := shareCounts(t, rec); c.SkippedUnchanged != 5 || c.Requests != 0 || len(e.api.Requests()) != 0 {
		t.Fatalf("unchanged round: %+v, %d requests", c, len(e.api.Requests()))
	}

	// Round 2: customer 3 is renamed upstream and an ERP customer is new.
	e.api.ResetStats()
	want := e.desired(func(id string, ent map[string]any) map[string]any {
		if id == "3" {
			ent["name"] = "Customer 3 (renamed)"
		}
		return ent
	})
	want = append(want, newCustomer("erp-customer:77", "Fjord Shipping"))
	rec, err = e.round(want)
	if err != nil {
		t.Fatal(err)
	}
	c := shareCounts(t, rec)
	if c.Updated != 1 || c.Inserted != 1 || c.Failed != 0 {
		t.Fatalf("round 2 counts %+v", c)
	}
	if got := strings.Join(e.writes(), ", "); got != "POST /api/customers, PUT /api/customers/3" && got != "PUT /api/customers/3, POST /api/customers" {
		t.Errorf("writes = %s", got)
	}
	if r, _ := e.api.Get("customers", 3); r["name"] != "Customer 3 (renamed)" {
		t.Errorf("customer 3 in the CRM = %v", r)
	}
	share := e.entities("crm-customer-share")
	ins := share["erp-customer:77"]
	if ins["$last_operation"] != "insert" || ins["$success"] != true || ins["$origin"] != "~:erp-customer:77" || ins["$generated_id"] == nil {
		t.Fatalf("share record of the insert = %v", ins)
	}
	gid := ins["$generated_id"].(json.Number).String()
	if u := share["3"]; u["$last_operation"] != "update" || u["$success"] != true {
		t.Errorf("share record of the update = %v", u)
	}
	if records := e.api.Records("customers"); len(records) != 6 {
		t.Errorf("CRM has %d customers, want 6", len(records))
	}

	// Collect again: the inserted record comes back with $origin.
	e.mustRun("crm-customer-collect")
	coll := e.entities("crm-customer-collect")
	if coll[gid]["$origin"] != "~:erp-customer:77" {
		t.Fatalf("collected inserted record %s = %v, want $origin", gid, coll[gid])
	}

	// Round 3: the desired state is the new collect (fresh $based_on) plus
	// the ERP entity, still without a CRM id: nothing is sent, not even a
	// lookup.
	e.api.ResetStats()
	rec, err = e.round(append(e.desired(nil), newCustomer("erp-customer:77", "Fjord Shipping")))
	if err != nil {
		t.Fatal(err)
	}
	c = shareCounts(t, rec)
	if n := len(e.api.Requests()); n != 0 || c.Inserted+c.Updated+c.Deleted != 0 {
		t.Errorf("round 3 sent %d requests, counts %+v", n, c)
	}
	if c.SkippedOther != 0 && e.entities("crm-customer-share")["erp-customer:77"]["$last_operation"] != "insert" {
		t.Errorf("the insert's record changed: %v", e.entities("crm-customer-share")["erp-customer:77"])
	}
	// A full rescan of the share pipe still sends nothing: every entity
	// is unchanged or already inserted.
	e.api.ResetStats()
	rec, err = e.run("crm-customer-share", engine.RunOptions{Reset: true})
	if err != nil {
		t.Fatal(err)
	}
	c = shareCounts(t, rec)
	if n := len(e.api.Requests()); n != 0 || c.SkippedUnchanged != 6 || c.SkippedOther != 1 {
		t.Errorf("rescan: %d requests, counts %+v", n, c)
	}
}

// TestShareLostWritePrevented: a record edited in the system after it was
// collected is never overwritten; the next round, based on the new
// collect, writes the desired change on top of the system's.
func TestShareLostWritePrevented(t *testing.T) {
	e := newShareEnv(t, fakeapi.Options{}, "")
	e.putCustomer(1, "Acme")
	e.putCustomer(2, "Bolt")
	e.mustRun("crm-customer-collect")
	// Someone edits customer 1's email in the CRM after the collect.
	if _, err := e.api.Patch("customers", 1, map[string]any{"email": "sales@acme.example"}); err != nil {
		t.Fatal(err)
	}
	e.api.ResetStats()
	rec, err := e.round(e.desired(func(id string, ent map[string]any) map[string]any {
		ent["name"] = ent["name"].(string) + " AS"
		return ent
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := shareCounts(t, rec)
	if c.SkippedModified != 1 || c.Updated != 1 {
		t.Fatalf("counts %+v", c)
	}
	r1, _ := e.api.Get("customers", 1)
	if r1["name"] != "Acme" || r1["email"] != "sales@acme.example" {
		t.Errorf("customer 1 was overwritten: %v", r1)
	}
	if rec := e.entities("crm-customer-share")["1"]; rec["$last_operation"] != "discard-modified-in-system" || !strings.Contains(rec["$reason"].(string), "email") {
		t.Errorf("share record of 1 = %v", rec)
	}
	if got := e.writes(); !slices.Equal(got, []string{"PUT /api/customers/2"}) {
		t.Errorf("writes = %v", got)
	}
	// Next round: the collect brings the CRM's edit in; the rename goes
	// through and keeps the CRM's email.
	e.mustRun("crm-customer-collect")
	rec, err = e.round(e.desired(func(id string, ent map[string]any) map[string]any {
		if id == "1" {
			ent["name"] = "Acme AS"
		}
		return ent
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c := shareCounts(t, rec); c.Updated != 1 {
		t.Errorf("second round counts %+v", c)
	}
	if r1, _ := e.api.Get("customers", 1); r1["name"] != "Acme AS" || r1["email"] != "sales@acme.example" {
		t.Errorf("customer 1 after the second round = %v", r1)
	}
	// $unsafe_skip_optimistic_locking overrides the check.
	e.mustRun("crm-customer-collect")
	if _, err := e.api.Patch("customers", 2, map[string]any{"email": "x@bolt.example"}); err != nil {
		t.Fatal(err)
	}
	if _, err = e.round(e.desired(func(id string, ent map[string]any) map[string]any {
		if id == "2" {
			ent["name"] = "Bolt Forced"
			ent["$unsafe_skip_optimistic_locking"] = true
		}
		return ent
	})); err != nil {
		t.Fatal(err)
	}
	if r2, _ := e.api.Get("customers", 2); r2["name"] != "Bolt Forced" {
		t.Errorf("unsafe update not written: %v", r2)
	}
}

// TestShareDeletes: a delete with a primary key is sent; a $replaced
// delete sends nothing; a delete of an entity never inserted sends
// nothing.
func TestShareDeletes(t *testing.T) {
	e := newShareEnv(t, fakeapi.Options{}, "")
	for i := 1; i <= 3; i++ {
		e.putCustomer(i, fmt.Sprintf("C%d", i))
	}
	e.mustRun("crm-customer-collect")
	if _, err := e.round(e.desired(nil)); err != nil {
		t.Fatal(err)
	}
	e.api.ResetStats()
	rec, err := e.round(e.desired(func(id string, ent map[string]any) map[string]any {
		switch id {
		case "1":
			ent["_deleted"] = true
		case "2":
			ent["_deleted"], ent["$replaced"] = true, true
		}
		return ent
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := shareCounts(t, rec)
	if c.Deleted != 1 || c.SkippedReplaced != 1 {
		t.Fatalf("counts %+v", c)
	}
	// The delete was looked up first ($based_on), then sent; the replaced
	// one sent nothing.
	if got := e.writes(); !slices.Equal(got, []string{"DELETE /api/customers/1"}) {
		t.Errorf("writes = %v", got)
	}
	if _, ok := e.api.Get("customers", 2); !ok {
		t.Error("a $replaced delete deleted the record")
	}
	if _, ok := e.api.Get("customers", 1); ok {
		t.Error("customer 1 not deleted")
	}
}

// TestShareBadInput: each bad entity fails with a clear error naming its
// _id and what is wrong, lands in the dead-letter dataset, and nothing is
// sent for it.
func TestShareBadInput(t *testing.T) {
	e := newShareEnv(t, fakeapi.Options{}, "")
	e.putCustomer(1, "Acme")
	e.putCustomer(2, "Twin")
	if _, err := e.api.Put("customers", map[string]any{"id": json.Number("3"), "name": "Twin", "email": "twin@x"}); err != nil {
		t.Fatal(err)
	}
	e.mustRun("crm-customer-collect")
	noIDs := newCustomer("erp:1", "No Ids")
	delete(noIDs, "$ids")
	noOrigin := newCustomer("erp:2", "No Origin")
	delete(noOrigin, "$origin")
	withBased := newCustomer("erp:3", "Based")
	withBased["$based_on"] = map[string]any{"name": "x"}
	desired := e.desired(func(id string, ent map[string]any) map[string]any {
		if id == "1" {
			delete(ent, "$based_on")
			ent["name"] = "Acme 2"
		}
		return ent
	})
	desired = append(desired, noIDs, noOrigin, withBased)
	e.api.ResetStats()
	rec, err := e.round(desired)
	if err == nil || !strings.Contains(err.Error(), "4 of") {
		t.Fatalf("run error = %v, want 4 failed entities", err)
	}
	if c := shareCounts(t, rec); c.Failed != 4 || c.DeadLettered != 4 {
		t.Errorf("counts %+v", c)
	}
	if got := e.writes(); len(got) != 0 {
		t.Errorf("writes for bad entities: %v", got)
	}
	dl := e.entities("system:dead-letter:crm-customer-share")
	for id, want := range map[string]string{
		"erp:1": "an insert needs $ids",
		"erp:2": "an insert needs $origin",
		"erp:3": "an insert must not carry $based_on",
		"1":     "an update needs $based_on",
	} {
		if got, _ := dl[id]["$error"].(string); !strings.Contains(got, want) {
			t.Errorf("dead letter %s: %q, want %q", id, got, want)
		}
		if got, _ := e.entities("crm-customer-share")[id]["$error"].(string); !strings.Contains(got, want) {
			t.Errorf("share record %s: %q, want %q", id, got, want)
		}
	}
}

// TestShareLookupSeveral: a lookup that returns several records fails the
// entity instead of comparing with one of them.
func TestShareLookupSeveral(t *testing.T) {
	e := newShareEnv(t, fakeapi.Options{}, "")
	e.props = `"operation_lookup": "by-name"`
	e.ops = `{
   "list": {"url": "customers", "payload_property": "data", "params": {"limit": "1000"}},
   "by-name": {"url": "customers", "params": {"filter[name]": "{{ entity.name }}"}, "payload_property": "data"},
   "insert": {"method": "POST", "url": "customers"},
   "update": {"method": "PUT", "url": "customers/{{ entity.id }}"},
   "delete": {"method": "DELETE", "url": "customers/{{ entity.id }}"}}`
	e.compile(nil)
	e.putCustomer(1, "Twin")
	e.putCustomer(2, "Twin")
	e.mustRun("crm-customer-collect")
	rec, err := e.round(e.desired(func(id string, ent map[string]any) map[string]any {
		if id != "1" {
			return nil
		}
		ent["email"] = "new@twin.example"
		ent["$based_on"].(map[string]any)["name"] = "Twin"
		return ent
	}))
	if err == nil {
		t.Fatalf("run succeeded: %+v", rec)
	}
	got, _ := e.entities("crm-customer-share")["1"]["$error"].(string)
	if !strings.Contains(got, "lookup returned 2 records") {
		t.Errorf("error = %q", got)
	}
	if w := e.writes(); len(w) != 0 {
		t.Errorf("writes %v", w)
	}
}

// TestShareInsertResponseWithoutKey: an insert whose response lacks the
// primary key fails; nothing is recorded as inserted, and the entity is
// not inserted again by later runs.
func TestShareInsertResponseWithoutKey(t *testing.T) {
	e := newShareEnv(t, fakeapi.Options{}, `"primary_key_insert": "customerNumber"`)
	rec, err := e.round([]map[string]any{newCustomer("erp:9", "Keyless")})
	if err == nil {
		t.Fatalf("run succeeded: %+v", rec)
	}
	r := e.entities("crm-customer-share")["erp:9"]
	if !strings.Contains(fmt.Sprint(r["$error"]), "the response has no primary key") || r["$generated_id"] != nil {
		t.Errorf("share record = %v", r)
	}
	if dl := e.entities("system:dead-letter:crm-customer-share")["erp:9"]; dl == nil {
		t.Error("not dead-lettered")
	}
	e.api.ResetStats()
	if _, err := e.run("crm-customer-share", engine.RunOptions{Reset: true}); err != nil {
		t.Fatal(err)
	}
	if w := e.writes(); len(w) != 0 {
		t.Errorf("a later run sent %v for an insert in doubt", w)
	}
	if n := len(e.api.Records("customers")); n != 1 {
		t.Errorf("%d customers, want 1", n)
	}
}

// TestShareUndefinedOperation: a named operation the system does not
// define is a validate-time error; a default name that is missing is a
// warning.
func TestShareUndefinedOperation(t *testing.T) {
	e := newShareEnv(t, fakeapi.Options{}, "")
	e.props = `"operation_update": "modify"`
	_, err := compileText(t, e.config(nil))
	if err == nil || !strings.Contains(err.Error(), `/transform/properties/operation_update: operation "modify" is not defined by system "crm"`) {
		t.Errorf("compile error = %v", err)
	}
	e.props = ""
	e.ops = `{"lookup": {"url": "customers/{{ entity.id }}"}, "list": {"url": "customers", "payload_property": "data"}}`
	plan, err := compileText(t, e.config(nil))
	if err != nil {
		t.Fatal(err)
	}
	if d := fmt.Sprint(plan.Diagnostics); !strings.Contains(d, `defines no operation "insert"`) {
		t.Errorf("diagnostics = %s", d)
	}
}
