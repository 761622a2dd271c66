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
// what is left, each entity once.
func TestDeletionTrackingInParts(t *testing.T) {
	const n, keep = 3000, 500
	h := newHarness(t, `{"_id":"p","type":"pipe","source":{"type":"json","url":"in.json"},"sink":{"deletion_threshold_factor":1}}`)
	h.eng.GroupBytes = 8 << 10 // ~80 deletions of these entities a part
	all := entitiesJSON(0, n)
	h.mustRun(all, engine.RunOptions{})
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
	rec, err := h.eng.Run(ctx, "p", engine.RunOptions{})
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
	// The next run is full again and deletes the rest, once each.
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
}

// entitiesJSON returns entities from to to-1 as a JSON array.
func entitiesJSON(from, to int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := from; i < to; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"_id":"e%05d","n":%d,"text":"%s"}`, i, i, strings.Repeat("x", 60))
	}
	b.WriteByte(']')
	return b.String()
}
