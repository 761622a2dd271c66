package sinks_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/pipes/all"
)

// harness runs pipe "p" whose json source reads in.json, which the test
// rewrites between runs.
type harness struct {
	t     *testing.T
	dir   string
	eng   *engine.Engine
	store engine.Store
}

func newHarness(t *testing.T, pipe string) *harness {
	t.Helper()
	dir := t.TempDir()
	eng, s := enginetest.NewEngine(t, all.Registry(), dir, pipe)
	return &harness{t: t, dir: dir, eng: eng, store: s}
}

func (h *harness) run(data string, opts engine.RunOptions) (engine.RunRecord, error) {
	h.t.Helper()
	os.WriteFile(filepath.Join(h.dir, "in.json"), []byte(data), 0o644)
	return h.eng.Run(context.Background(), "p", opts)
}

func (h *harness) mustRun(data string, opts engine.RunOptions) engine.RunRecord {
	h.t.Helper()
	rec, err := h.run(data, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	return rec
}

func (h *harness) info(ds string) engine.DatasetInfo {
	info, _, err := h.store.Dataset(context.Background(), ds)
	if err != nil {
		h.t.Fatal(err)
	}
	return info
}

func (h *harness) latest(ds, id string) engine.Record {
	r, _, err := h.store.Get(context.Background(), ds, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func TestDeletionTrackingOnFullRunsOnly(t *testing.T) {
	// supports_since makes later runs incremental; the deletion guard is
	// off (TestDeletionGuard covers it).
	h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json","supports_since":true},"sink":{"deletion_threshold_factor":1}}`)
	h.mustRun(`[{"_id":"a","_updated":1,"x":1},{"_id":"b","_updated":2},{"_id":"c","_updated":3}]`, engine.RunOptions{})
	// Incremental: a missing entity is not deleted.
	rec := h.mustRun(`[{"_id":"d","_updated":4}]`, engine.RunOptions{})
	if rec.SyncType != "incremental" || rec.Deleted != 0 || h.info("p").Deleted != 0 {
		t.Errorf("incremental run deleted: %+v", rec)
	}
	// Full run (reset): everything not produced gets a deleted version
	// that keeps its content.
	rec = h.mustRun(`[{"_id":"b","_updated":2}]`, engine.RunOptions{Reset: true})
	if rec.SyncType != "full" || rec.Deleted != 3 {
		t.Errorf("full run = %+v, want 3 deleted", rec)
	}
	a := h.latest("p", "a")
	if !a.Deleted || string(a.Body) != `{"_deleted":true,"_id":"a","_updated":1,"x":1}` && !strings.Contains(string(a.Body), `"x":1`) {
		t.Errorf("deleted a = %s", a.Body)
	}
	if strings.Contains(string(a.Body), "$deletion_tracked") {
		t.Errorf("$deletion_tracked without mark_deletion_tracked: %s", a.Body)
	}
	if info := h.info("p"); info.Deleted != 3 || info.Entities != 4 {
		t.Errorf("info = %+v", info)
	}
	// Already deleted entities are not deleted again.
	if rec := h.mustRun(`[{"_id":"b","_updated":2}]`, engine.RunOptions{Reset: true}); rec.Deleted != 0 || rec.Written != 0 {
		t.Errorf("second full run = %+v", rec)
	}
	// A deleted entity that comes back is undeleted.
	h.mustRun(`[{"_id":"a","_updated":1,"x":1},{"_id":"b","_updated":2}]`, engine.RunOptions{Reset: true})
	if a := h.latest("p", "a"); a.Deleted || h.info("p").Deleted != 2 {
		t.Errorf("a after it came back = %+v", a)
	}
}

func TestDeletionTrackingOptions(t *testing.T) {
	h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"mark_deletion_tracked":true,"deletion_threshold_count":1}}`)
	h.mustRun(`[{"_id":"a"},{"_id":"b"}]`, engine.RunOptions{})
	h.mustRun(`[{"_id":"b"}]`, engine.RunOptions{})
	if a := h.latest("p", "a"); !a.Deleted || string(a.Body) != `{"$deletion_tracked":true,"_deleted":true,"_id":"a"}` {
		t.Errorf("a = %s", a.Body)
	}
	off := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"deletion_tracking":false}}`)
	off.mustRun(`[{"_id":"a"},{"_id":"b"}]`, engine.RunOptions{})
	if rec := off.mustRun(`[{"_id":"b"}]`, engine.RunOptions{}); rec.Deleted != 0 || off.latest("p", "a").Deleted {
		t.Errorf("deletion_tracking false still deleted: %+v", rec)
	}
	// An empty source deletes everything it may (no if_source_empty; the
	// guard allows one deletion here).
	if rec := h.mustRun(`[]`, engine.RunOptions{}); rec.Deleted != 1 || h.info("p").Deleted != 2 {
		t.Errorf("empty full run = %+v", rec)
	}
}

