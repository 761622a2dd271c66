// Package storetest is the contract every engine.Store implementation must
// pass. An implementation's test calls Run with a function that opens a
// fresh, empty store:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) engine.Store { ... })
//	}
//
// The cases cover the write rule, offsets, the _previous chain, scans,
// counts, transactions, pipe state and run logs (see engine.Store).
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
)

// Run runs the contract suite. open must return a new empty store; the
// suite closes it.
func Run(t *testing.T, open func(t *testing.T) engine.Store) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s engine.Store)
	}{
		{"WriteRule", testWriteRule},
		{"OffsetsMonotonic", testOffsetsMonotonic},
		{"PreviousChainAndHistory", testHistory},
		{"Scan", testScan},
		{"Get", testGet},
		{"Counts", testCounts},
		{"Rollback", testRollback},
		{"LatestAndForEachLiveSeePending", testPending},
		{"PopulatedAndEnsure", testPopulated},
		{"PipeState", testPipeState},
		{"Runs", testRuns},
		{"DeleteDataset", testDeleteDataset},
		{"BeginHonoursContext", testBeginContext},
		{"Changed", testChanged},
		{"SameRaw", testSameRaw},
		{"LatestOnlyScansWithCache", testScanCache},
		{"KV", testKV},
		{"KVInTransaction", testKVTx},
		{"KVAnyNames", testKVNames},
		{"ListEntities", TestListEntities},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			c.fn(t, s)
		})
	}
}

// Prep decodes JSON text into a prepared entity, failing the test on error.
func Prep(t testing.TB, text string) engine.Prepared {
	t.Helper()
	e, err := engine.DecodeEntity([]byte(text))
	if err != nil {
		t.Fatalf("decoding %s: %v", text, err)
	}
	p, err := engine.Prepare(e)
	if err != nil {
		t.Fatalf("preparing %s: %v", text, err)
	}
	return p
}

func begin(t *testing.T, s engine.Store) engine.WriteTx {
	t.Helper()
	tx, err := s.Begin(context.Background())
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	return tx
}

func commit(t *testing.T, tx engine.WriteTx) {
	t.Helper()
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func put(t *testing.T, tx engine.WriteTx, ds, text string, ts int64) (engine.PutResult, engine.Record) {
	t.Helper()
	p := Prep(t, text)
	res, rec, err := tx.Put(ds, &p, ts)
	if err != nil {
		t.Fatalf("Put %s: %v", text, err)
	}
	return res, rec
}

// write puts the entities in one committed transaction and returns the
// results.
func write(t *testing.T, s engine.Store, ds string, texts ...string) []engine.PutResult {
	t.Helper()
	tx := begin(t, s)
	var out []engine.PutResult
	for i, text := range texts {
		res, _ := put(t, tx, ds, text, int64(1000+i))
		out = append(out, res)
	}
	commit(t, tx)
	return out
}

func info(t *testing.T, s engine.Store, ds string) engine.DatasetInfo {
	t.Helper()
	in, ok, err := s.Dataset(context.Background(), ds)
	if err != nil {
		t.Fatalf("Dataset(%q): %v", ds, err)
	}
	if !ok {
		t.Fatalf("Dataset(%q) not found", ds)
	}
	return in
}

func scanAll(t *testing.T, s engine.Store, ds string, opts engine.ScanOptions) ([]engine.Record, uint64) {
	t.Helper()
	var recs []engine.Record
	next, err := s.Scan(context.Background(), ds, opts, func(r engine.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q, %+v): %v", ds, opts, err)
	}
	return recs, next
}

func offsets(recs []engine.Record) string {
	var b bytes.Buffer
	for i, r := range recs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%d", r.ID, r.Offset)
	}
	return b.String()
}

func testWriteRule(t *testing.T, s engine.Store) {
	tx := begin(t, s)
	steps := []struct {
		text    string
		want    engine.PutResult
		off     uint64
		prev    uint64
		hasPrev bool
	}{
		{`{"_id":"a","v":1}`, engine.Appended, 0, 0, false},
		{`{"_id":"a","v":1}`, engine.Unchanged, 0, 0, false},
		// Reserved keys other than _id/_deleted do not count.
		{`{"_id":"a","v":1,"_ts":5,"_updated":9,"_foo":1}`, engine.Unchanged, 0, 0, false},
		{`{"_id":"a","v":1,"_deleted":false}`, engine.Unchanged, 0, 0, false},
		{`{"_id":"a","v":2}`, engine.Appended, 1, 0, true},
		{`{"_id":"a","v":2,"_deleted":true}`, engine.Appended, 2, 1, true},
		{`{"_id":"a","v":2,"_deleted":true}`, engine.Unchanged, 0, 0, false},
		{`{"_id":"a","v":2}`, engine.Appended, 3, 2, true},
		{`{"_id":"b","v":2}`, engine.Appended, 4, 0, false},
		// "$" keys are data.
		{`{"_id":"b","v":2,"$ids":["~:x:b"]}`, engine.Appended, 5, 4, true},
	}
	for i, st := range steps {
		p := Prep(t, st.text)
		res, rec, err := tx.Put("ds", &p, int64(100+i))
		if err != nil {
			t.Fatalf("step %d Put %s: %v", i, st.text, err)
		}
		if res != st.want {
			t.Fatalf("step %d Put %s = %v, want %v", i, st.text, res, st.want)
		}
		if res != engine.Appended {
			continue
		}
		if rec.Offset != st.off || rec.HasPrev != st.hasPrev || (st.hasPrev && rec.Previous != st.prev) {
			t.Errorf("step %d: record offset %d prev %d/%v, want %d prev %d/%v", i, rec.Offset, rec.Previous, rec.HasPrev, st.off, st.prev, st.hasPrev)
		}
		if rec.ID != p.ID || rec.Hash != p.Hash || rec.Deleted != p.Deleted || !bytes.Equal(rec.Body, p.Body) || rec.TS != int64(100+i) {
			t.Errorf("step %d: record %+v does not match prepared %+v", i, rec, p)
		}
	}
	commit(t, tx)
	in := info(t, s, "ds")
	if in.Versions != 6 || in.LastOffset != 5 || in.Entities != 2 || in.Deleted != 0 {
		t.Errorf("info = %+v, want 6 versions, last offset 5, 2 entities, 0 deleted", in)
	}
	// The rule holds across transactions too.
	if got := write(t, s, "ds", `{"_id":"a","v":2}`, `{"_id":"b","v":3}`); got[0] != engine.Unchanged || got[1] != engine.Appended {
		t.Errorf("second tx results = %v, want [Unchanged Appended]", got)
	}
}

