package sinks_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
)

// TestDeletionTrackingInParts: a full run that deletes many entities
// commits them in parts of about the engine's group bytes, each reported
// as it commits; a run stopped between parts keeps the deletions
// committed and leaves the pipe to run fully again, and that run deletes
// what is left, each entity once. With a source that has tokens, the
// stopped run is a rescan or a reset whose input fits in its final group,
// so only the parts commit before the stop.
func TestDeletionTrackingInParts(t *testing.T) {
	for _, c := range []struct {
		name   string
		source string
		opts   engine.RunOptions
	}{
		{"no tokens", `{"type":"json","url":"in.json"}`, engine.RunOptions{}},
		{"rescan", `{"type":"json","url":"in.json","supports_since":true}`, engine.RunOptions{Rescan: true}},
		{"reset", `{"type":"json","url":"in.json","supports_since":true}`, engine.RunOptions{Reset: true}},
	} {
		t.Run(c.name, func(t *testing.T) { testDeletionTrackingInParts(t, c.source, c.opts) })
	}
}

func testDeletionTrackingInParts(t *testing.T, source string, opts engine.RunOptions) {
	const n, keep = 3000, 20
	h := newHarness(t, `{"_id":"p","type":"pipe","source":`+source+`,"sink":{"deletion_threshold_factor":1}}`)
	h.eng.GroupBytes = 8 << 10 // ~80 deletions of these entities a part; the 20 kept in one group
	h.mustRun(entitiesJSON(0, n), engine.RunOptions{})
	var parts []int64 // Deleted at each commit of the run
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.eng.Progress = func(pipe string, st engine.RunStats) {
		if st.Deleted > 0 {
			parts = append(parts, st.Deleted)
		}
		if len(parts) == 3 {
			cancel() // stop the run between parts
		}
	}
	os.WriteFile(filepath.Join(h.dir, "in.json"), []byte(entitiesJSON(0, keep)), 0o644)
	rec, err := h.eng.Run(ctx, "p", opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: %v (%+v), want it canceled", err, rec)
	}
	if len(parts) != 3 || parts[0] < 64 || parts[2] >= n-keep {
		t.Fatalf("deletions at each commit: %v, want parts of at least 64 and fewer than %d in all", parts, n-keep)
	}
	done := h.info("p").Deleted
	if done != uint64(parts[2]) {
		t.Fatalf("after the stopped run: %d deleted, want the %d committed", done, parts[2])
	}
	// The next run, with no option, is full again and deletes the rest,
	// once each.
	h.eng.Progress = nil
	rec = h.mustRun(entitiesJSON(0, keep), engine.RunOptions{})
	if rec.SyncType != "full" || rec.Deleted != int64(n-keep)-int64(done) {
		t.Fatalf("run after the stop: %+v, want full, %d deleted", rec, int64(n-keep)-int64(done))
	}
	if info := h.info("p"); info.Deleted != n-keep || info.Entities != n || info.Versions != n+n-keep {
		t.Fatalf("dataset: %+v, want %d entities, %d deleted, %d versions", info, n, n-keep, n+n-keep)
	}
	for _, i := range []int{0, keep - 1, keep, n - 1} {
		r := h.latest("p", fmt.Sprintf("e%05d", i))
		if r.Deleted != (i >= keep) || !strings.Contains(string(r.Body), fmt.Sprintf(`"n":%d`, i)) {
			t.Errorf("e%05d: deleted %v, body %s", i, r.Deleted, r.Body)
		}
	}
	if strings.Contains(source, "supports_since") {
		if rec := h.mustRun(entitiesJSON(0, keep), engine.RunOptions{}); rec.SyncType != "incremental" {
			t.Errorf("run after the complete one: %+v, want incremental", rec)
		}
	}
}

// entitiesJSON returns entities from to to-1 as a JSON array.
func entitiesJSON(from, to int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := from; i < to; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"_id":"e%05d","_updated":%d,"n":%d,"text":"%s"}`, i, i, i, strings.Repeat("x", 60))
	}
	b.WriteByte(']')
	return b.String()
}

// TestDeletionTrackingSparesOtherWrites: an entity another writer writes
// while a run deletes in parts (between two parts, when the writer lock is
// free) is live by that write, and deletion tracking leaves it so.
func TestDeletionTrackingSparesOtherWrites(t *testing.T) {
	const n, keep = 3000, 20
	h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"deletion_threshold_factor":1}}`)
	h.eng.GroupBytes = 8 << 10
	h.mustRun(entitiesJSON(0, n), engine.RunOptions{})
	wrote := false
	h.eng.Progress = func(pipe string, st engine.RunStats) {
		if st.Deleted == 0 || wrote {
			return
		}
		wrote = true // after the first part: e02999, not deleted yet, written anew
		tx, err := h.store.Begin(context.Background())
		if err != nil {
			t.Error(err)
			return
		}
		e, _ := engine.DecodeEntity([]byte(`{"_id":"e02999","n":2999,"text":"written by another writer"}`))
		p, _ := engine.Prepare(e)
		if _, _, err := tx.Put("p", &p, 1); err != nil {
			tx.Rollback()
			t.Error(err)
			return
		}
		if err := tx.Commit(); err != nil {
			t.Error(err)
		}
	}
	rec := h.mustRun(entitiesJSON(0, keep), engine.RunOptions{})
	if !wrote || rec.Deleted != n-keep-1 {
		t.Fatalf("run: %+v (another writer wrote: %v), want %d deleted", rec, wrote, n-keep-1)
	}
	if r := h.latest("p", "e02999"); r.Deleted || !strings.Contains(string(r.Body), "another writer") {
		t.Errorf("e02999 after the run: deleted %v, %s; want the other writer's version, live", r.Deleted, r.Body)
	}
}
