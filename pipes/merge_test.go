package pipes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/pipes"
	"github.com/ferrydata/ferry/pipes/all"
)

// latest returns a dataset's latest versions by _id as canonical JSON
// (stored content only).
func latest(t testing.TB, s engine.Store, ds string) map[string]string {
	t.Helper()
	out := map[string]string{}
	_, err := s.Scan(context.Background(), ds, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		out[r.ID] = string(r.Body)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// canon renders JSON text canonically.
func canon(t testing.TB, text string) string {
	t.Helper()
	v, err := engine.DecodeValue([]byte(text))
	if err != nil {
		t.Fatalf("%v: %s", err, text)
	}
	b, err := engine.AppendCanonical(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantLatest compares a dataset's latest versions with want (a JSON array
// of entities).
func wantLatest(t testing.TB, s engine.Store, ds, want string) {
	t.Helper()
	var ents []json.RawMessage
	if err := json.Unmarshal([]byte(want), &ents); err != nil {
		t.Fatal(err)
	}
	exp := map[string]string{}
	for _, e := range ents {
		var id struct {
			ID string `json:"_id"`
		}
		json.Unmarshal(e, &id)
		exp[id.ID] = canon(t, string(e))
	}
	got := latest(t, s, ds)
	var ids []string
	for id := range exp {
		ids = append(ids, id)
	}
	for id := range got {
		if _, ok := exp[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		if got[id] != exp[id] {
			t.Errorf("%s %q:\n got  %s\n want %s", ds, id, got[id], exp[id])
		}
	}
}

// TestMergeSesamExample runs the example of Sesam's merge source
// documentation: a1, b1 and c1 merge (c1 through a lower-cased value),
// deleted entities stay on their own.
func TestMergeSesamExample(t *testing.T) {
	e := setup(t, `[{"_id":"result","type":"pipe","source":{"type":"merge","version":2,
	  "datasets":["A a","B b","C c"],
	  "equality":[["eq","a.f1","b.f1"],["eq","b.f2",["lower","c.f3"]]]}}]`, nil)
	putJSON(t, e.store, "A", 0, `[{"_id":"a1","f1":1},{"_id":"a2","f1":2}]`)
	putJSON(t, e.store, "B", 0, `[{"_id":"b1","f1":1,"f2":"x"},{"_id":"b2","f1":3}]`)
	putJSON(t, e.store, "C", 0, `[{"_id":"c1","f3":"X"},{"_id":"c2","_deleted":true,"f3":"Y"},{"_id":"c3","_deleted":true,"f3":"X"}]`)
	e.mustRun("result")
	wantLatest(t, e.store, "result", `[
	  {"_id":"0|a1|1|b1|2|c1","$ids":["~:A:a1","~:B:b1","~:C:c1"],"f1":[1,1],"f2":"x","f3":"X"},
	  {"_id":"0|a2","$ids":["~:A:a2"],"f1":2},
	  {"_id":"1|b2","$ids":["~:B:b2"],"f1":3},
	  {"_id":"2|c2","$ids":["~:C:c2"],"_deleted":true,"f3":"Y"},
	  {"_id":"2|c3","$ids":["~:C:c3"],"_deleted":true,"f3":"X"}]`)
	_ = pipes.SetMergeChunk
}

// history returns the stored versions of id, oldest first, as canonical
// JSON.
func history(t testing.TB, s engine.Store, ds, id string) []string {
	t.Helper()
	recs, err := s.History(context.Background(), ds, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Body))
	}
	return out
}

const crmERP = `[{"_id":"g","type":"pipe","source":{"type":"merge","version":2,%s
  "datasets":["crm p","erp c"],
  "equality":[["eq","p.email","c.mail"],["eq","p.phone","c.phone"]]}}]`

func mergePipe(extra string) string { return fmt.Sprintf(crmERP, extra) }

// TestMergeTransitiveReplacedAndUnmerged follows two clusters that merge
// through a third value and split again: every output _id that stops
// applying is re-emitted deleted with $replaced, and comes back when its
// cluster does.
func TestMergeTransitiveReplacedAndUnmerged(t *testing.T) {
	e := setup(t, mergePipe(""), nil)
	putJSON(t, e.store, "crm", 0, `[{"_id":"p1","email":"x"},{"_id":"p2","phone":5}]`)
	putJSON(t, e.store, "erp", 0, `[{"_id":"c1","mail":"x"},{"_id":"c2","phone":5,"mail":"y"}]`)
	e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|p1|1|c1","$ids":["~:crm:p1","~:erp:c1"],"email":"x","mail":"x"},
	  {"_id":"0|p2|1|c2","$ids":["~:crm:p2","~:erp:c2"],"phone":[5,5],"mail":"y"}]`)

	// p1 gets c2's phone: all four are one entity now.
	putJSON(t, e.store, "crm", 0, `[{"_id":"p1","email":"x","phone":5}]`)
	rec := e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|p1|0|p2|1|c1|1|c2","$ids":["~:crm:p1","~:crm:p2","~:erp:c1","~:erp:c2"],
	   "email":"x","phone":[5,5,5],"mail":["x","y"]},
	  {"_id":"0|p1|1|c1","_deleted":true,"$replaced":true,"$ids":["~:crm:p1","~:erp:c1"]},
	  {"_id":"0|p2|1|c2","_deleted":true,"$replaced":true,"$ids":["~:crm:p2","~:erp:c2"]}]`)
	if rec.SyncType != "incremental" || rec.Read != 3 {
		t.Errorf("run = %+v; want an incremental run emitting 3 entities", rec)
	}

	// The link goes again: the two clusters come back under their ids.
	putJSON(t, e.store, "crm", 0, `[{"_id":"p1","email":"x"}]`)
	e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|p1|0|p2|1|c1|1|c2","_deleted":true,"$replaced":true,"$ids":["~:crm:p1","~:crm:p2","~:erp:c1","~:erp:c2"]},
	  {"_id":"0|p1|1|c1","$ids":["~:crm:p1","~:erp:c1"],"email":"x","mail":"x"},
	  {"_id":"0|p2|1|c2","$ids":["~:crm:p2","~:erp:c2"],"phone":[5,5],"mail":"y"}]`)
	if h := history(t, e.store, "g", "0|p1|1|c1"); len(h) != 3 || !strings.Contains(h[1], `"$replaced":true`) || h[2] != h[0] {
		t.Errorf("history of 0|p1|1|c1 = %v; want live, replaced, live", h)
	}

	// An attribute change splits a cluster: the split-off entity gets
	// its own _id and the old one is replaced.
	putJSON(t, e.store, "erp", 0, `[{"_id":"c2","phone":6,"mail":"y"}]`)
	e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|p1|0|p2|1|c1|1|c2","_deleted":true,"$replaced":true,"$ids":["~:crm:p1","~:crm:p2","~:erp:c1","~:erp:c2"]},
	  {"_id":"0|p1|1|c1","$ids":["~:crm:p1","~:erp:c1"],"email":"x","mail":"x"},
	  {"_id":"0|p2|1|c2","_deleted":true,"$replaced":true,"$ids":["~:crm:p2","~:erp:c2"]},
	  {"_id":"0|p2","$ids":["~:crm:p2"],"phone":5},
	  {"_id":"1|c2","$ids":["~:erp:c2"],"phone":6,"mail":"y"}]`)
	if err := pipes.CheckMergeIndex(context.Background(), e.store, e.eng.Plan.Pipe("g").Source); err != nil {
		t.Fatal(err)
	}
}