func TestCircuitBreaker(t *testing.T) {
	h := newHarness(t, `{"_id":"p","type":"pipe","batch_size":1,"checkpoint_interval":1,"source":{"type":"json","url":"in.json"},"sink":{"circuit_breaker_threshold_count":2}}`)
	// Not populated yet: the breaker is not armed.
	h.mustRun(`[{"_id":"a"},{"_id":"b"},{"_id":"c"},{"_id":"d"}]`, engine.RunOptions{})
	before := h.info("p")
	if !before.Populated || before.Versions != 4 {
		t.Fatalf("first run: %+v", before)
	}
	cases := []struct{ name, data string }{
		{"too many changes", `[{"_id":"a","v":1},{"_id":"b","v":1},{"_id":"c","v":1},{"_id":"d"}]`},
		{"too many deletions", `[{"_id":"a"}]`},
	}
	for _, c := range cases {
		_, err := h.run(c.data, engine.RunOptions{})
		if !errors.Is(err, engine.ErrCircuitBreaker) {
			t.Fatalf("%s: error = %v, want ErrCircuitBreaker", c.name, err)
		}
		after := h.info("p")
		if after.Versions != before.Versions || after.LastOffset != before.LastOffset || after.Deleted != before.Deleted || after.Entities != before.Entities {
			t.Errorf("%s: dataset changed: %+v -> %+v", c.name, before, after)
		}
	}
	// The run record says what the tripped run would have done, and that
	// it did nothing.
	rec, _ := h.run(`[{"_id":"a"}]`, engine.RunOptions{})
	if rec.Written != 0 || rec.Deleted != 0 || rec.WouldDelete != 3 || rec.WouldWrite != 0 || !strings.Contains(rec.Error, "ferry run --accept-deletes p") {
		t.Errorf("tripped run record = %+v", rec)
	}
	// Within the limit the run goes through.
	if rec := h.mustRun(`[{"_id":"a","v":2},{"_id":"b","v":2},{"_id":"c"},{"_id":"d"}]`, engine.RunOptions{}); rec.Written != 2 {
		t.Errorf("run within the limit = %+v", rec)
	}
	// The factor counts distinct ids: 0.5 * 4 = 2 allowed.
	f := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"circuit_breaker_threshold_factor":0.5}}`)
	f.mustRun(`[{"_id":"a"},{"_id":"b"},{"_id":"c"},{"_id":"d"}]`, engine.RunOptions{})
	if _, err := f.run(`[{"_id":"a"}]`, engine.RunOptions{}); !errors.Is(err, engine.ErrCircuitBreaker) {
		t.Errorf("factor breaker: %v", err)
	}
	if _, err := f.run(`[{"_id":"a"},{"_id":"b"}]`, engine.RunOptions{}); err != nil {
		t.Errorf("2 deletions of 4 with factor 0.5: %v", err)
	}
}

// TestDeletionGuard: by default a full run may delete at most half of the
// live entities through deletion tracking. A run that would delete more
// (an empty or truncated source) deletes nothing, keeps its other writes
// and fails with what it would have done; RunOptions.AcceptDeletes lets it
// through.
func TestDeletionGuard(t *testing.T) {
	var all []string
	for i := range 501 {
		all = append(all, fmt.Sprintf(`{"_id":"%d"}`, i))
	}
	full := "[" + strings.Join(all, ",") + "]"
	h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"}}`)
	h.mustRun(full, engine.RunOptions{})
	// The source comes back empty: nothing is deleted, the run fails.
	rec, err := h.run(`[]`, engine.RunOptions{})
	if !errors.Is(err, engine.ErrDeletesRefused) || !strings.Contains(err.Error(), "would delete 501 of the 501 live entities") {
		t.Fatalf("empty source: %v", err)
	}
	if rec.Deleted != 0 || rec.WouldDelete != 501 || rec.Written != 0 {
		t.Errorf("record = %+v", rec)
	}
	if info := h.info("p"); info.Deleted != 0 || info.Versions != 501 {
		t.Errorf("dataset changed: %+v", info)
	}
	// A truncated source with a new entity: the final transaction, which
	// holds the deletion tracking, is rolled back with the new entity.
	rec, err = h.run(`[{"_id":"0"},{"_id":"new"}]`, engine.RunOptions{})
	if !errors.Is(err, engine.ErrDeletesRefused) || rec.Deleted != 0 || rec.WouldDelete != 500 || rec.Written != 0 || rec.WouldWrite != 1 {
		t.Errorf("truncated source: %+v %v", rec, err)
	}
	// Up to half goes through: 250 of 501 (floor(0.5 * 501)).
	rec = h.mustRun("["+strings.Join(all[:251], ",")+"]", engine.RunOptions{})
	if rec.Deleted != 250 || rec.WouldDelete != 0 {
		t.Errorf("250 deletions = %+v", rec)
	}
	// A refused run of a source that continues from a token (here after
	// --reset) makes the next run full, so accepting sees the deletions.
	inc := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json","supports_since":true}}`)
	inc.mustRun(`[{"_id":"a","_updated":1},{"_id":"b","_updated":2},{"_id":"c","_updated":3}]`, engine.RunOptions{})
	if _, err := inc.run(`[{"_id":"c","_updated":3}]`, engine.RunOptions{Reset: true}); !errors.Is(err, engine.ErrDeletesRefused) {
		t.Fatalf("reset run: %v", err)
	}
	if rec := inc.mustRun(`[{"_id":"c","_updated":3}]`, engine.RunOptions{AcceptDeletes: true}); rec.SyncType != "full" || rec.Deleted != 2 {
		t.Errorf("accepting run after a refused full run = %+v", rec)
	}
	// Accepted: everything goes.
	rec = h.mustRun(`[]`, engine.RunOptions{AcceptDeletes: true})
	if rec.Deleted != 251 || h.info("p").Deleted != 501 {
		t.Errorf("accepted = %+v", rec)
	}
	// The thresholds are configurable; a factor of 1 turns the guard off,
	// and so does a configured circuit breaker.
	for _, c := range []struct {
		sink  string
		allow bool
	}{
		{`{"deletion_threshold_factor": 1}`, true},
		{`{"deletion_threshold_count": 3}`, true},
		{`{"deletion_threshold_count": 2}`, false},
		{`{"circuit_breaker_threshold_count": 3}`, true},
		{`{"circuit_breaker_threshold_count": 3, "deletion_threshold_factor": 0.1}`, false},
		{`{"deletion_tracking": false}`, true},
	} {
		h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":`+c.sink+`}`)
		h.mustRun(`[{"_id":"a"},{"_id":"b"},{"_id":"c"}]`, engine.RunOptions{})
		_, err := h.run(`[]`, engine.RunOptions{})
		if (err == nil) != c.allow {
			t.Errorf("sink %s: deleting 3 of 3: %v", c.sink, err)
		}
	}
}

