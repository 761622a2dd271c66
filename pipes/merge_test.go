package pipes_test

import (
	"context"
	"encoding/json"
	"sort"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes"
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