// TestMergeDeletedInputs: a deleted input never merges; it is emitted on
// its own, deleted, with its content, and its cluster goes on without it.
// When it comes back it merges again, and its lone deleted _id stays as
// it is (it was never live, so there is nothing to replace).
func TestMergeDeletedInputs(t *testing.T) {
	e := setup(t, mergePipe(""), nil)
	putJSON(t, e.store, "crm", 0, `[{"_id":"p1","email":"x","name":"Ann"}]`)
	putJSON(t, e.store, "erp", 0, `[{"_id":"c1","mail":"x","nr":7},{"_id":"c9","mail":"x","_deleted":true}]`)
	e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|p1|1|c1","$ids":["~:crm:p1","~:erp:c1"],"email":"x","name":"Ann","mail":"x","nr":7},
	  {"_id":"1|c9","$ids":["~:erp:c9"],"mail":"x","_deleted":true}]`)

	putJSON(t, e.store, "erp", 0, `[{"_id":"c1","mail":"x","nr":7,"_deleted":true}]`)
	e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|p1|1|c1","_deleted":true,"$replaced":true,"$ids":["~:crm:p1","~:erp:c1"]},
	  {"_id":"0|p1","$ids":["~:crm:p1"],"email":"x","name":"Ann"},
	  {"_id":"1|c1","$ids":["~:erp:c1"],"mail":"x","nr":7,"_deleted":true},
	  {"_id":"1|c9","$ids":["~:erp:c9"],"mail":"x","_deleted":true}]`)

	putJSON(t, e.store, "erp", 0, `[{"_id":"c1","mail":"x","nr":8}]`)
	e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|p1|1|c1","$ids":["~:crm:p1","~:erp:c1"],"email":"x","name":"Ann","mail":"x","nr":8},
	  {"_id":"0|p1","_deleted":true,"$replaced":true,"$ids":["~:crm:p1"]},
	  {"_id":"1|c1","$ids":["~:erp:c1"],"mail":"x","nr":7,"_deleted":true},
	  {"_id":"1|c9","$ids":["~:erp:c9"],"mail":"x","_deleted":true}]`)
	if h := history(t, e.store, "g", "1|c1"); len(h) != 1 {
		t.Errorf("1|c1 has %d versions, want 1: %v", len(h), h)
	}
}

// TestMergeIdentityFirst: the first member's _id (datasets in config
// order, then by _id) names the cluster; two clusters that would get the
// same _id fail the run with a clear error, unless equal ids are made
// equal entities.
func TestMergeIdentityFirst(t *testing.T) {
	e := setup(t, mergePipe(`"identity":"first",`), nil)
	putJSON(t, e.store, "crm", 0, `[{"_id":"p2","email":"x"},{"_id":"p1","email":"x"}]`)
	putJSON(t, e.store, "erp", 0, `[{"_id":"a0","mail":"x"},{"_id":"c5","mail":"z"}]`)
	e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"p1","$ids":["~:crm:p1","~:crm:p2","~:erp:a0"],"email":["x","x"],"mail":"x"},
	  {"_id":"c5","$ids":["~:erp:c5"],"mail":"z"}]`)
	// p1 leaves: the cluster is named after p2 now, and p1 keeps its id.
	putJSON(t, e.store, "crm", 0, `[{"_id":"p1","email":"y"}]`)
	e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"p1","$ids":["~:crm:p1"],"email":"y"},
	  {"_id":"p2","$ids":["~:crm:p2","~:erp:a0"],"email":"x","mail":"x"},
	  {"_id":"c5","$ids":["~:erp:c5"],"mail":"z"}]`)

	// An erp entity with the _id of a crm one, unmatched: both would be "p1".
	putJSON(t, e.store, "erp", 0, `[{"_id":"p1","mail":"q"}]`)
	_, err := e.run("g")
	if err == nil || !strings.Contains(err.Error(), `two clusters would get the same _id "p1": [crm:p1] and [erp:p1]`) ||
		!strings.Contains(err.Error(), `"identity": "composite"`) {
		t.Fatalf("run = %v; want a collision error", err)
	}

	f := setup(t, `[{"_id":"g","type":"pipe","source":{"type":"merge","identity":"first","datasets":["crm p","erp c"],
	  "equality":[["eq","p._id","c._id"]]}}]`, nil)
	putJSON(t, f.store, "crm", 0, `[{"_id":"1","n":"a"}]`)
	putJSON(t, f.store, "erp", 0, `[{"_id":"1","m":"b"},{"_id":"2"}]`)
	f.mustRun("g")
	wantLatest(t, f.store, "g", `[{"_id":"1","$ids":["~:crm:1","~:erp:1"],"n":"a","m":"b"},{"_id":"2","$ids":["~:erp:2"]}]`)
}

// TestMergeStrategies merges Sesam's documentation example with each
// strategy (one dataset, deduplicated by its own key).
func TestMergeStrategies(t *testing.T) {
	for strategy, want := range map[string]string{
		"default": `{"_id":"0|1|0|2|0|3","$ids":["~:a:1","~:a:2","~:a:3"],"k":[1,1,1],"x":1,"y":[2,1,2],"z":[3,3]}`,
		"compact": `{"_id":"0|1|0|2|0|3","$ids":["~:a:1","~:a:2","~:a:3"],"k":1,"x":1,"y":[2,1],"z":3}`,
		"list": `{"_id":"0|1|0|2|0|3","$ids":["~:a:1","~:a:2","~:a:3"],"$merged":[
		  {"_id":"1","k":1,"x":1},{"_id":"2","k":1,"y":[2,1]},{"_id":"3","k":1,"y":2,"z":[3,3]}]}`,
	} {
		t.Run(strategy, func(t *testing.T) {
			e := setup(t, `[{"_id":"g","type":"pipe","source":{"type":"merge","version":2,"strategy":"`+strategy+`",
			  "datasets":["a"],"equality_sets":[["a.k"]]}}]`, nil)
			putJSON(t, e.store, "a", 0, `[{"_id":"1","k":1,"x":1},{"_id":"2","k":1,"y":[2,1]},{"_id":"3","k":1,"y":2,"z":[3,3]},
			  {"_id":"4","k":2,"e":[],"n":null,"$ids":["~:other:9","~:other:9"]}]`)
			e.mustRun("g")
			single := `{"_id":"0|4","$ids":["~:other:9"],"e":[],"k":2,"n":null}`
			switch strategy {
			case "compact":
				single = `{"_id":"0|4","$ids":["~:other:9"],"k":2,"n":null}`
			case "list":
				single = `{"_id":"0|4","$ids":["~:other:9"],"$merged":[{"_id":"4","k":2,"e":[],"n":null,"$ids":["~:other:9","~:other:9"]}]}`
			}
			wantLatest(t, e.store, "g", "["+want+","+single+"]")
		})
	}
}

// TestMergeEqualityValues pins how values compare: as DTL "eq" (numbers
// by value, strings exactly, an NI never equals a plain string, a list by
// any element); null, missing values and empty lists never match; an
// empty string is a value like any other.
func TestMergeEqualityValues(t *testing.T) {
	e := setup(t, `[{"_id":"g","type":"pipe","source":{"type":"merge","version":2,
	  "datasets":["crm p","erp c"],"equality":[["eq","p.e","c.e"]]}}]`, nil)
	putJSON(t, e.store, "crm", 0, `[{"_id":"1","e":1},{"_id":"2","e":"Ab"},{"_id":"3","e":["u","v"]},{"_id":"4","e":null},
	  {"_id":"5","e":[]},{"_id":"6","e":"~:x:1"},{"_id":"7","e":"~f2.50"},{"_id":"8","e":""},{"_id":"9"},
	  {"_id":"10","e":{"b":1,"a":[true]}},{"_id":"11","e":[[null,true]]}]`)
	putJSON(t, e.store, "erp", 0, `[{"_id":"1","e":1.0},{"_id":"2","e":"ab"},{"_id":"3","e":"v"},{"_id":"4","e":null},
	  {"_id":"5","e":[]},{"_id":"6","e":"x:1"},{"_id":"7","e":2.5},{"_id":"8","e":""},{"_id":"9"},
	  {"_id":"10","e":{"a":[true],"b":1}},{"_id":"11","e":true}]`)
	e.mustRun("g")
	var ids []string
	for id := range latest(t, e.store, "g") {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	want := "0|10|1|10 0|11|1|11 0|1|1|1 0|2 0|3|1|3 0|4 0|5 0|6 0|7|1|7 0|8|1|8 0|9 1|2 1|4 1|5 1|6 1|9"
	if got := strings.Join(ids, " "); got != want {
		t.Errorf("ids:\n got  %s\n want %s", got, want)
	}
}

// TestMergeRules covers "or", equality sets that share an expression,
// "and" (tuple keys) and $ids: an entity without $ids matches through its
// own NI, which is how a record created from a golden entity (its
// $origin) joins the golden entity's cluster.
func TestMergeRules(t *testing.T) {
	e := setup(t, `[{"_id":"g","type":"pipe","source":{"type":"merge","version":2,
	  "datasets":["crm p","erp c","hr h"],
	  "equality":[["or",["eq","p.a","c.a"],["eq","p.b","c.b"]],
	              ["and",["eq","p.first","h.fn"],["eq","h.ln","p.last"]],
	              ["eq","p.$ids","c.$origin"]],
	  "equality_sets":[["c.x","h.x"],["h.x","p.x"]]}}]`, nil)
	putJSON(t, e.store, "crm", 0, `[{"_id":"1","a":1},{"_id":"2","b":2},{"_id":"3","first":"Ann","last":"Lee"},
	  {"_id":"4","first":"Ann","last":"Kim"},{"_id":"5","x":9},{"_id":"6","first":"Ann","last":"Lee"},{"_id":"7"}]`)
	putJSON(t, e.store, "erp", 0, `[{"_id":"1","a":1},{"_id":"2","b":2},{"_id":"3","$origin":"~:crm:7"}]`)
	putJSON(t, e.store, "hr", 0, `[{"_id":"1","fn":"Ann","ln":"Lee"},{"_id":"2","fn":"Ann","ln":"Ray"},{"_id":"3","x":9}]`)
	e.mustRun("g")
	var ids []string
	for id := range latest(t, e.store, "g") {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// 3, 6 and hr 1 share (Ann, Lee); 5 and hr 3 share x through the
	// linked sets; erp 3 came from crm 7.
	want := "0|1|1|1 0|2|1|2 0|3|0|6|2|1 0|4 0|5|2|3 0|7|1|3 2|2"
	if got := strings.Join(ids, " "); got != want {
		t.Errorf("ids:\n got  %s\n want %s", got, want)
	}
}

// TestMergeMaxMerged: a run that would merge more than max_merged
// entities into one fails and writes nothing.
func TestMergeMaxMerged(t *testing.T) {
	e := setup(t, `[{"_id":"g","type":"pipe","source":{"type":"merge","version":2,"max_merged":3,
	  "datasets":["crm p","erp c"],"equality":[["eq","p.e","c.e"]]}}]`, nil)
	putJSON(t, e.store, "crm", 0, `[{"_id":"1","e":"x"},{"_id":"2","e":"x"},{"_id":"3","e":"y"}]`)
	putJSON(t, e.store, "erp", 0, `[{"_id":"1","e":"x"},{"_id":"2","e":"y"}]`)
	e.mustRun("g")
	putJSON(t, e.store, "erp", 0, `[{"_id":"3","e":["x","y"]}]`)
	before := latest(t, e.store, "g")
	_, err := e.run("g")
	if err == nil || !strings.Contains(err.Error(), "more than max_merged (3) entities would merge into one") {
		t.Fatalf("run = %v; want the max_merged error", err)
	}
	if after := latest(t, e.store, "g"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a failed run changed the output:\n%v\n%v", before, after)
	}
	if err := pipes.CheckMergeIndex(context.Background(), e.store, e.eng.Plan.Pipe("g").Source); err != nil {
		t.Fatal(err)
	}
}

func TestMergeConfigErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{`"datasets":["a x y"]`, `/source/datasets/0: expected "dataset alias"`},
		{`"datasets":["a","a b"]`, `/source/datasets/1: dataset "a" is listed twice`},
		{`"datasets":["a x","b x"]`, `/source/datasets/1: alias "x" is used twice`},
		{`"datasets":["my.ds"]`, `/source/datasets/0: alias "my.ds" must not start with "_" or contain "."`},
		{`"datasets":["a","b"],"equality":[["eq","a.x","z.y"]]`, `/source/equality/0/2: expression "z.y" names no dataset alias (aliases: a, b)`},
		{`"datasets":["a","b"],"equality":[["eq","a.x",["concat","a.x","b.y"]]]`, `/source/equality/0/2: expression ["concat","a.x","b.y"] names several dataset aliases`},
		{`"datasets":["a","b"],"equality":[["eq","_S.x","b.y"]]`, `/source/equality/0/1: "_S.x": equality expressions refer to entities by their dataset's alias`},
		{`"datasets":["a","b"],"equality":[["eq","a.x"]]`, `/source/equality/0: "eq" takes two expressions`},
		{`"datasets":["a","b"],"equality":[["neq","a.x","b.x"]]`, `/source/equality/0: unsupported equality rule "neq"`},
		{`"datasets":["a","b"],"equality":[["eq","a.x",["nosuch","b.x"]]]`, `/source/equality/0/2: DTL: unknown function "nosuch"`},
		{`"datasets":["a","b"],"equality":[["eq","a.x",["hops",{"datasets":["c c"],"where":["eq","b.x","c.x"]}]]]`, `/source/equality/0/2: equality expressions cannot hop into other datasets`},
		{`"datasets":["a","b","c"],"equality":[["and",["eq","a.x","b.x"],["eq","a.y","c.y"]]]`, `/source/equality/0/2: every part of "and" must compare the aliases "a" and "b"`},
		{`"datasets":["a","b"],"equality":[["and",["eq","a.x","a.y"]]]`, `/source/equality/0/1: each part of "and" must compare two different aliases`},
		{`"datasets":["a","b"],"strategy":"newest"`, `/source/strategy`},
		{`"datasets":["a","b"],"identity":"last"`, `/source/identity`},
		{`"datasets":[]`, `/source/datasets`},
	}
	for _, c := range cases {
		msg := compileErr(t, `{"_id":"p","type":"pipe","source":{"type":"merge",`+c.src+`}}`)
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s:\n error %s\n want  %s", c.src, msg, c.want)
		}
	}
}

