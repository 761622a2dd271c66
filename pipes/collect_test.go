package pipes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes"
	"github.com/ferrydata/ferry/pipes/all"
)

// entity returns the latest version of id in ds as canonical JSON of the
// stored body ("" when absent).
func (e *env) entity(ds, id string) string {
	e.t.Helper()
	rec, ok, err := e.store.Get(context.Background(), ds, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return string(rec.Body)
}

// TestDTLWaveCollect runs wave's collect DTL (merge the node, parse the
// modification time) followed by transform-collect-rest with a share
// record that gives the entity its $origin.
func TestDTLWaveCollect(t *testing.T) {
	e := setup(t, `[
 {"_id":"wave-customer-share","type":"pipe","source":{"type":"embedded","entities":[
   {"_id":"crm-person:7","$generated_id":"QnVz","$origin":"~:crm-person:7"}]}},
 {"_id":"wave-customer-collect","type":"pipe","source":{"type":"embedded","entities":[
   {"_id":"QnVz","node":{"id":"QnVz","name":"Acme","modifiedAt":"2023-01-30T12:00:01.250Z","balance":12.50}},
   {"_id":"QnW0","node":{"id":"QnW0","name":"Other","modifiedAt":"2023-02-01T00:00:00Z"}}]},
  "transform":[
   {"type":"dtl","rules":{"default":[["merge","_S.node"],["add","$last-updated",["datetime","_S.node.modifiedAt"]]]}},
   {"type":"template","template":"transform-collect-rest","properties":{"primary_key":"id","share_dataset":"wave-customer-share"}}]}]`, map[string]string{})
	e.mustRun("wave-customer-share")
	rec := e.mustRun("wave-customer-collect")
	if rec.Read != 2 || rec.Written != 2 {
		t.Fatalf("run = %+v", rec)
	}
	want := `{"$last-updated":"~t2023-01-30T12:00:01.25Z","$origin":"~:crm-person:7","_id":"QnVz","balance":12.50,"id":"QnVz","modifiedAt":"2023-01-30T12:00:01.250Z","name":"Acme"}`
	if got := e.entity("wave-customer-collect", "QnVz"); got != want {
		t.Errorf("QnVz =\n %s\nwant\n %s", got, want)
	}
	if got := e.entity("wave-customer-collect", "QnW0"); strings.Contains(got, "$origin") || !strings.Contains(got, `"$last-updated":"~t2023-02-01T00:00:00Z"`) {
		t.Errorf("QnW0 = %s", got)
	}
}

// TestDTLHopsIncremental joins orders to customers with hops and checks
// that the join sees later changes of the customers dataset (the lookup
// index refreshes incrementally): a changed name, a deleted customer, a
// new one.
func TestDTLHopsIncremental(t *testing.T) {
	e := setup(t, `[
 {"_id":"customers","type":"pipe","source":{"type":"dataset","dataset":"customers-raw"}},
 {"_id":"orders","type":"pipe","source":{"type":"embedded","entities":[
   {"_id":"o1","customer":"1"},{"_id":"o2","customer":"2"},{"_id":"o3","customer":"3"}]},
  "transform":{"type":"dtl","rules":{"default":[["copy","*"],
    ["add","customer_name",["first",["hops",{"datasets":["customers c"],"where":[["eq","_S.customer","c.no"]],"return":"c.name"}]]]]}}}]`,
		map[string]string{})
	putJSON(t, e.store, "customers-raw", 0, `[{"_id":"1","no":"1","name":"Ann"},{"_id":"2","no":"2","name":"Bob"}]`)
	e.mustRun("customers")
	e.mustRun("orders")
	check := func(stage string, want map[string]string) {
		t.Helper()
		for id, name := range want {
			got := e.entity("orders", id)
			var m map[string]any
			json.Unmarshal([]byte(got), &m)
			gotName, _ := m["customer_name"].(string)
			if gotName != name {
				t.Errorf("%s: %s customer_name = %q, want %q (%s)", stage, id, gotName, name, got)
			}
		}
	}
	check("first", map[string]string{"o1": "Ann", "o2": "Bob", "o3": ""})

	putJSON(t, e.store, "customers-raw", 0, `[{"_id":"1","no":"1","name":"Anne"},{"_id":"2","no":"2","name":"Bob","_deleted":true},{"_id":"3","no":"3","name":"Cy"}]`)
	e.mustRun("customers")
	e.mustRun("orders")
	check("after change", map[string]string{"o1": "Anne", "o2": "", "o3": "Cy"})
}

func TestDTLCompileErrorPointer(t *testing.T) {
	msg := compileErr(t, `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},
	  "transform":{"type":"dtl","rules":{"default":[["copy","*"],["add","x",["no-such-fn",1]]]}}}`)
	if !strings.Contains(msg, "/transform/rules/default/1/2") || !strings.Contains(msg, "no-such-fn") {
		t.Errorf("error = %s", msg)
	}
	// id_required false lets entities without _id through the rules.
	e := setup(t, `[{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[{"_id":"a","n":1}]},
	  "transform":[{"type":"dtl","id_required":false,"rules":{"default":[["add","_id",["concat","x-",["string","_S.n"]]]]}}]}]`, map[string]string{})
	e.mustRun("p")
	if got := e.bodies("p"); got != `{"_id":"x-1"}` {
		t.Errorf("dataset = %s", got)
	}
}

// TestMergeDatasetsLatest merges two datasets by newest _ts, continues
// incrementally from a per-dataset token, and passes a delete on.
func TestMergeDatasetsLatest(t *testing.T) {
	e := setup(t, `[{"_id":"merged","type":"pipe","batch_size":2,"source":{"type":"merge_datasets","datasets":["all","event"]}}]`, map[string]string{})
	putJSON(t, e.store, "all", 100, `[{"_id":"1","v":"all-old"},{"_id":"2","v":"all"},{"_id":"3","v":"all"}]`)
	putJSON(t, e.store, "event", 200, `[{"_id":"1","v":"event-new"},{"_id":"4","v":"event"}]`)
	rec := e.mustRun("merged")
	if rec.SyncType != "full" || rec.Written != 4 {
		t.Errorf("first run = %+v", rec)
	}
	want := "1=event-new 2=all 3=all 4=event"
	if got := values(e, "merged"); got != want {
		t.Errorf("merged = %s, want %s", got, want)
	}
	if tok := e.since("merged"); tok != `{"all":2,"event":1}` {
		t.Errorf("token = %s", tok)
	}
	// Nothing new: nothing read.
	if rec := e.mustRun("merged"); rec.SyncType != "incremental" || rec.Read != 0 {
		t.Errorf("idle run = %+v", rec)
	}
	// all gets a newer 1 and deletes 2; event gets an older 3 (loses).
	putJSON(t, e.store, "all", 300, `[{"_id":"1","v":"all-newest"},{"_id":"2","v":"all","_deleted":true}]`)
	putJSON(t, e.store, "event", 50, `[{"_id":"3","v":"event-stale"}]`)
	rec = e.mustRun("merged")
	if rec.SyncType != "incremental" || rec.Read != 2 || rec.Written != 2 {
		t.Errorf("incremental run = %+v", rec)
	}
	if got, want := values(e, "merged"), "1=all-newest 2=all(deleted) 3=all 4=event"; got != want {
		t.Errorf("merged = %s, want %s", got, want)
	}
	if tok := e.since("merged"); tok != `{"all":4,"event":2}` {
		t.Errorf("token = %s", tok)
	}
	// A full rescan over the same data changes nothing and deletes nothing.
	rec, err := e.eng.Run(context.Background(), "merged", engine.RunOptions{Reset: true})
	if err != nil || rec.Written != 0 || rec.Deleted != 0 || rec.Read != 4 {
		t.Errorf("rescan = %+v %v", rec, err)
	}
	if p := e.eng.Plan.Pipe("merged"); strings.Join(p.Inputs, ",") != "all,event" {
		t.Errorf("inputs = %v", p.Inputs)
	}
}

func TestMergeDatasetsAllAndErrors(t *testing.T) {
	e := setup(t, `[{"_id":"m","type":"pipe","source":{"type":"merge_datasets","datasets":["a","b"],"strategy":"all"}}]`, map[string]string{})
	putJSON(t, e.store, "a", 300, `[{"_id":"1","v":"a"}]`)
	putJSON(t, e.store, "b", 100, `[{"_id":"1","v":"b"}]`)
	// "all" emits both; b is read last and wins although it is older.
	if rec := e.mustRun("m"); rec.Read != 2 {
		t.Errorf("run = %+v", rec)
	}
	if got := values(e, "m"); got != "1=b" {
		t.Errorf("m = %s", got)
	}
	for _, c := range []struct{ cfg, want string }{
		{`"datasets":[]`, "/source/datasets"},
		{`"datasets":["a","a"]`, "/source/datasets/1: dataset \"a\" is listed twice"},
		{`"datasets":["a"],"strategy":"best"`, "/source/strategy"},
	} {
		msg := compileErr(t, `{"_id":"m","type":"pipe","source":{"type":"merge_datasets",`+c.cfg+`}}`)
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q does not contain %q", c.cfg, msg, c.want)
		}
	}
}

