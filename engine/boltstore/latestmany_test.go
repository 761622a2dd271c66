package boltstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ferrydata/ferry/engine"
)

// TestLatestMany: LatestMany gives each known _id's latest version as it
// was before the call, once, in log order; and a Put of the _id it hands
// over (which uses the entry it found) writes against the right previous
// version, with the _id's entry in "recent", in runs, or pending in the
// transaction, even when the callback wrote another _id of the list
// first (whose entry LatestMany found is then stale).
func TestLatestMany(t *testing.T) {
	for _, sh := range []runShape{
		{recentMin: 16, l0Runs: 2, l1Entries: 40, runEntries: 16, budget: 1 << 20},
		{recentMin: 1, l0Runs: 3, l1Entries: 20, runEntries: 5, budget: 1, pread: true},
		{recentMin: 1 << 20, l0Runs: 2, l1Entries: 40, runEntries: 16, budget: 1 << 20}, // all in "recent"
	} {
		t.Run(fmt.Sprintf("%+v", sh), func(t *testing.T) { testLatestMany(t, sh) })
	}
}

func testLatestMany(t *testing.T, sh runShape) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.recentMin = sh.recentMin
	s.l0Runs, s.l1Entries, s.runEntries, s.compactBudget = sh.l0Runs, sh.l1Entries, sh.runEntries, sh.budget
	s.preadDefault = sh.pread
	const ds = "people"
	rng := rand.New(rand.NewPCG(3, 4))
	var ids []string
	for txn := 0; txn < 30; txn++ {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 40 {
			var id string
			if len(ids) < 20 || rng.IntN(2) == 0 {
				id = fmt.Sprintf("%016x", rng.Uint64())
				ids = append(ids, id)
			} else {
				id = ids[rng.IntN(len(ids))]
			}
			putModel(t, tx, ds, id, rng.IntN(1000), rng.IntN(10) == 0)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// Some _ids pending in this transaction, and some unknown ones.
	for _, id := range ids[:30] {
		putModel(t, tx, ds, id, 5000, false)
	}
	list := append([]string{"unknown-1", "unknown-2"}, ids...)
	rng.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	before := map[string]engine.Record{}
	for _, id := range list {
		if r, ok, err := tx.Latest(ds, id); err != nil {
			t.Fatal(err)
		} else if ok {
			before[id] = r
		}
	}
	// The callback writes, for every 7th _id it is given, another _id of
	// the list that it has not been given yet (v 7000), then the deleted
	// version of the _id it is given.
	given := map[string]bool{}
	ahead := map[string]uint64{} // _id -> offset of the version written ahead of its turn
	var last uint64
	err = tx.(engine.TxLatestMany).LatestMany(ds, list, func(id string, r engine.Record) error {
		want, ok := before[id]
		if !ok || given[id] {
			return fmt.Errorf("given %q (known %v, given before %v)", id, ok, given[id])
		}
		given[id] = true
		if r.Offset != want.Offset || string(r.Body) != string(want.Body) || r.Deleted != want.Deleted {
			return fmt.Errorf("%q: got version %d %s, want %d %s", id, r.Offset, r.Body, want.Offset, want.Body)
		}
		if r.Offset < last {
			return fmt.Errorf("%q: version %d given after %d: not in log order", id, r.Offset, last)
		}
		last = r.Offset
		if len(given)%7 == 0 {
			for _, other := range list {
				if _, known := before[other]; known && !given[other] && ahead[other] == 0 {
					putModel(t, tx, ds, other, 7000, false)
					cur, _, _ := tx.Latest(ds, other)
					ahead[other] = cur.Offset
					break
				}
			}
		}
		v := 6000 + len(given)
		putModel(t, tx, ds, id, v, true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(given) != len(before) {
		t.Fatalf("given %d _ids, want %d", len(given), len(before))
	}
	if len(ahead) == 0 {
		t.Fatal("no _id was written ahead of its turn")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for id, b := range before {
		h, err := s.History(ctx, ds, id)
		if err != nil {
			t.Fatal(err)
		}
		latest := h[len(h)-1]
		wantPrev := b.Offset
		if off, ok := ahead[id]; ok {
			wantPrev = off
		}
		if !latest.Deleted || !latest.HasPrev || latest.Previous != wantPrev {
			t.Fatalf("%q: latest version deleted %v, previous %d (%v), want deleted, previous %d", id, latest.Deleted, latest.Previous, latest.HasPrev, wantPrev)
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