func testOffsetsMonotonic(t *testing.T, s engine.Store) {
	for round := 0; round < 3; round++ {
		tx := begin(t, s)
		for i := 0; i < 4; i++ {
			put(t, tx, "ds", fmt.Sprintf(`{"_id":"e%d","round":%d}`, i, round), 1)
			// Another dataset has its own offsets.
			put(t, tx, "other", fmt.Sprintf(`{"_id":"o%d-%d"}`, round, i), 1)
		}
		commit(t, tx)
	}
	recs, next := scanAll(t, s, "ds", engine.ScanOptions{})
	if len(recs) != 12 || next != 12 {
		t.Fatalf("scan got %d records, next %d; want 12, 12", len(recs), next)
	}
	for i, r := range recs {
		if r.Offset != uint64(i) {
			t.Fatalf("record %d has offset %d: offsets must run 0,1,2,... (%s)", i, r.Offset, offsets(recs))
		}
	}
	if in := info(t, s, "other"); in.LastOffset != 11 || in.Versions != 12 {
		t.Errorf("other: %+v, want last offset 11 and 12 versions", in)
	}
}

func testHistory(t *testing.T, s engine.Store) {
	write(t, s, "ds", `{"_id":"x","n":1}`, `{"_id":"y","n":1}`)
	write(t, s, "ds", `{"_id":"x","n":2}`)
	write(t, s, "ds", `{"_id":"y","n":2}`, `{"_id":"x","n":2,"_deleted":true}`)
	hist, err := s.History(context.Background(), "ds", "x")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := offsets(hist), "x@0 x@2 x@4"; got != want {
		t.Fatalf("History(x) = %s, want %s (oldest first)", got, want)
	}
	if hist[0].HasPrev {
		t.Errorf("first version has _previous %d, want none", hist[0].Previous)
	}
	for i := 1; i < len(hist); i++ {
		if !hist[i].HasPrev || hist[i].Previous != hist[i-1].Offset {
			t.Errorf("version %d: _previous = %d/%v, want %d", i, hist[i].Previous, hist[i].HasPrev, hist[i-1].Offset)
		}
	}
	if !hist[2].Deleted || hist[1].Deleted {
		t.Errorf("deleted flags = %v %v, want false true", hist[1].Deleted, hist[2].Deleted)
	}
	e, err := hist[2].Entity()
	if err != nil {
		t.Fatal(err)
	}
	if e["_deleted"] != true || fmt.Sprint(e["_previous"]) != "2" || fmt.Sprint(e["_updated"]) != "4" || e["n"] == nil {
		t.Errorf("Entity() of deleted version = %v", e)
	}
	none, err := s.History(context.Background(), "ds", "nope")
	if err != nil || len(none) != 0 {
		t.Errorf("History(unknown id) = %v, %v; want empty", none, err)
	}
	none, err = s.History(context.Background(), "no-such-dataset", "x")
	if err != nil || len(none) != 0 {
		t.Errorf("History(unknown dataset) = %v, %v; want empty", none, err)
	}
}