func pairs(from, to int, extra string) (crm, erp string) {
	var c, e []string
	for i := from; i <= to; i++ {
		c = append(c, fmt.Sprintf(`{"_id":"p%d","email":"e%d"%s}`, i, i, extra))
		e = append(e, fmt.Sprintf(`{"_id":"c%d","mail":"e%d"}`, i, i))
	}
	return "[" + strings.Join(c, ",") + "]", "[" + strings.Join(e, ",") + "]"
}

// TestMergeIncrementalTouchesOnlyChangedClusters: an incremental run
// emits only the clusters of the entities read; a full run re-merges
// everything and, with nothing changed, writes nothing.
func TestMergeIncrementalTouchesOnlyChangedClusters(t *testing.T) {
	e := setup(t, mergePipe(""), nil)
	crm, erp := pairs(1, 50, "")
	putJSON(t, e.store, "crm", 0, crm)
	putJSON(t, e.store, "erp", 0, erp)
	if rec := e.mustRun("g"); rec.Written != 50 {
		t.Fatalf("first run = %+v", rec)
	}
	putJSON(t, e.store, "crm", 0, `[{"_id":"p7","email":"e7","name":"Seven"}]`)
	if rec := e.mustRun("g"); rec.SyncType != "incremental" || rec.Read != 1 || rec.Written != 1 {
		t.Errorf("content change: run = %+v; want one entity emitted and written", rec)
	}
	// c8 moves to p9's address: two clusters change, two _ids go.
	putJSON(t, e.store, "erp", 0, `[{"_id":"c8","mail":"e9"}]`)
	if rec := e.mustRun("g"); rec.Read != 4 || rec.Written != 4 {
		t.Errorf("key change: run = %+v; want 4 entities emitted", rec)
	}
	got := latest(t, e.store, "g")
	if !strings.Contains(got["0|p9|1|c8|1|c9"], `"mail":["e9","e9"]`) || got["0|p8"] == "" ||
		!strings.Contains(got["0|p8|1|c8"], `"$replaced":true`) || !strings.Contains(got["0|p9|1|c9"], `"$replaced":true`) {
		t.Errorf("after the key change: %v", got)
	}
	before := latest(t, e.store, "g")
	rec, err := e.eng.Run(context.Background(), "g", engine.RunOptions{Reset: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SyncType != "full" || rec.Written != 0 || rec.Deleted != 0 || rec.Unchanged != 50 {
		t.Errorf("full run = %+v; want every cluster emitted unchanged", rec)
	}
	if after := latest(t, e.store, "g"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("a full run changed the output")
	}
	if err := pipes.CheckMergeIndex(context.Background(), e.store, e.eng.Plan.Pipe("g").Source); err != nil {
		t.Fatal(err)
	}
}

// TestMergeFailedRunResumes: a run that fails after part of a chunk's
// output was committed leaves the indexes and the token as they were;
// the next run computes the same output again and completes it.
func TestMergeFailedRunResumes(t *testing.T) {
	e := setup(t, `[{"_id":"g","type":"pipe","batch_size":1,"checkpoint_interval":1,
	  "source":{"type":"merge","version":2,"datasets":["crm p","erp c"],"equality":[["eq","p.email","c.mail"]]},
	  "transform":{"type":"jq","expression":"if .boom == true then error(\"boom\") else . end"}}]`, nil)
	crm, erp := pairs(1, 4, "")
	putJSON(t, e.store, "crm", 0, crm)
	putJSON(t, e.store, "erp", 0, erp)
	e.mustRun("g")
	token := e.since("g")
	putJSON(t, e.store, "erp", 0, `[{"_id":"c1","mail":"e2"},{"_id":"c2","mail":"e1"}]`)
	putJSON(t, e.store, "crm", 0, `[{"_id":"p4","email":"e4","boom":true}]`)
	if _, err := e.run("g"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("run = %v; want the jq error", err)
	}
	// Output before the failing batch was committed, the token and the
	// indexes were not.
	if got := latest(t, e.store, "g"); !strings.Contains(got["0|p1|1|c1"], `"$replaced":true`) {
		t.Errorf("expected the first batches committed: %v", got)
	}
	if e.since("g") != token {
		t.Errorf("token moved: %q -> %q", token, e.since("g"))
	}
	src := e.eng.Plan.Pipe("g").Source
	if err := pipes.CheckMergeIndex(context.Background(), e.store, src); err != nil {
		t.Fatal(err)
	}
	// The committed batches journaled their _ids.
	if j, _ := pipes.MergeJournal(context.Background(), e.store, src); len(j) != 4 {
		t.Errorf("journal = %v; want the 4 _ids committed before the failing batch", j)
	}
	putJSON(t, e.store, "crm", 0, `[{"_id":"p4","email":"e4","boom":false}]`)
	e.mustRun("g")
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|p1|1|c1","_deleted":true,"$replaced":true,"$ids":["~:crm:p1","~:erp:c1"]},
	  {"_id":"0|p2|1|c2","_deleted":true,"$replaced":true,"$ids":["~:crm:p2","~:erp:c2"]},
	  {"_id":"0|p1|1|c2","$ids":["~:crm:p1","~:erp:c2"],"email":"e1","mail":"e1"},
	  {"_id":"0|p2|1|c1","$ids":["~:crm:p2","~:erp:c1"],"email":"e2","mail":"e2"},
	  {"_id":"0|p3|1|c3","$ids":["~:crm:p3","~:erp:c3"],"email":"e3","mail":"e3"},
	  {"_id":"0|p4|1|c4","$ids":["~:crm:p4","~:erp:c4"],"email":"e4","mail":"e4","boom":false}]`)
	if err := pipes.CheckMergeIndex(context.Background(), e.store, src); err != nil {
		t.Fatal(err)
	}
	if j, _ := pipes.MergeJournal(context.Background(), e.store, src); len(j) != 0 {
		t.Errorf("journal = %v after a complete run", j)
	}
}

// reconfigure compiles another config for the same store.
func (e *env) reconfigure(config string) {
	e.t.Helper()
	e.eng = engine.New(e.store, enginetest.Plan(e.t, all.Registry(), e.t.TempDir(), config), nil)
}

// TestMergeConfigChangeAndReset: after the identity changes, a full run
// renames every cluster; the old _ids are replaced, not deleted, so that
// share pipes downstream do not delete anything.
func TestMergeConfigChangeAndReset(t *testing.T) {
	e := setup(t, mergePipe(""), nil)
	putJSON(t, e.store, "crm", 0, `[{"_id":"p1","email":"x"},{"_id":"p2","email":"y"}]`)
	putJSON(t, e.store, "erp", 0, `[{"_id":"c1","mail":"x"}]`)
	e.mustRun("g")
	e.reconfigure(mergePipe(`"identity":"first",`))
	rec, err := e.eng.Run(context.Background(), "g", engine.RunOptions{Reset: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Deleted != 0 {
		t.Errorf("run = %+v; deletion tracking should find nothing", rec)
	}
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|p1|1|c1","_deleted":true,"$replaced":true,"$ids":["~:crm:p1","~:erp:c1"]},
	  {"_id":"0|p2","_deleted":true,"$replaced":true,"$ids":["~:crm:p2"]},
	  {"_id":"p1","$ids":["~:crm:p1","~:erp:c1"],"email":"x","mail":"x"},
	  {"_id":"p2","$ids":["~:crm:p2"],"email":"y"}]`)
}