func TestUnionDatasets(t *testing.T) {
	e := setup(t, `[
 {"_id":"u","type":"pipe","batch_size":1,"source":{"type":"union_datasets","datasets":["a","b"]}},
 {"_id":"plain","type":"pipe","source":{"type":"union_datasets","datasets":["a"],"prefix_ids":false}}]`, map[string]string{})
	putJSON(t, e.store, "a", 0, `[{"_id":"1","v":"a1"},{"_id":"2","v":"a2"}]`)
	putJSON(t, e.store, "b", 0, `[{"_id":"1","v":"b1"}]`)
	if rec := e.mustRun("u"); rec.Written != 3 {
		t.Errorf("run = %+v", rec)
	}
	if got := values(e, "u"); got != "a:1=a1 a:2=a2 b:1=b1" {
		t.Errorf("u = %s", got)
	}
	putJSON(t, e.store, "b", 0, `[{"_id":"1","v":"b1","_deleted":true},{"_id":"2","v":"b2"}]`)
	rec := e.mustRun("u")
	if rec.SyncType != "incremental" || rec.Read != 2 {
		t.Errorf("incremental = %+v", rec)
	}
	if got := values(e, "u"); got != "a:1=a1 a:2=a2 b:1=b1(deleted) b:2=b2" {
		t.Errorf("u = %s", got)
	}
	if tok := e.since("u"); tok != `{"a":1,"b":2}` {
		t.Errorf("token = %s", tok)
	}
	// One dataset: a plain offset token, ids untouched; RunUntilStable
	// settles (the engine's "behind" check parses it).
	if _, err := e.eng.RunUntilStable(context.Background(), []string{"plain"}, engine.RunOptions{}, 3); err != nil {
		t.Fatal(err)
	}
	if got := values(e, "plain"); got != "1=a1 2=a2" || e.since("plain") != "1" {
		t.Errorf("plain = %s, token %q", got, e.since("plain"))
	}
}