func testScan(t *testing.T, s engine.Store) {
	// Offsets: a@0 b@1 c@2 a@3 d@4 b@5
	write(t, s, "ds", `{"_id":"a","n":1}`, `{"_id":"b","n":1}`, `{"_id":"c","n":1}`)
	write(t, s, "ds", `{"_id":"a","n":2}`, `{"_id":"d","n":1}`, `{"_id":"b","n":2,"_deleted":true}`)
	cases := []struct {
		opts engine.ScanOptions
		want string
		next uint64
	}{
		{engine.ScanOptions{}, "a@0 b@1 c@2 a@3 d@4 b@5", 6},
		{engine.ScanOptions{From: 2}, "c@2 a@3 d@4 b@5", 6},
		{engine.ScanOptions{From: 1, Limit: 2}, "b@1 c@2", 3},
		{engine.ScanOptions{From: 6}, "", 6},
		{engine.ScanOptions{From: 100}, "", 100},
		{engine.ScanOptions{LatestOnly: true}, "c@2 a@3 d@4 b@5", 6},
		// Skipped versions count as examined: the next offset is past them.
		{engine.ScanOptions{LatestOnly: true, Limit: 1}, "c@2", 3},
		{engine.ScanOptions{LatestOnly: true, From: 3, Limit: 2}, "a@3 d@4", 5},
		{engine.ScanOptions{LatestOnly: true, From: 0, Limit: 0}, "c@2 a@3 d@4 b@5", 6},
	}
	for _, c := range cases {
		recs, next := scanAll(t, s, "ds", c.opts)
		if got := offsets(recs); got != c.want || next != c.next {
			t.Errorf("Scan(%+v) = %q next %d, want %q next %d", c.opts, got, next, c.want, c.next)
		}
	}
	// Continuing from the returned offset visits every version once.
	var all []engine.Record
	from := uint64(0)
	for i := 0; i < 10; i++ {
		recs, next := scanAll(t, s, "ds", engine.ScanOptions{From: from, Limit: 4})
		all = append(all, recs...)
		if next == from {
			break
		}
		from = next
	}
	if got := offsets(all); got != "a@0 b@1 c@2 a@3 d@4 b@5" {
		t.Errorf("paged scan = %q", got)
	}
	// fn's error stops the scan and is returned.
	stop := errors.New("stop")
	n := 0
	_, err := s.Scan(context.Background(), "ds", engine.ScanOptions{}, func(engine.Record) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Scan with failing fn: err %v after %d calls, want stop after 1", err, n)
	}
	// Records are copies the caller may keep.
	recs, _ := scanAll(t, s, "ds", engine.ScanOptions{})
	write(t, s, "ds", `{"_id":"e","n":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	if string(recs[0].Body) != `{"_id":"a","n":1}` {
		t.Errorf("kept record body changed to %s", recs[0].Body)
	}
	// An unknown dataset scans as empty.
	recs, _ = scanAll(t, s, "no-such", engine.ScanOptions{})
	if len(recs) != 0 {
		t.Errorf("scan of unknown dataset = %d records", len(recs))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Scan(ctx, "ds", engine.ScanOptions{}, func(engine.Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Scan with cancelled ctx: %v, want context.Canceled", err)
	}
}

func testGet(t *testing.T, s engine.Store) {
	write(t, s, "ds", `{"_id":"a","n":1}`, `{"_id":"b","n":1}`)
	write(t, s, "ds", `{"_id":"a","n":2}`)
	r, ok, err := s.Get(context.Background(), "ds", "a")
	if err != nil || !ok {
		t.Fatalf("Get(a) = %v, %v", ok, err)
	}
	if r.Offset != 2 || string(r.Body) != `{"_id":"a","n":2}` || !r.HasPrev || r.Previous != 0 || r.TS != 1000 {
		t.Errorf("Get(a) = %+v", r)
	}
	if _, ok, err := s.Get(context.Background(), "ds", "zz"); ok || err != nil {
		t.Errorf("Get(unknown id) = %v, %v; want not found, nil", ok, err)
	}
	if _, ok, err := s.Get(context.Background(), "nods", "a"); ok || err != nil {
		t.Errorf("Get(unknown dataset) = %v, %v; want not found, nil", ok, err)
	}
}

func testCounts(t *testing.T, s engine.Store) {
	type want struct{ versions, entities, deleted uint64 }
	steps := []struct {
		texts []string
		want  want
	}{
		{[]string{`{"_id":"a"}`, `{"_id":"b"}`, `{"_id":"c"}`}, want{3, 3, 0}},
		{[]string{`{"_id":"a","_deleted":true}`}, want{4, 3, 1}},
		{[]string{`{"_id":"a","_deleted":true}`}, want{4, 3, 1}},                       // unchanged
		{[]string{`{"_id":"a","_deleted":true,"x":1}`}, want{5, 3, 1}},                 // deleted -> deleted
		{[]string{`{"_id":"a"}`}, want{6, 3, 0}},                                       // undelete
		{[]string{`{"_id":"d","_deleted":true}`}, want{7, 4, 1}},                       // new id, deleted
		{[]string{`{"_id":"b","_deleted":true}`, `{"_id":"b"}`}, want{9, 4, 1}},        // flip twice in one tx
		{[]string{`{"_id":"c","_deleted":true}`, `{"_id":"d"}`}, want{11, 4, 1}},       // one each way
		{[]string{`{"_id":"c","_deleted":true}`, `{"_id":"b","x":2}`}, want{12, 4, 1}}, // c unchanged
	}
	for i, st := range steps {
		write(t, s, "ds", st.texts...)
		in := info(t, s, "ds")
		if got := (want{in.Versions, in.Entities, in.Deleted}); got != st.want {
			t.Fatalf("step %d %v: versions/entities/deleted = %v, want %v", i, st.texts, got, st.want)
		}
		if in.LastOffset != in.Versions-1 {
			t.Errorf("step %d: last offset %d with %d versions", i, in.LastOffset, in.Versions)
		}
	}
	list, err := s.Datasets(context.Background())
	if err != nil || len(list) != 1 || list[0].Name != "ds" || list[0].Versions != 12 {
		t.Errorf("Datasets() = %+v, %v", list, err)
	}
}

func testRollback(t *testing.T, s engine.Store) {
	ctx := context.Background()
	write(t, s, "keep", `{"_id":"k"}`)
	tx := begin(t, s)
	put(t, tx, "ds", `{"_id":"a"}`, 1)
	put(t, tx, "keep", `{"_id":"k","changed":true}`, 1)
	if err := tx.SetPopulated("keep"); err != nil {
		t.Fatal(err)
	}
	if err := tx.SetPipeState("p", engine.PipeState{Since: "7"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.AddRun(engine.RunRecord{Pipe: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if _, ok, err := s.Dataset(ctx, "ds"); ok || err != nil {
		t.Errorf("dataset created in a rolled back tx exists (%v, %v)", ok, err)
	}
	in := info(t, s, "keep")
	if in.Versions != 1 || in.Populated {
		t.Errorf("rolled back changes visible: %+v", in)
	}
	if r, _, _ := s.Get(ctx, "keep", "k"); string(r.Body) != `{"_id":"k"}` {
		t.Errorf("Get(k) = %s after rollback", r.Body)
	}
	if st, err := s.PipeState(ctx, "p"); err != nil || st.Since != "" {
		t.Errorf("pipe state after rollback = %+v, %v", st, err)
	}
	if runs, err := s.Runs(ctx, "p", 0); err != nil || len(runs) != 0 {
		t.Errorf("runs after rollback = %v, %v", runs, err)
	}
	// The next transaction starts where the last commit left off.
	tx = begin(t, s)
	_, rec := put(t, tx, "keep", `{"_id":"k2"}`, 1)
	commit(t, tx)
	if rec.Offset != 1 {
		t.Errorf("offset after rollback = %d, want 1", rec.Offset)
	}
	// Rollback after Commit is harmless.
	tx = begin(t, s)
	commit(t, tx)
	_ = tx.Rollback()
	tx = begin(t, s) // the writer slot was released
	tx.Rollback()
}

func testPending(t *testing.T, s engine.Store) {
	write(t, s, "ds", `{"_id":"b","n":1}`, `{"_id":"d","n":1}`, `{"_id":"e","n":1}`)
	tx := begin(t, s)
	defer tx.Rollback()
	put(t, tx, "ds", `{"_id":"c","n":1}`, 1)
	put(t, tx, "ds", `{"_id":"a","n":1}`, 1)
	put(t, tx, "ds", `{"_id":"d","n":1,"_deleted":true}`, 1)
	put(t, tx, "ds", `{"_id":"e","n":2}`, 1)
	var got []string
	err := tx.ForEachLive("ds", func(id string) error {
		got = append(got, id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[a b c e]"; fmt.Sprint(got) != want {
		t.Errorf("ForEachLive = %v, want %s (pending puts included, _id order, deleted skipped)", got, want)
	}
	r, ok, err := tx.Latest("ds", "e")
	if err != nil || !ok || r.Offset != 6 || string(r.Body) != `{"_id":"e","n":2}` {
		t.Errorf("Latest(e) in tx = %+v %v %v", r, ok, err)
	}
	if _, ok, err := tx.Latest("ds", "zz"); ok || err != nil {
		t.Errorf("Latest(unknown) = %v %v", ok, err)
	}
	if _, ok, err := tx.Latest("nods", "a"); ok || err != nil {
		t.Errorf("Latest(unknown dataset) = %v %v", ok, err)
	}
	// Puts after ForEachLive are seen by the next one.
	put(t, tx, "ds", `{"_id":"0"}`, 1)
	got = got[:0]
	tx.ForEachLive("ds", func(id string) error { got = append(got, id); return nil })
	if fmt.Sprint(got) != "[0 a b c e]" {
		t.Errorf("second ForEachLive = %v", got)
	}
	// fn may Put (deletion tracking deletes while it iterates).
	got = got[:0]
	err = tx.ForEachLive("ds", func(id string) error {
		got = append(got, id)
		p := Prep(t, fmt.Sprintf(`{"_id":%q,"_deleted":true}`, id))
		_, _, err := tx.Put("ds", &p, 2)
		return err
	})
	if err != nil || fmt.Sprint(got) != "[0 a b c e]" {
		t.Errorf("ForEachLive with Put = %v, %v", got, err)
	}
	got = got[:0]
	tx.ForEachLive("ds", func(id string) error { got = append(got, id); return nil })
	if len(got) != 0 {
		t.Errorf("after deleting every live id, ForEachLive = %v", got)
	}
	stop := errors.New("stop")
	put(t, tx, "ds", `{"_id":"a","n":9}`, 1)
	if err := tx.ForEachLive("ds", func(string) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("ForEachLive did not return fn's error: %v", err)
	}
	if err := tx.ForEachLive("nods", func(string) error { return stop }); err != nil {
		t.Errorf("ForEachLive(unknown dataset) = %v", err)
	}
}

func testPopulated(t *testing.T, s engine.Store) {
	ctx := context.Background()
	tx := begin(t, s)
	if err := tx.EnsureDataset("empty"); err != nil {
		t.Fatal(err)
	}
	if err := tx.SetPopulated("pop"); err != nil {
		t.Fatal(err)
	}
	commit(t, tx)
	e := info(t, s, "empty")
	if e.Versions != 0 || e.Populated || e.Entities != 0 {
		t.Errorf("empty dataset = %+v", e)
	}
	if p := info(t, s, "pop"); !p.Populated {
		t.Errorf("SetPopulated did not stick: %+v", p)
	}
	// EnsureDataset keeps existing data.
	write(t, s, "pop", `{"_id":"a"}`)
	tx = begin(t, s)
	tx.EnsureDataset("pop")
	commit(t, tx)
	if p := info(t, s, "pop"); p.Versions != 1 || !p.Populated {
		t.Errorf("EnsureDataset changed an existing dataset: %+v", p)
	}
	list, err := s.Datasets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Name)
	}
	if fmt.Sprint(names) != "[empty pop]" {
		t.Errorf("Datasets() names = %v, want sorted [empty pop]", names)
	}
}

func testPipeState(t *testing.T, s engine.Store) {
	ctx := context.Background()
	if st, err := s.PipeState(ctx, "p"); err != nil || st != (engine.PipeState{}) {
		t.Errorf("unknown pipe state = %+v, %v; want zero", st, err)
	}
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	want := engine.PipeState{Since: "42", LastRun: when, LastError: "boom", RescanRequested: true}
	tx := begin(t, s)
	if err := tx.SetPipeState("p", want); err != nil {
		t.Fatal(err)
	}
	if got, err := tx.PipeState("p"); err != nil || got.Since != "42" {
		t.Errorf("PipeState in tx = %+v, %v", got, err)
	}
	commit(t, tx)
	got, err := s.PipeState(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if got.Since != want.Since || !got.LastRun.Equal(want.LastRun) || got.LastError != want.LastError || got.RescanRequested != want.RescanRequested {
		t.Errorf("PipeState = %+v, want %+v", got, want)
	}
	if other, _ := s.PipeState(ctx, "q"); other.Since != "" {
		t.Errorf("state leaked to another pipe: %+v", other)
	}
}

func testRuns(t *testing.T, s engine.Store) {
	ctx := context.Background()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 5; i++ {
		tx := begin(t, s)
		if err := tx.AddRun(engine.RunRecord{Pipe: "p", Start: base.Add(time.Duration(2*i) * time.Minute), Read: int64(i)}); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			tx.AddRun(engine.RunRecord{Pipe: "q", Start: base.Add(time.Duration(2*i+1) * time.Minute), Read: int64(100 + i)})
		}
		commit(t, tx)
	}
	runs, err := s.Runs(ctx, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	var reads []int64
	for _, r := range runs {
		reads = append(reads, r.Read)
		if r.Pipe != "p" {
			t.Errorf("Runs(p) returned a run of %q", r.Pipe)
		}
	}
	if fmt.Sprint(reads) != "[4 3 2 1 0]" {
		t.Errorf("Runs(p) reads = %v, want newest first [4 3 2 1 0]", reads)
	}
	if runs[0].Seq <= runs[1].Seq {
		t.Errorf("Seq not increasing: %d then %d", runs[1].Seq, runs[0].Seq)
	}
	runs, _ = s.Runs(ctx, "p", 2)
	if len(runs) != 2 || runs[0].Read != 4 || runs[1].Read != 3 {
		t.Errorf("Runs(p, 2) = %+v", runs)
	}
	for _, c := range []struct {
		limit int
		want  string
	}{{0, "[4 3 2 101 1 100 0]"}, {4, "[4 3 2 101]"}} {
		runs, _ = s.Runs(ctx, "", c.limit)
		reads = reads[:0]
		for _, r := range runs {
			reads = append(reads, r.Read)
		}
		if fmt.Sprint(reads) != c.want {
			t.Errorf("Runs(all, %d) reads = %v, want %s (newest first across pipes)", c.limit, reads, c.want)
		}
	}
	if runs, err := s.Runs(ctx, "nobody", 0); err != nil || len(runs) != 0 {
		t.Errorf("Runs(unknown) = %v, %v", runs, err)
	}
}

func testDeleteDataset(t *testing.T, s engine.Store) {
	ctx := context.Background()
	write(t, s, "gone", `{"_id":"a"}`, `{"_id":"b"}`)
	write(t, s, "kept", `{"_id":"a"}`)
	if err := s.DeleteDataset(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Dataset(ctx, "gone"); ok {
		t.Error("deleted dataset still listed")
	}
	if _, ok, _ := s.Get(ctx, "gone", "a"); ok {
		t.Error("entity of deleted dataset still readable")
	}
	if in := info(t, s, "kept"); in.Versions != 1 {
		t.Errorf("other dataset changed: %+v", in)
	}
	if err := s.DeleteDataset(ctx, "never-existed"); err != nil {
		t.Errorf("DeleteDataset(unknown) = %v, want nil", err)
	}
	// A re-created dataset starts from offset 0 and has no old versions.
	tx := begin(t, s)
	_, rec := put(t, tx, "gone", `{"_id":"a"}`, 1)
	commit(t, tx)
	if rec.Offset != 0 || rec.HasPrev {
		t.Errorf("re-created dataset: first record %+v, want offset 0 without _previous", rec)
	}
}

func testBeginContext(t *testing.T, s engine.Store) {
	tx := begin(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tx2, err := s.Begin(ctx)
	if err == nil {
		tx2.Rollback()
		t.Fatal("Begin with a cancelled ctx while another tx is open succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Begin error = %v, want context.Canceled", err)
	}
	// A waiting Begin proceeds once the open tx ends.
	got := make(chan error, 1)
	go func() {
		tx3, err := s.Begin(context.Background())
		if err == nil {
			err = tx3.Rollback()
		}
		got <- err
	}()
	commit(t, tx)
	if err := <-got; err != nil {
		t.Errorf("Begin after commit: %v", err)
	}
}

func testChanged(t *testing.T, s engine.Store) {
	write(t, s, "ds", `{"_id":"a"}`)
	steps := []struct {
		name string
		fn   func(tx engine.WriteTx) error
		want bool
	}{
		{"nothing", func(engine.WriteTx) error { return nil }, false},
		{"unchanged put", func(tx engine.WriteTx) error {
			p := Prep(t, `{"_id":"a"}`)
			_, _, err := tx.Put("ds", &p, 1)
			return err
		}, false},
		{"reads", func(tx engine.WriteTx) error {
			_, _, err := tx.Latest("ds", "a")
			if err == nil {
				_, err = tx.PipeState("p")
			}
			return err
		}, false},
		{"appended put", func(tx engine.WriteTx) error {
			p := Prep(t, `{"_id":"b"}`)
			_, _, err := tx.Put("ds", &p, 1)
			return err
		}, true},
		{"pipe state", func(tx engine.WriteTx) error { return tx.SetPipeState("p", engine.PipeState{Since: "1"}) }, true},
		{"populated", func(tx engine.WriteTx) error { return tx.SetPopulated("ds") }, true},
	}
	for _, st := range steps {
		tx := begin(t, s)
		if err := st.fn(tx); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := tx.Changed(); got != st.want {
			t.Errorf("%s: Changed() = %v, want %v", st.name, got, st.want)
		}
		tx.Rollback()
	}
}

// prepRaw prepares JSON text the way a raw source does, with its text hash.
func prepRaw(t *testing.T, text string) engine.Prepared {
	t.Helper()
	p, _, err := engine.PrepareRaw(nil, []byte(text))
	if err != nil {
		t.Fatalf("PrepareRaw %s: %v", text, err)
	}
	p.RawHash = engine.RawTextHash([]byte(text))
	return p
}

func testSameRaw(t *testing.T, s engine.Store) {
	a1 := `{"_id":"a","n":1}`
	a1reordered := `{"n":1,"_id":"a"}`
	tx := begin(t, s)
	if same, err := tx.SameRaw("ds", "a", engine.RawTextHash([]byte(a1))); err != nil || same {
		t.Errorf("SameRaw on an unknown dataset = %v, %v; want false", same, err)
	}
	p := prepRaw(t, a1)
	if _, _, err := tx.Put("ds", &p, 1); err != nil {
		t.Fatal(err)
	}
	// Pending writes count, as for Latest.
	if same, _ := tx.SameRaw("ds", "a", p.RawHash); !same {
		t.Errorf("SameRaw of a pending version's text = false")
	}
	commit(t, tx)

	tx = begin(t, s)
	defer tx.Rollback()
	cases := []struct {
		id, text string
		want     bool
	}{
		{"a", a1, true},
		{"a", a1reordered, false}, // same content, other text: not known the same
		{"a", `{"_id":"a","n":2}`, false},
		{"b", a1, false}, // unknown id
	}
	for _, c := range cases {
		same, err := tx.SameRaw("ds", c.id, engine.RawTextHash([]byte(c.text)))
		if err != nil || same != c.want {
			t.Errorf("SameRaw(%q, %s) = %v, %v; want %v", c.id, c.text, same, err, c.want)
		}
	}
	if same, _ := tx.SameRaw("ds", "a", 0); same {
		t.Errorf("SameRaw with hash 0 (unknown) = true")
	}
	// The reordered text is unchanged content: no version, and the stored
	// text hash stays that of the version.
	q := prepRaw(t, a1reordered)
	if res, _, err := tx.Put("ds", &q, 2); err != nil || res != engine.Unchanged {
		t.Fatalf("Put(reordered) = %v, %v; want Unchanged", res, err)
	}
	// A version written from a map has no text hash.
	m := Prep(t, `{"_id":"a","n":3}`)
	if _, _, err := tx.Put("ds", &m, 3); err != nil {
		t.Fatal(err)
	}
	if same, _ := tx.SameRaw("ds", "a", engine.RawTextHash([]byte(`{"_id":"a","n":3}`))); same {
		t.Errorf("SameRaw after a version without text hash = true")
	}
}

// testScanCache reads a dataset whose log is long enough for a store to
// prefer reading it over index lookups, in small latest-only scans with a
// cache, and checks the result equals uncached scans, also when versions
// are added and the dataset is recreated between scans.
func testScanCache(t *testing.T, s engine.Store) {
	const n = 3000
	ctx := context.Background()
	fill := func(round int, every int) {
		tx := begin(t, s)
		for i := 0; i < n; i += every {
			p := Prep(t, fmt.Sprintf(`{"_id":"e%d","round":%d}`, i, round))
			if _, _, err := tx.Put("big", &p, int64(round)); err != nil {
				t.Fatal(err)
			}
		}
		commit(t, tx)
	}
	fill(0, 1)
	fill(1, 3) // supersedes every third entity
	scanPaged := func(cache *engine.ScanCache, from uint64, limit int, between func(i int)) string {
		var all []engine.Record
		for i := 0; i < 10000; i++ {
			if between != nil {
				between(i)
			}
			recs, next := scanAll(t, s, "big", engine.ScanOptions{From: from, Limit: limit, LatestOnly: true, Cache: cache})
			all = append(all, recs...)
			if len(recs) == 0 && next == from {
				break
			}
			from = next
		}
		return offsets(all)
	}
	want := scanPaged(nil, 0, 100, nil)
	if got := scanPaged(&engine.ScanCache{}, 0, 100, nil); got != want {
		t.Errorf("cached scan differs from uncached:\n got %.200s\nwant %.200s", got, want)
	}
	if got, want := scanPaged(&engine.ScanCache{}, 1500, 7, nil), scanPaged(nil, 1500, 7, nil); got != want {
		t.Errorf("cached scan from 1500 differs from uncached")
	}
	// Versions added during a cached read: what an uncached read started at
	// the same time and continuing after the write returns.
	var cache engine.ScanCache
	added := false
	got := scanPaged(&cache, 0, 100, func(i int) {
		if i == 5 && !added {
			added = true
			fill(2, 2)
		}
	})
	recs, _ := scanAll(t, s, "big", engine.ScanOptions{LatestOnly: true})
	latest := map[string]uint64{}
	for _, r := range recs {
		latest[r.ID] = r.Offset
	}
	// Every latest version must have been returned.
	for id, off := range latest {
		if !strings.Contains(" "+got+" ", fmt.Sprintf(" %s@%d ", id, off)) {
			t.Fatalf("cached scan during writes missed the latest version %s@%d", id, off)
		}
	}
	// A recreated dataset is not read with the old dataset's state.
	var cache2 engine.ScanCache
	scanAll(t, s, "big", engine.ScanOptions{Limit: 10, LatestOnly: true, Cache: &cache2})
	if err := s.DeleteDataset(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	fill(3, 1)
	recs, _ = scanAll(t, s, "big", engine.ScanOptions{From: 0, Limit: 100000, LatestOnly: true, Cache: &cache2})
	if len(recs) != n {
		t.Errorf("scan of the recreated dataset with an old cache returned %d versions, want %d", len(recs), n)
	}
}

func testKV(t *testing.T, s engine.Store) {
	ctx := context.Background()
	if _, ok, err := s.GetKV(ctx, "ns", "a"); ok || err != nil {
		t.Fatalf("GetKV on an empty store = %v, %v", ok, err)
	}
	for _, k := range []string{"b", "a", "c"} {
		if err := s.PutKV(ctx, "ns", k, []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutKV(ctx, "other", "a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.GetKV(ctx, "ns", "a"); !ok || err != nil || string(v) != "va" {
		t.Errorf("GetKV = %q, %v, %v", v, ok, err)
	}
	keys, err := s.ListKV(ctx, "ns")
	if err != nil || strings.Join(keys, ",") != "a,b,c" {
		t.Errorf("ListKV = %v, %v; want a,b,c", keys, err)
	}
	if err := s.DeleteKV(ctx, "ns", "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKV(ctx, "ns", "missing"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
	if err := s.DeleteKV(ctx, "never-written", "k"); err != nil {
		t.Errorf("deleting from a missing namespace: %v", err)
	}
	if keys, _ := s.ListKV(ctx, "ns"); strings.Join(keys, ",") != "a,c" {
		t.Errorf("after delete ListKV = %v", keys)
	}
	if err := s.PutKV(ctx, "", "k", nil); err == nil {
		t.Error("empty namespace accepted")
	}
	if err := s.PutKV(ctx, "ns", "", nil); err == nil {
		t.Error("empty key accepted")
	}
}

func testKVTx(t *testing.T, s engine.Store) {
	ctx := context.Background()
	if err := s.PutKV(ctx, "ns", "p/1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	tx := begin(t, s)
	if v, ok, err := tx.GetKV("ns", "p/1"); !ok || err != nil || string(v) != "one" {
		t.Errorf("tx GetKV = %q, %v, %v", v, ok, err)
	}
	if _, ok, err := tx.GetKV("absent-ns", "k"); ok || err != nil {
		t.Errorf("tx GetKV of a missing namespace = %v, %v", ok, err)
	}
	for _, kv := range [][2]string{{"p/3", "three"}, {"p/2", "two"}, {"q/1", "other"}} {
		if err := tx.PutKV("ns", kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.DeleteKV("ns", "p/1"); err != nil {
		t.Fatal(err)
	}
	if !tx.Changed() {
		t.Error("Changed() = false after PutKV")
	}
	var seen []string
	if err := tx.ScanKV("ns", "p/", func(k string, v []byte) error {
		seen = append(seen, k+"="+string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, ","); got != "p/2=two,p/3=three" {
		t.Errorf("tx ScanKV(p/) = %s; want the transaction's own writes in key order", got)
	}
	// Nothing is visible outside before Commit.
	if _, ok, _ := s.GetKV(ctx, "ns", "p/2"); ok {
		t.Error("an uncommitted PutKV is visible to readers")
	}
	commit(t, tx)
	if keys, _ := s.ListKV(ctx, "ns"); strings.Join(keys, ",") != "p/2,p/3,q/1" {
		t.Errorf("after commit ListKV = %v", keys)
	}
	// A rolled back transaction leaves the namespace as it was.
	tx = begin(t, s)
	if err := tx.PutKV("ns", "p/9", []byte("nine")); err != nil {
		t.Fatal(err)
	}
	if err := tx.DeleteKV("ns", "p/2"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.ListKV(ctx, "ns"); strings.Join(keys, ",") != "p/2,p/3,q/1" {
		t.Errorf("after rollback ListKV = %v", keys)
	}
	// KV writes and dataset writes commit together.
	tx = begin(t, s)
	put(t, tx, "ds", `{"_id":"a","x":1}`, 1)
	if err := tx.PutKV("ns", "with-ds", []byte("1")); err != nil {
		t.Fatal(err)
	}
	commit(t, tx)
	if _, ok, _ := s.GetKV(ctx, "ns", "with-ds"); !ok {
		t.Error("KV write committed with a dataset write is missing")
	}
	if _, ok, _ := s.Get(ctx, "ds", "a"); !ok {
		t.Error("dataset write committed with a KV write is missing")
	}
}

// TestListEntities checks engine.EntityLister on a store that implements
// it (and skips otherwise): _id order, the latest version of each _id,
// deleted entities included, Prefix, After and Limit, an unknown dataset.
// Stores with layered indexes run it again after forcing their layers to
// be used (boltstore with a small "recent" level).
func TestListEntities(t *testing.T, s engine.Store) {
	l, ok := s.(engine.EntityLister)
	if !ok {
		t.Skip("the store does not implement engine.EntityLister")
	}
	ctx := context.Background()
	write(t, s, "ds", `{"_id":"b2","v":1}`, `{"_id":"a","v":1}`, `{"_id":"b1","v":1}`, `{"_id":"c","v":1}`)
	write(t, s, "ds", `{"_id":"b1","v":2}`, `{"_id":"c","_deleted":true}`, `{"_id":"b10","v":1}`)
	list := func(opts engine.ListOptions) string {
		t.Helper()
		var b strings.Builder
		err := l.ListEntities(ctx, "ds", opts, func(r engine.Record) error {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s@%d", r.ID, r.Offset)
			if r.Deleted {
				b.WriteString("(deleted)")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("ListEntities(%+v): %v", opts, err)
		}
		return b.String()
	}
	for _, c := range []struct {
		opts engine.ListOptions
		want string
	}{
		{engine.ListOptions{}, "a@1 b1@4 b10@6 b2@0 c@5(deleted)"},
		{engine.ListOptions{Limit: 2}, "a@1 b1@4"},
		{engine.ListOptions{After: "b1", Limit: 2}, "b10@6 b2@0"},
		{engine.ListOptions{Prefix: "b"}, "b1@4 b10@6 b2@0"},
		{engine.ListOptions{Prefix: "b1"}, "b1@4 b10@6"},
		{engine.ListOptions{Prefix: "b", After: "b10"}, "b2@0"},
		{engine.ListOptions{Prefix: "b", After: "a"}, "b1@4 b10@6 b2@0"},
		{engine.ListOptions{Prefix: "b", After: "c"}, ""},
		{engine.ListOptions{Prefix: "x"}, ""},
		{engine.ListOptions{After: "c"}, ""},
	} {
		if got := list(c.opts); got != c.want {
			t.Errorf("ListEntities(%+v) = %q, want %q", c.opts, got, c.want)
		}
	}
	var n int
	if err := l.ListEntities(ctx, "nope", engine.ListOptions{}, func(engine.Record) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("unknown dataset: %d records, %v", n, err)
	}
	stop := errors.New("stop")
	if err := l.ListEntities(ctx, "ds", engine.ListOptions{}, func(engine.Record) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn's error: got %v", err)
	}
}

// testKVNames: namespaces and keys are arbitrary strings (share intents
// are keyed by entity _id, merge indexes live in "merge:<pipe>"): slashes,
// colons, dots, spaces, wildcards, non-ASCII text and long keys must round
// trip, sort in byte order and stay apart.
func testKVNames(t *testing.T, s engine.Store) {
	ctx := context.Background()
	namespaces := []string{"share-intents/crm:customer share", "merge:global.org", "ns*>"}
	keys := []string{"a", "erp:5 øé/x", "~:crm-company:101", "k.with.dots", "*>", strings.Repeat("x", 300), "a b\tc"}
	tx := begin(t, s)
	for i, ns := range namespaces {
		for j, k := range keys {
			if err := tx.PutKV(ns, k, []byte(fmt.Sprintf("%d/%d", i, j))); err != nil {
				t.Fatalf("PutKV(%q, %q): %v", ns, k, err)
			}
		}
	}
	commit(t, tx)
	for i, ns := range namespaces {
		got, err := s.ListKV(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		want := append([]string(nil), keys...)
		slices.Sort(want)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("ListKV(%q) = %q, want %q", ns, got, want)
		}
		for j, k := range keys {
			v, ok, err := s.GetKV(ctx, ns, k)
			if err != nil || !ok || string(v) != fmt.Sprintf("%d/%d", i, j) {
				t.Errorf("GetKV(%q, %q) = %q, %v, %v", ns, k, v, ok, err)
			}
		}
	}
	tx = begin(t, s)
	var seen []string
	if err := tx.ScanKV(namespaces[0], "erp:", func(k string, _ []byte) error {
		seen = append(seen, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != "erp:5 øé/x" {
		t.Errorf("ScanKV prefix erp: = %q", seen)
	}
	if err := tx.DeleteKV(namespaces[1], "~:crm-company:101"); err != nil {
		t.Fatal(err)
	}
	commit(t, tx)
	if _, ok, _ := s.GetKV(ctx, namespaces[1], "~:crm-company:101"); ok {
		t.Error("deleted key still there")
	}
	if _, ok, _ := s.GetKV(ctx, namespaces[0], "~:crm-company:101"); !ok {
		t.Error("a delete in one namespace removed the key from another")
	}
}
