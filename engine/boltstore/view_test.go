package boltstore

import (
	"context"
	"fmt"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
)

// putText puts the entity JSON text raw into dataset "ds" as a text
// source does (with its RawHash).
func putText(t *testing.T, tx engine.WriteTx, raw string) {
	t.Helper()
	p, _, err := engine.PrepareRaw(nil, []byte(raw))
	if err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	p.RawHash = engine.RawTextHash([]byte(raw))
	if _, _, err := tx.Put("ds", &p, 1); err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
}

// lazyOf returns what a text source hands over lazily for raw.
func lazyOf(t *testing.T, raw string) engine.Prepared {
	t.Helper()
	id, ok := engine.ScanRawID([]byte(raw))
	if !ok {
		t.Fatalf("no _id in %s", raw)
	}
	return engine.Prepared{ID: id, Lazy: true, Raw: []byte(raw), RawHash: engine.RawTextHash([]byte(raw))}
}

func textOf(id string, v int) string { return fmt.Sprintf(`{"_id":%q,"v":%d}`, id, v) }

// TestViewRawAndConfirm checks the read view that finds unchanged text
// off the committer, and the committer's confirmation that nothing was
// written to an _id after the view: a confirmed finding must be exactly
// as true as SameRaw in the write transaction.
func TestViewRawAndConfirm(t *testing.T) {
	ctx := context.Background()
	for _, recentMin := range []int{1, 1 << 20} { // runs, or "recent" only
		t.Run(fmt.Sprintf("recentMin=%d", recentMin), func(t *testing.T) {
			s := openRunsStore(t)
			s.recentMin = recentMin
			begin := func() engine.WriteTx {
				tx, err := s.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return tx
			}
			commit := func(tx engine.WriteTx) {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			tx := begin()
			for i := range 50 {
				putText(t, tx, textOf(fmt.Sprintf("e%02d", i), i))
			}
			putText(t, tx, `{"_id":"gone","_deleted":true}`)
			commit(tx)

			batch := []engine.Prepared{
				lazyOf(t, textOf("e01", 1)),                 // same
				lazyOf(t, textOf("e02", 99)),                // changed
				lazyOf(t, textOf("new", 1)),                 // unknown
				lazyOf(t, `{"_id":"gone","_deleted":true}`), // same text, but deleted
				lazyOf(t, textOf("e03", 3)),                 // same; written after the view
				lazyOf(t, textOf("e04", 4)),                 // same; written in the confirming transaction
				lazyOf(t, textOf("e05", 5)),                 // same; others written since
				{ID: "e06", Body: []byte(`{"_id":"e06"}`)},  // not lazy: left alone
			}
			looked, err := s.ViewRaw(ctx, "ds", batch)
			if err != nil || !looked {
				t.Fatalf("ViewRaw = %v, %v", looked, err)
			}
			var zero engine.ViewMark
			for i, want := range []bool{true, false, false, false, true, true, true, false} {
				if got := batch[i].SameIn != zero; got != want {
					t.Errorf("%s: marked %v, want %v", batch[i].ID, got, want)
				}
			}
			if looked, _ := s.ViewRaw(ctx, "unknown", batch[:1]); looked {
				t.Error("ViewRaw looked at an unknown dataset")
			}

			// Nothing written since: confirmed.
			tx = begin()
			if ok, err := tx.(engine.ViewConfirmer).UnchangedSince("ds", "e01", batch[0].SameIn); err != nil || !ok {
				t.Errorf("UnchangedSince(e01) with nothing written = %v, %v", ok, err)
			}
			tx.Rollback()

			// e03 is written (committed) after the view, e04 in the
			// transaction that confirms; e10 and e11 change too.
			tx = begin()
			putText(t, tx, textOf("e03", 300))
			putText(t, tx, textOf("e10", 1000))
			commit(tx)
			tx = begin()
			putText(t, tx, textOf("e11", 1100))
			putText(t, tx, textOf("e04", 400))
			vc := tx.(engine.ViewConfirmer)
			for _, c := range []struct {
				i    int
				want bool
			}{{0, true}, {4, false}, {5, false}, {6, true}} {
				ok, err := vc.UnchangedSince("ds", batch[c.i].ID, batch[c.i].SameIn)
				if err != nil || ok != c.want {
					t.Errorf("UnchangedSince(%s) = %v, %v; want %v", batch[c.i].ID, ok, err, c.want)
				}
				if same, _ := tx.SameRaw("ds", batch[c.i].ID, batch[c.i].RawHash); ok && !same {
					t.Errorf("%s confirmed unchanged but SameRaw says it changed", batch[c.i].ID)
				}
			}
			// A mark of another incarnation of the dataset is not confirmed.
			other := batch[0].SameIn
			other.Gen++
			if ok, _ := vc.UnchangedSince("ds", "e01", other); ok {
				t.Error("UnchangedSince confirmed a mark of another incarnation")
			}
			if ok, _ := vc.UnchangedSince("ds", "e01", zero); ok {
				t.Error("UnchangedSince confirmed the zero mark")
			}
			tx.Rollback()

			// A dataset deleted and written again is another incarnation.
			if err := s.DeleteDataset(ctx, "ds"); err != nil {
				t.Fatal(err)
			}
			tx = begin()
			for i := range 50 {
				putText(t, tx, textOf(fmt.Sprintf("e%02d", i), i))
			}
			if ok, _ := tx.(engine.ViewConfirmer).UnchangedSince("ds", "e07", batch[0].SameIn); ok {
				t.Error("UnchangedSince confirmed a mark of the deleted dataset")
			}
			tx.Rollback()
		})
	}
}

// TestConfirmBound: a view too far behind is not confirmed (the
// committer would read that much log to learn what changed).
func TestConfirmBound(t *testing.T) {
	ctx := context.Background()
	s := openRunsStore(t)
	tx, _ := s.Begin(ctx)
	putText(t, tx, textOf("a", 1))
	tx.Commit()
	batch := []engine.Prepared{lazyOf(t, textOf("a", 1))}
	if _, err := s.ViewRaw(ctx, "ds", batch); err != nil || batch[0].SameIn == (engine.ViewMark{}) {
		t.Fatalf("view: %v, %+v", err, batch[0])
	}
	tx, _ = s.Begin(ctx)
	defer tx.Rollback()
	for i := range maxSinceScan + 1 {
		p := engine.Prepared{ID: fmt.Sprintf("b%d", i), Body: []byte(`{}`)}
		p.Hash = engine.HashBytes(p.Body)
		if _, _, err := tx.Put("ds", &p, 1); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := tx.(engine.ViewConfirmer).UnchangedSince("ds", "a", batch[0].SameIn); ok {
		t.Error("a view more than maxSinceScan versions behind was confirmed")
	}
}

// TestViewRecentFilter: read views skip "recent" for an _id the writer's
// Bloom filter rules out, but only in states the filter covers. A view of
// a state from before the filter was built asks the tree: there "recent"
// may hold keys the filter never saw, because they had moved to a run by
// the state it was built from.
func TestViewRecentFilter(t *testing.T) {
	ctx := context.Background()
	s := openRunsStore(t)
	s.recentMin = 100
	write := func(from, to int) {
		t.Helper()
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			putText(t, tx, textOf(fmt.Sprintf("e%03d", i), i))
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	batchOf := func(ids ...int) []engine.Prepared {
		var b []engine.Prepared
		for _, i := range ids {
			b = append(b, lazyOf(t, textOf(fmt.Sprintf("e%03d", i), i)))
		}
		return b
	}
	unmarked := func(b []engine.Prepared) []string {
		var out []string
		for _, p := range b {
			if p.SameIn == (engine.ViewMark{}) {
				out = append(out, p.ID)
			}
		}
		return out
	}
	span := func(from, to int) []int {
		var ids []int
		for i := from; i < to; i++ {
			ids = append(ids, i)
		}
		return ids
	}
	fresh := func() *bolt.Tx {
		t.Helper()
		tx, err := s.db.Begin(false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback() })
		return tx
	}

	// 60 _ids in "recent": a view with the filter finds them all, so the
	// writer added each to the filter before its commit.
	write(0, 60)
	if s.viewFilter("ds", fresh()) == nil {
		t.Fatal("no filter for a view of the latest state")
	}
	b := batchOf(span(0, 60)...)
	if _, err := s.ViewRaw(ctx, "ds", b); err != nil || len(unmarked(b)) > 0 {
		t.Fatalf("ViewRaw: %v; not found: %v", err, unmarked(b))
	}

	// A view holds that state while the next write moves "recent" into a
	// run, and a later write builds the filter again from the state after.
	old := fresh()
	write(60, 120)
	s.filtersMu.Lock()
	delete(s.filters, "ds")
	s.filtersMu.Unlock()
	write(200, 201)
	if s.viewFilter("ds", old) != nil {
		t.Fatal("a view of a state before the filter was built got it")
	}
	if s.viewFilter("ds", fresh()) == nil {
		t.Fatal("no filter for a view of the latest state after the rebuild")
	}
	b = batchOf(span(0, 60)...)
	if looked, err := s.viewRawIn(old, "ds", b); err != nil || !looked || len(unmarked(b)) > 0 {
		t.Fatalf("view of the old state: looked %v, %v; not found: %v", looked, err, unmarked(b))
	}
	b = batchOf(append(span(0, 120), 200)...)
	if _, err := s.ViewRaw(ctx, "ds", b); err != nil || len(unmarked(b)) > 0 {
		t.Fatalf("ViewRaw after the rebuild: %v; not found: %v", err, unmarked(b))
	}
	// An _id that is nowhere stays unmarked with the filter in use.
	b = batchOf(500)
	if _, err := s.ViewRaw(ctx, "ds", b); err != nil || len(unmarked(b)) != 1 {
		t.Fatalf("ViewRaw of an unknown _id: %v; unmarked %v", err, unmarked(b))
	}
}

// TestViewRawAcrossLevels: a read view finds each _id's latest version in
// whichever level of the runs holds it (the bottom level's Bloom filter is
// not asked in views), and marks nothing else.
func TestViewRawAcrossLevels(t *testing.T) {
	ctx := context.Background()
	s := openRunsStore(t)
	s.recentMin, s.l0Runs, s.l1Entries, s.runEntries, s.compactBudget, s.background = 16, 2, 40, 16, 1<<20, false
	text := map[int]string{}
	write := func(from, to, v int) {
		t.Helper()
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			text[i] = textOf(fmt.Sprintf("e%04d", i), v)
			putText(t, tx, text[i])
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 600; i += 20 {
		write(i, i+20, 1)
	}
	write(100, 140, 2) // newer versions above the bottom level
	write(590, 595, 3) // and in "recent"
	var levels int
	s.db.View(func(tx *bolt.Tx) error {
		lv, _, err := s.runsOf(tx.Bucket(bucketDatasets).Bucket([]byte("ds")))
		levels = len(lv)
		return err
	})
	if levels < 3 {
		t.Fatalf("%d levels of runs, want at least 3", levels)
	}
	var batch []engine.Prepared
	for i := 0; i < 600; i++ {
		batch = append(batch, lazyOf(t, text[i]))
	}
	for i := 100; i < 110; i++ { // an older text
		batch = append(batch, lazyOf(t, textOf(fmt.Sprintf("e%04d", i), 1)))
	}
	for i := 600; i < 620; i++ { // unknown _ids
		batch = append(batch, lazyOf(t, textOf(fmt.Sprintf("e%04d", i), 1)))
	}
	if _, err := s.ViewRaw(ctx, "ds", batch); err != nil {
		t.Fatal(err)
	}
	for i, p := range batch {
		if got := p.SameIn != (engine.ViewMark{}); got != (i < 600) {
			t.Errorf("%s (%s): marked %v", p.ID, p.Raw, got)
		}
	}
}

// TestViewSeenStale: a changed or new entity is written against what the
// read view found for it (Prepared.Seen) only while that is still the
// latest. Written again after the view, in another transaction or in the
// same one, or in "recent", the store looks it up: the new version chains
// to the true latest one and the dataset's counts stay right.
func TestViewSeenStale(t *testing.T) {
	ctx := context.Background()
	for _, recentMin := range []int{1, 1 << 20} { // runs, or "recent" only
		t.Run(fmt.Sprintf("recentMin=%d", recentMin), func(t *testing.T) {
			s := openRunsStore(t)
			s.recentMin = recentMin
			write := func(texts ...string) {
				t.Helper()
				tx, err := s.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, raw := range texts {
					putText(t, tx, raw)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			write(textOf("a", 1), textOf("b", 1), textOf("c", 1), textOf("d", 1))
			batch := []engine.Prepared{
				lazyOf(t, textOf("a", 2)),   // changed; nothing written since: Seen holds
				lazyOf(t, textOf("b", 2)),   // changed; written again after the view
				lazyOf(t, textOf("new", 1)), // new; nothing written since
				lazyOf(t, textOf("nw2", 1)), // new; written after the view
				lazyOf(t, textOf("c", 2)),   // changed; written in the same transaction first
			}
			if looked, err := s.ViewRaw(ctx, "ds", batch); err != nil || !looked {
				t.Fatalf("view: %v, %v", looked, err)
			}
			for i, p := range batch {
				if p.SeenIn == (engine.ViewMark{}) || p.SameIn != (engine.ViewMark{}) {
					t.Fatalf("entity %d (%s): SeenIn %v, SameIn %v", i, p.ID, p.SeenIn, p.SameIn)
				}
				if (p.Seen == nil) != (p.ID == "new" || p.ID == "nw2") {
					t.Fatalf("entity %s: Seen %x", p.ID, p.Seen)
				}
			}
			write(textOf("b", 3), textOf("nw2", 3))
			before, _, err := s.Dataset(ctx, "ds")
			if err != nil {
				t.Fatal(err)
			}
			tx, err := s.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			putText(t, tx, textOf("c", 3))
			prev := map[string]uint64{}
			for _, id := range []string{"a", "b", "c", "nw2"} {
				r, ok, err := s.Get(ctx, "ds", id)
				if err != nil || !ok {
					t.Fatalf("get %s: %v %v", id, ok, err)
				}
				prev[id] = r.Offset
			}
			for i := range batch {
				p := &batch[i]
				if err := p.Resolve(); err != nil {
					t.Fatal(err)
				}
				res, rec, err := tx.Put("ds", p, 2)
				if err != nil || res != engine.Appended {
					t.Fatalf("put %s: %v, %v", p.ID, res, err)
				}
				want, had := prev[p.ID]
				if p.ID == "c" {
					want = before.Versions // the transaction's first version
				}
				if rec.HasPrev != (had || p.ID == "c") || had && rec.Previous != want {
					t.Errorf("%s: previous %d (has %v), want %d (has %v)", p.ID, rec.Previous, rec.HasPrev, want, had)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			after, _, err := s.Dataset(ctx, "ds")
			if err != nil {
				t.Fatal(err)
			}
			if after.Entities != before.Entities+1 { // only "new" is new
				t.Errorf("entities %d -> %d, want one more", before.Entities, after.Entities)
			}
			for _, id := range []string{"a", "b", "c", "new", "nw2"} {
				r, ok, err := s.Get(ctx, "ds", id)
				if err != nil || !ok || !strings.Contains(string(r.Body), `"v":2`) && id != "new" && id != "nw2" {
					t.Errorf("%s after: %s, %v, %v", id, r.Body, ok, err)
				}
			}
			if err := s.Check(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