// values renders a dataset's latest versions as "id=v" sorted by id.
func values(e *env, ds string) string {
	e.t.Helper()
	var out []string
	_, err := e.store.Scan(context.Background(), ds, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		var m map[string]any
		if err := json.Unmarshal(r.Body, &m); err != nil {
			return err
		}
		s := r.ID + "=" + stringOf(m["v"])
		if r.Deleted {
			s += "(deleted)"
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	sortStrings(out)
	return strings.Join(out, " ")
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestEmitChildren builds children with DTL create-child and emits them
// with emit_children in the same pipe; a deleted parent deletes its
// children.
func TestEmitChildren(t *testing.T) {
	e := setup(t, `[
 {"_id":"orders","type":"pipe","source":{"type":"dataset","dataset":"raw"},
  "transform":[
   {"type":"dtl","rules":{"default":[["create-child",["apply","line","_S.lines"]]],
                          "line":[["add","_id",["concat","_P._S._id","-",["string","_S.n"]]],["add","sku","_S.sku"],["add","order","_P._S._id"]]}},
   {"type":"emit_children"}]}]`, map[string]string{})
	putJSON(t, e.store, "raw", 0, `[{"_id":"o1","lines":[{"n":1,"sku":"A"},{"n":2,"sku":"B"}]},{"_id":"o2","lines":[]}]`)
	rec := e.mustRun("orders")
	if rec.Read != 2 || rec.Written != 2 {
		t.Errorf("run = %+v", rec)
	}
	if got := e.bodies("orders"); got != `{"_id":"o1-1","order":"o1","sku":"A"}`+"\n"+`{"_id":"o1-2","order":"o1","sku":"B"}` {
		t.Errorf("orders = %s", got)
	}
	putJSON(t, e.store, "raw", 0, `[{"_id":"o1","lines":[{"n":1,"sku":"A"},{"n":2,"sku":"B"}],"_deleted":true}]`)
	e.mustRun("orders")
	if got := e.entity("orders", "o1-2"); !strings.Contains(got, `"_deleted":true`) {
		t.Errorf("child of deleted parent = %s", got)
	}

	bad := setup(t, `[{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[{"_id":"x","$children":[{"name":"no id"}]}]},"transform":{"type":"emit_children"}}]`, map[string]string{})
	if _, err := bad.run("p"); err == nil || !strings.Contains(err.Error(), `entity "x"`) || !strings.Contains(err.Error(), "$children[0] has no string _id") {
		t.Errorf("child without _id: %v", err)
	}
}

// TestCollectRestOrigin stamps $origin from the share dataset for a single
// key, a composite key (tuple) and powerofficego's "_S.id" form, with
// numbers compared by value and the latest share record winning.
func TestCollectRestOrigin(t *testing.T) {
	e := setup(t, `[
 {"_id":"single","type":"pipe","source":{"type":"embedded","entities":[
    {"_id":"10","id":10},{"_id":"11","id":11},{"_id":"12","id":12,"$origin":"~:keep:12"},{"_id":"13"}]},
  "transform":{"type":"template","template":"transform-collect-rest","properties":{"primary_key":"id","share_dataset":"share"}}},
 {"_id":"path","type":"pipe","source":{"type":"embedded","entities":[{"_id":"10","id":10.0,"$last-modified":"~t2024-01-01T00:00:00Z"}]},
  "transform":{"type":"template","template":"transform-collect-rest","properties":{"primary_key":"_S.id","share_dataset":"share"}}},
 {"_id":"composite","type":"pipe","source":{"type":"embedded","entities":[
    {"_id":"1-2","from":1,"to":"2"},{"_id":"2-1","from":2,"to":"1"},{"_id":"1-x","from":1}]},
  "transform":{"type":"template","template":"transform-collect-rest","properties":{"primary_key":["from","_S.to"],"share_dataset":"share2"}}}]`, map[string]string{})
	putJSON(t, e.store, "share", 0, `[
	  {"_id":"crm:a","$generated_id":10,"$origin":"~:crm:old"},
	  {"_id":"crm:b","$generated_id":11,"$origin":null},
	  {"_id":"crm:c","$generated_id":12},
	  {"_id":"crm:gone","$generated_id":13,"$origin":"~:crm:gone","_deleted":true}]`)
	putJSON(t, e.store, "share", 0, `[{"_id":"crm:a2","$generated_id":10,"$origin":"~:crm:a"}]`)
	putJSON(t, e.store, "share2", 0, `[{"_id":"s:1","$generated_id":[1,"2"],"$origin":"~:crm:pair"},{"_id":"s:2","$generated_id":[1],"$origin":"~:crm:short"}]`)

	e.mustRun("single")
	for id, want := range map[string]string{"10": "~:crm:a", "11": "", "12": "~:keep:12", "13": ""} {
		if got := originOf(e, "single", id); got != want {
			t.Errorf("single %s: $origin %q, want %q", id, got, want)
		}
	}
	e.mustRun("path")
	if got := e.entity("path", "10"); got != `{"$last-modified":"~t2024-01-01T00:00:00Z","$origin":"~:crm:a","_id":"10","id":10.0}` {
		t.Errorf("path = %s", got)
	}
	e.mustRun("composite")
	for id, want := range map[string]string{"1-2": "~:crm:pair", "2-1": "", "1-x": ""} {
		if got := originOf(e, "composite", id); got != want {
			t.Errorf("composite %s: $origin %q, want %q", id, got, want)
		}
	}
}

func originOf(e *env, ds, id string) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(e.entity(ds, id)), &m); err != nil {
		e.t.Fatalf("%s/%s: %v", ds, id, err)
	}
	s, _ := m["$origin"].(string)
	return s
}

func TestTemplateTransformErrors(t *testing.T) {
	for _, c := range []struct{ props, want string }{
		{`"template":"transform-nope"`, `unknown transform template "transform-nope"`},
		{`"template":{"rules":{}}`, `/transform/template: not supported yet: inline`},
		{`"template":"transform-collect-rest","properties":{"share_dataset":"s"}`, `/transform/properties: primary_key is required`},
		{`"template":"transform-collect-rest","properties":{"primary_key":"id"}`, `/transform/properties: share_dataset is required`},
		{`"template":"transform-collect-rest","properties":{"primary_key":[1],"share_dataset":"s"}`, `/transform/properties/primary_key/0`},
		{`"template":"transform-collect-rest","properties":{"primary_key":"id","share_dataset":"s","operation_lookup":"get"}`, `/transform/properties/rest_system: operation_lookup needs rest_system`},
	} {
		msg := compileErr(t, `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"transform":{"type":"template",`+c.props+`}}`)
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q does not contain %q", c.props, msg, c.want)
		}
	}
	if msg := compileErr(t, `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"transform":{"type":"template","template":"transform-nope"}}`); !strings.Contains(msg, `unknown transform template "transform-nope" (known: transform-collect-rest`) {
		t.Errorf("unknown template: %s", msg)
	}
	// Unknown template properties are warnings with their pointer.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.json"), []byte(`{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},
		"transform":{"type":"template","template":"transform-collect-rest","properties":{"primary_key":"id","share_dataset":"s","typo":1}}}`), 0o644)
	cfg, err := engine.LoadConfig([]string{dir}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	plan, err := engine.Compile(cfg, all.Registry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(plan.Diagnostics); !strings.Contains(got, `/transform/properties/typo: unknown key "typo" is ignored`) {
		t.Errorf("diagnostics = %s", got)
	}
}

// TestPowerofficegoCollectCompiles compiles the expanded powerofficego
// connector's -collect pipes (transform-collect-rest with primary_key
// "_S.id", and the outgoinginvoice pipe that chains rest + dtl + template)
// with its system: no diagnostic may concern the dtl or template
// transforms.
func TestPowerofficegoCollectCompiles(t *testing.T) {
	path := "/work/shared/connectors/powerofficego-connector/expanded.json"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("connector corpus not available: %v", err)
	}
	var comps []map[string]any
	if err := json.Unmarshal(raw, &comps); err != nil {
		t.Fatal(err)
	}
	var keep []map[string]any
	collects := 0
	for _, c := range comps {
		id, _ := c["_id"].(string)
		if strings.HasPrefix(c["type"].(string), "system:") || strings.HasSuffix(id, "-collect") {
			keep = append(keep, c)
			if strings.HasSuffix(id, "-collect") {
				collects++
			}
		}
	}
	if collects < 8 {
		t.Fatalf("found %d collect pipes, want 8", collects)
	}
	dir := t.TempDir()
	b, _ := json.Marshal(keep)
	os.WriteFile(filepath.Join(dir, "pipes.json"), b, 0o644)
	cfg, err := engine.LoadConfig([]string{dir}, func(string) (string, bool) { return "https://api.example.com", true })
	if err != nil {
		t.Fatal(err)
	}
	plan, err := engine.Compile(cfg, all.Registry(), nil)
	for _, d := range plan.Diagnostics.Errors() {
		if strings.Contains(d.Pointer, "/transform") || strings.Contains(d.Message, "transform:") {
			t.Errorf("transform diagnostic: %v", d)
		}
	}
	if err != nil {
		// Other components (REST) may still be under construction; the
		// transforms are what this test is about.
		t.Logf("compile (non-transform problems): %v", err)
		return
	}
	p := plan.Pipe("xxxxxx-outgoinginvoice-collect")
	if p == nil || len(p.Transforms) != 3 {
		t.Fatalf("outgoinginvoice-collect = %+v", p)
	}
	if _, ok := p.Transforms[2].(*pipes.CollectRest); !ok {
		t.Errorf("third transform is %T", p.Transforms[2])
	}
}

// TestCollectRestLookups runs operation_lookup_delete and operation_lookup
// through the nested rest transform against a local API: a deleted entity
// the API still has (200) is un-deleted, one it lacks (404) stays deleted,
// and a live entity is replaced by the lookup response with the collected
// version under original_property.
func TestCollectRestLookups(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/items/")
		if id == "2" {
			http.Error(w, `{"error":"gone"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"live-%s","_id":"server-side"}`, id, id)
	}))
	defer srv.Close()
	e := setup(t, `[
 {"_id":"api","type":"system:rest","url_pattern":"`+srv.URL+`/%s","operations":{"get":{"method":"GET","url":"items/{{ entity.id }}"}}},
 {"_id":"c","type":"pipe","source":{"type":"embedded","entities":[
   {"_id":"1","id":"1","_deleted":true},{"_id":"2","id":"2","_deleted":true},{"_id":"3","id":"3","name":"stale"}]},
  "transform":{"type":"template","template":"transform-collect-rest","properties":{"primary_key":"id","share_dataset":"share",
    "rest_system":"api","operation_lookup_delete":"get","operation_lookup":"get","original_property":"original"}}}]`, map[string]string{})
	putJSON(t, e.store, "share", 0, `[{"_id":"crm:3","$generated_id":"3","$origin":"~:crm:3"}]`)
	e.mustRun("c")
	if got := e.entity("c", "1"); got != `{"_id":"1","id":"1"}` {
		t.Errorf("1 = %s (want un-deleted)", got)
	}
	if got := e.entity("c", "2"); got != `{"_deleted":true,"_id":"2","id":"2"}` {
		t.Errorf("2 = %s (want deleted)", got)
	}
	if got := e.entity("c", "3"); got != `{"$origin":"~:crm:3","_id":"3","id":"3","name":"live-3","original":{"_id":"3","id":"3","name":"stale"}}` {
		t.Errorf("3 = %s", got)
	}
}