// TestMergeDatasetRemoved: after a dataset is removed from the config, a
// full run drops its entities from the clusters (their _ids are replaced)
// and deletion tracking deletes the clusters made of them alone.
func TestMergeDatasetRemoved(t *testing.T) {
	e := setup(t, `[{"_id":"g","type":"pipe","source":{"type":"merge","datasets":["A a","B b","C c"],"equality_sets":[["a.k","b.k","c.k"]]}}]`, nil)
	putJSON(t, e.store, "A", 0, `[{"_id":"a1","k":1}]`)
	putJSON(t, e.store, "B", 0, `[{"_id":"b1","k":1}]`)
	putJSON(t, e.store, "C", 0, `[{"_id":"c1","k":1},{"_id":"c2","k":2}]`)
	e.mustRun("g")
	e.reconfigure(`[{"_id":"g","type":"pipe","source":{"type":"merge","datasets":["A a","B b"],"equality_sets":[["a.k","b.k"]]}}]`)
	rec, err := e.eng.Run(context.Background(), "g", engine.RunOptions{Reset: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Deleted != 1 {
		t.Errorf("run = %+v; want 2|c2 deleted by deletion tracking", rec)
	}
	wantLatest(t, e.store, "g", `[
	  {"_id":"0|a1|1|b1|2|c1","_deleted":true,"$replaced":true,"$ids":["~:A:a1","~:B:b1","~:C:c1"]},
	  {"_id":"0|a1|1|b1","$ids":["~:A:a1","~:B:b1"],"k":[1,1]},
	  {"_id":"2|c2","_deleted":true,"$ids":["~:C:c2"],"k":2}]`)
	if err := pipes.CheckMergeIndex(context.Background(), e.store, e.eng.Plan.Pipe("g").Source); err != nil {
		t.Fatal(err)
	}
}

// TestMergeInAPipeline runs the match-and-merge of an initial sync: two
// collected datasets, the merge, and a transform pipe per system that
// finds the system's own id in $ids; ferry run's loop settles it.
func TestMergeInAPipeline(t *testing.T) {
	e := setup(t, `[
	 {"_id":"crm-company","type":"pipe","source":{"type":"embedded","entities":[
	   {"_id":"1","name":"Acme","orgnr":"911"},{"_id":"2","name":"Beta","orgnr":null}]}},
	 {"_id":"erp-customer","type":"pipe","source":{"type":"embedded","entities":[
	   {"_id":"A-7","title":"ACME AS","org_no":"911"},{"_id":"A-8","title":"Gamma","org_no":"922"}]}},
	 {"_id":"global-company","type":"pipe","source":{"type":"merge","version":2,"identity":"first",
	   "datasets":["crm-company crm","erp-customer erp"],"equality_sets":[["crm.orgnr","erp.org_no"]]}},
	 {"_id":"erp-customer-transform","type":"pipe","source":{"type":"dataset","dataset":"global-company"},
	  "transform":{"type":"jq","expression":"{_id, _deleted, \"$replaced\": .[\"$replaced\"], erp_id: ([.[\"$ids\"][] | select(startswith(\"~:erp-customer:\")) | ltrimstr(\"~:erp-customer:\")] | first)}"}}]`, nil)
	if _, err := e.eng.RunUntilStable(context.Background(), nil, engine.RunOptions{}, 10); err != nil {
		t.Fatal(err)
	}
	wantLatest(t, e.store, "erp-customer-transform", `[
	  {"_id":"1","$replaced":null,"erp_id":"A-7"},
	  {"_id":"2","$replaced":null,"erp_id":null},
	  {"_id":"A-8","$replaced":null,"erp_id":"A-8"}]`)
}

func TestMergeVersion(t *testing.T) {
	for _, v := range []string{"1", "2"} {
		e := setup(t, `[{"_id":"g","type":"pipe","source":{"type":"merge","version":`+v+`,"datasets":["a"]}}]`, nil)
		putJSON(t, e.store, "a", 0, `[{"_id":"x"}]`)
		e.mustRun("g")
		wantLatest(t, e.store, "g", `[{"_id":"0|x","$ids":["~:a:x"]}]`)
	}
	if msg := compileErr(t, `{"_id":"p","type":"pipe","source":{"type":"merge","version":3,"datasets":["a"]}}`); !strings.Contains(msg, "/source/version") {
		t.Errorf("version 3: %s", msg)
	}
}

// TestMergeFullRunRepairsIndexes: an incremental run refuses corrupt
// index records; a full run rebuilds what it meets: undecodable records,
// a lost index entry and a leftover cluster that would block an _id.
func TestMergeFullRunRepairsIndexes(t *testing.T) {
	ctx := context.Background()
	e := setup(t, mergePipe(""), nil)
	crm, erp := pairs(1, 5, "")
	putJSON(t, e.store, "crm", 0, crm)
	putJSON(t, e.store, "erp", 0, erp)
	e.mustRun("g")
	want := latest(t, e.store, "g")
	src := e.eng.Plan.Pipe("g").Source
	ns := src.(interface{ Namespace() string }).Namespace()
	keys, _ := e.store.ListKV(ctx, ns)
	var indexKey string
	for _, k := range keys {
		if strings.HasPrefix(k, "k/") {
			indexKey = k
		}
	}
	e.store.PutKV(ctx, ns, pipes.MergeMemberKey("crm", "p1"), []byte{9, 9})
	e.store.DeleteKV(ctx, ns, indexKey)
	e.store.PutKV(ctx, ns, pipes.MergeClusterKey("0|p6|1|c6"), []byte{1, 0, 1, 'x', 0})
	putJSON(t, e.store, "crm", 0, `[{"_id":"p1","email":"e1","n":1}]`)
	if _, err := e.run("g"); err == nil || !strings.Contains(err.Error(), "corrupt merge index (run the pipe with --reset to rebuild it)") {
		t.Fatalf("run = %v; want the corruption reported", err)
	}
	if err := pipes.CheckMergeIndex(ctx, e.store, src); err == nil {
		t.Fatal("the damage went unnoticed by CheckMergeIndex")
	}
	putJSON(t, e.store, "crm", 0, `[{"_id":"p6","email":"e6"}]`)
	putJSON(t, e.store, "erp", 0, `[{"_id":"c6","mail":"e6"}]`)
	if _, err := e.eng.Run(ctx, "g", engine.RunOptions{Reset: true}); err != nil {
		t.Fatal(err)
	}
	if err := pipes.CheckMergeIndex(ctx, e.store, src); err != nil {
		t.Fatal(err)
	}
	got := latest(t, e.store, "g")
	want["0|p1|1|c1"] = canon(t, `{"_id":"0|p1|1|c1","$ids":["~:crm:p1","~:erp:c1"],"email":"e1","mail":"e1","n":1}`)
	want["0|p6|1|c6"] = canon(t, `{"_id":"0|p6|1|c6","$ids":["~:crm:p6","~:erp:c6"],"email":"e6","mail":"e6"}`)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the repair:\n got  %v\n want %v", got, want)
	}
	// Incremental runs work on the repaired indexes.
	putJSON(t, e.store, "erp", 0, `[{"_id":"c2","mail":"e1"}]`)
	e.mustRun("g")
	if got := latest(t, e.store, "g"); got["0|p1|1|c1|1|c2"] == "" || got["0|p2"] == "" {
		t.Errorf("after an incremental run: %v", got)
	}
}

// TestMergeDatasetRemovedSingletons: removing a dataset whose entities
// merged with nothing leaves nothing to replace; the full run's last
// (empty) batch still commits the dropped members, and deletion tracking
// deletes their entities.
func TestMergeDatasetRemovedSingletons(t *testing.T) {
	ctx := context.Background()
	e := setup(t, `[{"_id":"g","type":"pipe","source":{"type":"merge","datasets":["A a","C c"],"equality_sets":[["a.k","c.k"]]}}]`, nil)
	putJSON(t, e.store, "A", 0, `[{"_id":"a1","k":1}]`)
	putJSON(t, e.store, "C", 0, `[{"_id":"c1","k":2},{"_id":"c2","k":3}]`)
	e.mustRun("g")
	e.reconfigure(`[{"_id":"g","type":"pipe","source":{"type":"merge","datasets":["A a"],"equality_sets":[["a.k"]]}}]`)
	// Two of three entities go: the deletion guard refuses until the
	// deletions are accepted.
	if rec, err := e.eng.Run(ctx, "g", engine.RunOptions{Reset: true}); err == nil || rec.Deleted != 0 || rec.WouldDelete != 2 {
		t.Fatalf("without --accept-deletes: run = %+v, %v; want the deletion guard to refuse 2 deletions", rec, err)
	}
	rec, err := e.eng.Run(ctx, "g", engine.RunOptions{Reset: true, AcceptDeletes: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Deleted != 2 || rec.Unchanged != 1 {
		t.Errorf("run = %+v; want 1|c1 and 1|c2 deleted, 0|a1 unchanged", rec)
	}
	if err := pipes.CheckMergeIndex(ctx, e.store, e.eng.Plan.Pipe("g").Source); err != nil {
		t.Fatal(err)
	}
	if keys, _ := e.store.ListKV(ctx, "merge:g"); len(keys) != 5 { // a1: member, key, cluster; count, progress
		t.Errorf("namespace holds %d keys: %v", len(keys), keys)
	}
}