func TestSetInitialOffset(t *testing.T) {
	cases := []struct {
		mode      string
		populated bool
	}{
		{"", true}, // if-source-populated; a json source reads no dataset
		{"if-source-populated", true},
		{"never", false},
		{"always", true},
		{"initially", true},
		{"onload", true},
	}
	for _, c := range cases {
		sink := `{}`
		if c.mode != "" {
			sink = `{"set_initial_offset":"` + c.mode + `"}`
		}
		h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":`+sink+`}`)
		h.mustRun(`[{"_id":"a"}]`, engine.RunOptions{})
		if got := h.info("p").Populated; got != c.populated {
			t.Errorf("%q: populated = %v, want %v", c.mode, got, c.populated)
		}
	}
	// if-source-populated with a dataset source follows its input; a
	// failed run never populates with "always", "initially" does.
	h := newHarness(t, `[{"_id":"up","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"set_initial_offset":"never"}},
		{"_id":"p","type":"pipe","source":{"type":"dataset","dataset":"up"}}]`)
	os.WriteFile(filepath.Join(h.dir, "in.json"), []byte(`[{"_id":"a"}]`), 0o644)
	h.eng.Run(context.Background(), "up", engine.RunOptions{})
	h.eng.Run(context.Background(), "p", engine.RunOptions{})
	if h.info("p").Populated {
		t.Error("populated although its input is not")
	}
	for mode, want := range map[string]bool{"always": false, "initially": true} {
		h := newHarness(t, `{"_id":"p","type":"pipe","batch_size":1,"checkpoint_interval":1,"source":{"type":"json","url":"in.json"},"sink":{"set_initial_offset":"`+mode+`"}}`)
		if _, err := h.run(`[{"_id":"a"},{"_id":"b"},{"x":1}]`, engine.RunOptions{}); err == nil {
			t.Fatal("bad entity accepted")
		}
		if got := h.info("p").Populated; got != want {
			t.Errorf("%s after a failed run: populated %v, want %v", mode, got, want)
		}
	}
}

