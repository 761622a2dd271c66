package pipes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/pipes"
)

// putJSON writes entities (a JSON array) into ds in one transaction with
// write time ts (µs; 0 = now).
func putJSON(t testing.TB, s engine.Store, ds string, ts int64, entities string) {
	t.Helper()
	v, err := engine.DecodeValue([]byte(entities))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ts == 0 {
		ts = 1
	}
	for _, e := range v.([]any) {
		p, err := engine.Prepare(e.(map[string]any))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tx.Put(ds, &p, ts); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func openStore(t testing.TB) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "data"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ids runs a lookup and returns the sorted _ids found.
func ids(t testing.TB, l *pipes.Lookups, s engine.Store, ds string, path string, values ...any) string {
	t.Helper()
	ents, err := l.LookupIn(context.Background(), s, ds, strings.Split(path, "."), values)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, ok := e["_updated"]; !ok {
			t.Errorf("lookup result %v has no _updated", e)
		}
		out = append(out, e["_id"].(string))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func TestLookupIndexIncremental(t *testing.T) {
	s := openStore(t)
	l := pipes.NewLookups()
	putJSON(t, s, "c", 0, `[
		{"_id":"a","k":1,"ni":"~:crm:1","tags":["x","y"],"addr":[{"zip":"0150"},{"zip":"5003"}]},
		{"_id":"b","k":1.0,"ni":"1","tags":"x","addr":{"zip":"0150"}},
		{"_id":"c","k":null,"tags":[]},
		{"_id":"d","k":2,"_deleted":true}]`)

	cases := []struct {
		path   string
		values []any
		want   string
	}{
		{"k", []any{json.Number("1")}, "a,b"},                 // numbers by value: 1 == 1.0
		{"k", []any{json.Number("1e0")}, "a,b"},               // and 1e0
		{"k", []any{json.Number("2")}, ""},                    // deleted entities are not found
		{"k", []any{nil}, ""},                                 // null is never looked up
		{"ni", []any{"~:crm:1"}, "a"},                         // NIs by full string
		{"ni", []any{"crm:1"}, ""},                            // never equal to the plain id
		{"tags", []any{"y"}, "a"},                             // list values match by element
		{"tags", []any{"x"}, "a,b"},                           //
		{"addr.zip", []any{"0150"}, "a,b"},                    // lists spread at every step
		{"addr.zip", []any{"5003", "nope"}, "a"},              // any of several values
		{"tags", []any{[]any{"q", "y"}}, "a"},                 // list lookup values by element
		{"_id", []any{"b", "d", "zz"}, "b"},                   // _id path: direct reads, deleted skipped
		{"k", []any{json.Number("1"), "1"}, "a,b"},            // mixed types do not collide
		{"ni", []any{json.Number("1")}, ""},                   // the string "1" is not the number 1
		{"missing", []any{"x"}, ""},                           //
		{"k", []any{true}, ""},                                //
		{"k", []any{json.Number("1.000000001")}, ""},          //
		{"k", []any{json.Number("0001")}, "a,b"},              // leading zeros
		{"k", []any{json.Number("1e99999999")}, ""},           // huge exponents stay text
		{"addr", []any{map[string]any{"zip": "0150"}}, "a,b"}, // dicts by canonical JSON
	}
	for _, c := range cases {
		if got := ids(t, l, s, "c", c.path, c.values...); got != c.want {
			t.Errorf("lookup %s = %v: got %q, want %q", c.path, c.values, got, c.want)
		}
	}

	// Changes after the index was built: a re-keyed, b deleted, e new, d
	// undeleted.
	putJSON(t, s, "c", 0, `[{"_id":"a","k":3},{"_id":"b","k":1,"_deleted":true},{"_id":"e","k":1},{"_id":"d","k":2}]`)
	for _, c := range []struct {
		path, want string
		v          any
	}{
		{"k", "e", json.Number("1")},
		{"k", "a", json.Number("3")},
		{"k", "d", json.Number("2")},
		{"tags", "", "x"}, // a lost its tags, b is deleted
	} {
		if got := ids(t, l, s, "c", c.path, c.v); got != c.want {
			t.Errorf("after change, lookup %s = %v: got %q, want %q", c.path, c.v, got, c.want)
		}
	}

	// A dataset deleted and rebuilt with fewer versions is re-indexed.
	if err := s.DeleteDataset(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, l, s, "c", "k", json.Number("1")); got != "" {
		t.Errorf("after delete: %q", got)
	}
	putJSON(t, s, "c", 0, `[{"_id":"z","k":1}]`)
	if got := ids(t, l, s, "c", "k", json.Number("1")); got != "z" {
		t.Errorf("after recreate: %q", got)
	}
	// An unknown dataset has nothing.
	if got := ids(t, l, s, "nope", "k", json.Number("1")); got != "" {
		t.Errorf("unknown dataset: %q", got)
	}
}

func TestLookupNeedsStoreInContext(t *testing.T) {
	l := pipes.NewLookups()
	if _, err := l.Lookup(context.Background(), "c", []string{"k"}, []any{"x"}); err == nil {
		t.Fatal("lookup without a store in the context succeeded")
	}
	s := openStore(t)
	putJSON(t, s, "c", 0, `[{"_id":"a","k":"x"}]`)
	ents, err := l.Lookup(engine.WithStore(context.Background(), s), "c", []string{"k"}, []any{"x"})
	if err != nil || len(ents) != 1 {
		t.Fatalf("lookup = %v, %v", ents, err)
	}
}

// TestLookupConcurrent runs lookups from several goroutines while the
// dataset changes; run with -race. Every writer commit makes key "k<i>"
// point at entity "e<i>" only, so after a commit is visible a lookup of
// that key must find exactly that entity.
func TestLookupConcurrent(t *testing.T) {
	s := openStore(t)
	l := pipes.NewLookups()
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				key := fmt.Sprintf("k%d", i%7)
				ents, err := l.LookupIn(context.Background(), s, "c", []string{"k"}, []any{key})
				if err != nil {
					errs <- err
					return
				}
				for _, e := range ents {
					if e["k"] != key {
						// Lookup may return extra candidates only when
						// the entity changed after indexing; it must
						// never return a deleted one.
						if d, _ := e["_deleted"].(bool); d {
							errs <- fmt.Errorf("deleted entity returned: %v", e)
							return
						}
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		putJSON(t, s, "c", 0, fmt.Sprintf(`[{"_id":"e%d","k":"k%d"}]`, i, i%7))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// After the writes every key has its entities.
	for k := 0; k < 7; k++ {
		var want []string
		for i := k; i < n; i += 7 {
			want = append(want, fmt.Sprintf("e%d", i))
		}
		sort.Strings(want)
		if got := ids(t, l, s, "c", "k", fmt.Sprintf("k%d", k)); got != strings.Join(want, ",") {
			t.Errorf("k%d: got %q, want %q", k, got, strings.Join(want, ","))
		}
	}
}

// BenchmarkLookupWarm measures a lookup against a built index of 10,000
// entities with nothing new to scan.
func BenchmarkLookupWarm(b *testing.B) {
	s := openStore(b)
	var sb strings.Builder
	sb.WriteString("[")
	for i := 0; i < 10000; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"_id":"e%d","$generated_id":%d,"$origin":"~:o:%d"}`, i, i, i)
	}
	sb.WriteString("]")
	putJSON(b, s, "share", 0, sb.String())
	l := pipes.NewLookups()
	ctx := context.Background()
	if _, err := l.LookupIn(ctx, s, "share", []string{"$generated_id"}, []any{json.Number("1")}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ents, err := l.LookupIn(ctx, s, "share", []string{"$generated_id"}, []any{json.Number(fmt.Sprint(i % 10000))})
		if err != nil || len(ents) != 1 {
			b.Fatal(ents, err)
		}
	}
}
