package rest_test

import (
	"context"
	encjson "encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

func jnum(n int) encjson.Number { return encjson.Number(fmt.Sprint(n)) }

// TestShareOfflineLookup: with SetLookup, Plan answers lookups from the
// function and sends no request; decisions are those a lookup of the same
// records would give.
func TestShareOfflineLookup(t *testing.T) {
	e := newShareEnv(t, fakeapi.Options{}, "")
	based := func(id int, name string) map[string]any {
		return map[string]any{"id": jnum(id), "name": name}
	}
	desired := []map[string]any{
		// Unchanged: equals $based_on, no lookup at all.
		{"_id": "a", "id": jnum(1), "name": "A", "$based_on": based(1, "A")},
		// Changed here, the system as collected: update.
		{"_id": "b", "id": jnum(2), "name": "B2", "$based_on": based(2, "B")},
		// Changed here and in the system: not overwritten.
		{"_id": "c", "id": jnum(3), "name": "C2", "$based_on": based(3, "C")},
		// Gone from the system: not updated.
		{"_id": "d", "id": jnum(4), "name": "D2", "$based_on": based(4, "D")},
		// New: insert, no lookup.
		{"_id": "e", "name": "E", "$ids": []any{"e"}, "$origin": "e"},
	}
	e.compile(desired)
	if _, err := e.eng.Run(context.Background(), "crm-customer-transform", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	system := map[string]map[string]any{
		"2": {"id": jnum(2), "name": "B", "version": jnum(7)},
		"3": {"id": jnum(3), "name": "C in the system"},
	}
	var (
		mu    sync.Mutex
		asked []string
	)
	sh := e.eng.Plan.Pipe("crm-customer-share").Sharer.(*rest.Share)
	sh.SetLookup(func(ctx context.Context, ent engine.Entity, key any) (map[string]any, bool, error) {
		k := fmt.Sprint(key)
		mu.Lock() // entities are planned concurrently
		asked = append(asked, k)
		mu.Unlock()
		if ek, ok, err := sh.Key(ctx, ent); err != nil || !ok || fmt.Sprint(ek) != k {
			t.Errorf("Key(%v) = %v %v %v, want the lookup's key %s", ent["_id"], ek, ok, err, k)
		}
		rec, ok := system[k]
		return rec, ok, nil
	})
	got := map[string]engine.ShareOp{}
	if _, err := e.eng.PlanShare(context.Background(), "crm-customer-share", engine.RunOptions{}, func(a *engine.ShareAction) {
		got[a.ID] = a.Op
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]engine.ShareOp{"a": engine.ShareSkipUnchanged, "b": engine.ShareUpdate, "c": engine.ShareSkipModified,
		"d": engine.ShareSkipModified, "e": engine.ShareInsert}
	for id, op := range want {
		if got[id] != op {
			t.Errorf("%s: %s, want %s", id, got[id], op)
		}
	}
	sort.Strings(asked)
	if fmt.Sprint(asked) != "[2 3 4]" {
		t.Errorf("lookups for %v, want [2 3 4]", asked)
	}
	if n := len(e.api.Requests()); n != 0 {
		t.Errorf("%d requests reached the system", n)
	}
}