func TestFilteredDeletesLiveEntity(t *testing.T) {
	h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json","supports_since":true},
		"transform":{"type":"jq","expression":"if .drop then . + {_filtered: true} else . end"}}`)
	h.mustRun(`[{"_id":"a","_updated":1,"v":1},{"_id":"b","_updated":2}]`, engine.RunOptions{})
	// Incremental run: the filtered entity deletes the live version.
	rec := h.mustRun(`[{"_id":"a","_updated":3,"drop":true},{"_id":"z","_updated":4,"drop":true}]`, engine.RunOptions{})
	if rec.SyncType != "incremental" || rec.Deleted != 1 {
		t.Errorf("run = %+v", rec)
	}
	a := h.latest("p", "a")
	if !a.Deleted || !strings.Contains(string(a.Body), `"v":1`) || strings.Contains(string(a.Body), "drop") {
		t.Errorf("a = %s: want the old content marked deleted", a.Body)
	}
	if _, ok, _ := h.store.Get(context.Background(), "p", "z"); ok {
		t.Error("a filtered entity that was never live was written")
	}
	// The null sink drops filtered entities.
	n := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"type":"null"},
		"transform":{"type":"jq","expression":". + {_filtered: .drop}"}}`)
	if rec := n.mustRun(`[{"_id":"a","drop":true},{"_id":"b","drop":false}]`, engine.RunOptions{}); rec.Written != 1 {
		t.Errorf("null sink wrote %d, want 1", rec.Written)
	}
}

func TestSinkDatasetName(t *testing.T) {
	h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"dataset":"other"}}`)
	h.mustRun(`[{"_id":"a"}]`, engine.RunOptions{})
	if h.info("other").Versions != 1 {
		t.Error("sink did not write its dataset")
	}
	if _, ok, _ := h.store.Dataset(context.Background(), "p"); ok {
		t.Error("dataset named after the pipe was created")
	}
}

// TestUnchangedTextPath runs a json source often enough that the engine
// hands the sink unchanged text lazily (no canonical form; see
// engine.LazySinkRun), and checks that every kind of change still lands.
func TestUnchangedTextPath(t *testing.T) {
	h := newHarness(t, `{"_id":"p","type":"pipe","batch_size":2,"checkpoint_interval":1,"source":{"type":"json","url":"in.json"}}`)
	lines := func(edit map[int]string) string {
		var b strings.Builder
		for i := 0; i < 60; i++ {
			if s, ok := edit[i]; ok {
				if s != "" {
					b.WriteString(s + "\n")
				}
				continue
			}
			fmt.Fprintf(&b, `{"_id":"e%d","n":%d,"tags":["x","y"]}`+"\n", i, i)
		}
		return b.String()
	}
	rec := h.mustRun(lines(nil), engine.RunOptions{})
	if rec.Written != 60 {
		t.Fatalf("first run = %+v", rec)
	}
	if rec := h.mustRun(lines(nil), engine.RunOptions{}); rec.Written != 0 || rec.Unchanged != 60 {
		t.Fatalf("same text again = %+v", rec)
	}
	// Late in the run, when the engine has switched to lazy text:
	edits := map[int]string{
		50: `{"_id":"e50","n":5000,"tags":["x","y"]}`,                                                 // changed
		51: `{"tags":["x","y"],"n":51,"_id":"e51"}`,                                                   // same content, other text
		52: `{"_id":"e52","n":52,"tags":["x","y"],"_deleted":true}`,                                   // deleted in the source
		53: `{"_id":"e53","n":53,"tags":["x","y"],"_ts":123}`,                                         // reserved key only: unchanged
		54: "",                                                                                        // gone: deletion tracking
		55: `{"_id":"e55","n":55,"tags":["x","y"]}` + "\n" + `{"_id":"e55","n":-55,"tags":["x","y"]}`, // twice
	}
	rec = h.mustRun(lines(edits), engine.RunOptions{})
	// Written counts e52's deleted version too; Deleted counts deletion
	// tracking only.
	if rec.Written != 3 || rec.Deleted != 1 || rec.Unchanged != 57 {
		t.Errorf("run with edits = %+v, want 3 written (e50, e52, e55), 1 deleted (e54), 57 unchanged", rec)
	}
	checks := map[string]string{"e50": `"n":5000`, "e51": `"n":51`, "e52": `"_deleted":true`, "e53": `"n":53`, "e54": `"_deleted":true`, "e55": `"n":-55`}
	for id, want := range checks {
		if r := h.latest("p", id); !strings.Contains(string(r.Body), want) {
			t.Errorf("%s = %s, want %s in it", id, r.Body, want)
		}
	}
	if r := h.latest("p", "e53"); r.Offset != 53 {
		t.Errorf("e53 got a new version (offset %d)", r.Offset)
	}
	// A deleted entity whose old text comes back is undeleted.
	rec = h.mustRun(lines(nil), engine.RunOptions{})
	if rec.Written != 4 || h.latest("p", "e54").Deleted || h.latest("p", "e52").Deleted || !strings.Contains(string(h.latest("p", "e50").Body), `"n":50`) {
		t.Errorf("restoring run = %+v", rec)
	}
	// Broken text for a known _id fails the run and leaves the dataset as
	// it was. The error names the _id: the text was handed over lazily
	// (prepared up front, it would name the line instead).
	before := h.info("p")
	_, err := h.run(lines(map[int]string{57: `{"_id":"e57","n":}`}), engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "e57") {
		t.Fatalf("broken text: err = %v, want it to name e57", err)
	}
	if after := h.info("p"); after.Versions != before.Versions {
		t.Errorf("a failed run wrote %d versions", after.Versions-before.Versions)
	}
}

// TestInitialLoadRepeatedIDs checks the "produced before" filter of a run
// into an empty dataset: an _id the run repeats, in the same batch, in a
// later transaction and across the filter's blocks, is looked up, so its
// second text is a new version of the same entity (or nothing, when the
// text is the same), never a second entity.
func TestInitialLoadRepeatedIDs(t *testing.T) {
	h := newHarness(t, `{"_id":"p","type":"pipe","batch_size":3,"checkpoint_interval":1,"source":{"type":"json","url":"in.json"}}`)
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, `{"_id":"e%d","n":%d}`+"\n", i, i)
	}
	b.WriteString(`{"_id":"e5","n":-5}` + "\n")   // changed, a later transaction
	b.WriteString(`{"_id":"e7","n":7}` + "\n")    // the same text again
	b.WriteString(`{"_id":"x","n":1}` + "\n")     // new, then at once repeated
	b.WriteString(`{"_id":"x","n":2}` + "\n")     // in the same batch
	b.WriteString(`{"_id":"e1999","n":0}` + "\n") // changed
	rec := h.mustRun(b.String(), engine.RunOptions{})
	if rec.Written != 2004 || rec.Unchanged != 1 {
		t.Errorf("run = %+v, want 2004 written, 1 unchanged", rec)
	}
	if info := h.info("p"); info.Entities != 2001 || info.Versions != 2004 {
		t.Errorf("dataset: %d entities, %d versions; want 2001, 2004", info.Entities, info.Versions)
	}
	for id, want := range map[string]string{"e5": `"n":-5`, "e7": `"n":7`, "x": `"n":2`, "e1999": `"n":0`, "e0": `"n":0`} {
		if r := h.latest("p", id); !strings.Contains(string(r.Body), want) {
			t.Errorf("%s = %s, want %s", id, r.Body, want)
		}
	}
}

// TestLazyFromFirstBatch checks that a run into a dataset that holds
// entities hands text over lazily from its first batch (engine.LazyStarter)
// and that changes in that batch still land.
func TestLazyFromFirstBatch(t *testing.T) {
	h := newHarness(t, `{"_id":"p","type":"pipe","batch_size":2,"checkpoint_interval":1,"source":{"type":"json","url":"in.json"}}`)
	lines := func(edit map[int]string) string {
		var b strings.Builder
		for i := 0; i < 20; i++ {
			if s, ok := edit[i]; ok {
				b.WriteString(s + "\n")
				continue
			}
			fmt.Fprintf(&b, `{"_id":"e%d","n":%d}`+"\n", i, i)
		}
		return b.String()
	}
	// Into the empty dataset, text is prepared up front: an error names
	// the line.
	_, err := h.run(lines(map[int]string{0: `{"_id":"e0","n":}`}), engine.RunOptions{})
	if err == nil || strings.Contains(err.Error(), "e0") {
		t.Fatalf("broken text into an empty dataset: err = %v, want one naming the line, not e0", err)
	}
	if rec := h.mustRun(lines(nil), engine.RunOptions{}); rec.Written != 20 {
		t.Fatalf("first run = %+v", rec)
	}
	// The dataset holds entities: the first batch is lazy, so broken text
	// for a known _id is found by the sink, which names it.
	_, err = h.run(lines(map[int]string{0: `{"_id":"e0","n":}`}), engine.RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "e0") {
		t.Fatalf("broken text in the first batch: err = %v, want it to name e0", err)
	}
	rec := h.mustRun(lines(map[int]string{0: `{"_id":"e0","n":1000}`, 1: `{"n":1,"_id":"e1"}`}), engine.RunOptions{})
	if rec.Written != 1 || rec.Unchanged != 19 {
		t.Errorf("run with edits in the first batch = %+v, want 1 written (e0), 19 unchanged", rec)
	}
	if r := h.latest("p", "e0"); !strings.Contains(string(r.Body), `"n":1000`) {
		t.Errorf("e0 = %s", r.Body)
	}
}

// TestDeletionTrackingCountProof checks the shortcut that skips the walk
// over the index when the dataset holds as many live entities as a full
// run produced distinct _ids: produced _ids that are not live (deleted in
// the source, filtered, deleted text arriving unchanged) must not make
// an unproduced entity look produced.
func TestDeletionTrackingCountProof(t *testing.T) {
	full := engine.RunOptions{Reset: true}
	t.Run("deleted in the source", func(t *testing.T) {
		h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"deletion_threshold_factor":1}}`)
		h.mustRun(`[{"_id":"a"},{"_id":"b"},{"_id":"c"}]`, full)
		// Produced: a, b (deleted), d; live after the writes: a, c, d.
		rec := h.mustRun(`[{"_id":"a"},{"_id":"b","_deleted":true},{"_id":"d"}]`, full)
		if rec.Deleted != 1 || !h.latest("p", "c").Deleted {
			t.Errorf("run = %+v, c deleted = %v; want c deleted by deletion tracking", rec, h.latest("p", "c").Deleted)
		}
	})
	t.Run("filtered", func(t *testing.T) {
		h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"deletion_threshold_factor":1},
			"transform":{"type":"jq","expression":"if .drop then . + {_filtered: true} else . end"}}`)
		h.mustRun(`[{"_id":"a"},{"_id":"b"}]`, full)
		// Produced: a, z (filtered, never live); live: a, b.
		rec := h.mustRun(`[{"_id":"a"},{"_id":"z","drop":true}]`, full)
		if rec.Deleted != 1 || !h.latest("p", "b").Deleted {
			t.Errorf("run = %+v; want b deleted by deletion tracking", rec)
		}
	})
	t.Run("deleted text unchanged", func(t *testing.T) {
		// Enough lines for the engine to hand unchanged text over lazily.
		h := newHarness(t, `{"_id":"p","type":"pipe","batch_size":2,"checkpoint_interval":1,"source":{"type":"json","url":"in.json"},"sink":{"deletion_threshold_factor":1}}`)
		lines := func(last string) string {
			var b strings.Builder
			for i := 0; i < 60; i++ {
				fmt.Fprintf(&b, `{"_id":"e%02d","n":%d}`+"\n", i, i)
			}
			b.WriteString(`{"_id":"x","_deleted":true}` + "\n" + last + "\n")
			return b.String()
		}
		h.mustRun(lines(`{"_id":"y"}`), full)
		// Produced: e00..e59, x (deleted, same text), z; live: e00..e59, y, z.
		rec := h.mustRun(lines(`{"_id":"z"}`), full)
		if rec.Deleted != 1 || !h.latest("p", "y").Deleted {
			t.Errorf("run = %+v; want y deleted by deletion tracking", rec)
		}
	})
}

// TestTextRevertedWithinBatch: a batch holds an _id twice, first changed
// and then with its old text again. The read view on the producer's
// workers (engine.ViewingSinkRun) saw the old text as unchanged; the
// committer must notice the first occurrence was written since and store
// the second, on the sequential and the parallel path alike.
func TestTextRevertedWithinBatch(t *testing.T) {
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			h := newHarness(t, `{"_id":"p","type":"pipe","batch_size":2,"checkpoint_interval":1,"source":{"type":"json","url":"in.json"}}`)
			line := func(i, n int) string { return fmt.Sprintf(`{"_id":"e%d","n":%d,"tags":["x","y"]}`+"\n", i, n) }
			var first, second strings.Builder
			for i := 0; i < 60; i++ {
				first.WriteString(line(i, i))
				switch i {
				case 54: // lines 54 and 55 share a batch
					second.WriteString(line(55, -55))
				case 55:
					second.WriteString(line(55, 55))
				default:
					second.WriteString(line(i, i))
				}
			}
			h.mustRun(first.String(), engine.RunOptions{})
			h.mustRun(first.String(), engine.RunOptions{}) // all unchanged: later runs start lazy
			rec := h.mustRun(second.String(), engine.RunOptions{})
			if rec.Written != 2 || rec.Deleted != 1 {
				t.Errorf("run = %+v, want 2 written (e55 twice), 1 deleted (e54)", rec)
			}
			if r := h.latest("p", "e55"); !strings.Contains(string(r.Body), `"n":55`) {
				t.Errorf("e55 = %s, want the old text's n 55 again", r.Body)
			}
			hist, err := h.store.History(context.Background(), "p", "e55")
			if err != nil || len(hist) != 3 {
				t.Errorf("e55 has %d versions (%v), want 3", len(hist), err)
			}
		})
	}
}
