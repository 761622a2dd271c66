package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
)

// TestSupersededFromPrevFrom: a dataset records the offset of its first
// version that names a previous one (meta.PrevFrom), and the list of
// superseded versions read from there is the one read from the start of
// the log, as a dataset without the record (written by an older Ferry)
// reads it. A latest-only scan then returns each _id's latest version
// once.
func TestSupersededFromPrevFrom(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const ds = "d"
	latest := map[string]int{}
	put := func(round int, ids ...string) {
		t.Helper()
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			putModel(t, tx, ds, id, round, round == 9)
			latest[id] = round
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	metaOf := func() (m meta) {
		t.Helper()
		s.db.View(func(tx *bolt.Tx) error {
			m, err = readMeta(tx.Bucket(bucketDatasets).Bucket([]byte(ds)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for r := range 3 {
		var ids []string
		for i := range 1000 {
			ids = append(ids, fmt.Sprintf("e-%04d", r*1000+i))
		}
		put(1, ids...)
	}
	if m := metaOf(); !m.PrevKnown || m.PrevFrom != noPrev {
		t.Fatalf("after a load: prev known %v from %d, want none", m.PrevKnown, m.PrevFrom)
	}
	var changed []string
	for i := 100; i < 150; i++ {
		changed = append(changed, fmt.Sprintf("e-%04d", i))
	}
	put(2, changed...)
	put(3, changed[:10]...)
	put(9, "e-0005", "e-2999") // deleted: a version that names the one before
	m := metaOf()
	if !m.PrevKnown || m.PrevFrom != 3000 {
		t.Fatalf("prev known %v from %d, want from 3000 (the first changed version)", m.PrevKnown, m.PrevFrom)
	}
	old := m
	old.PrevKnown, old.PrevFrom = false, 0
	for _, from := range []uint64{0, 99, 1500, 3000} {
		s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketDatasets).Bucket([]byte(ds))
			got, gotLast := s.superseded(tx, b, m, from)
			want, wantLast := s.superseded(tx, b, old, from)
			if from+scanChunk > m.LastOffset {
				if got != nil || want != nil {
					t.Errorf("from %d: a short tail gives a list (%d, %d)", from, len(got), len(want))
				}
				return nil
			}
			if !slices.Equal(got, want) || gotLast != wantLast || len(want) == 0 {
				t.Errorf("from %d: %d superseded up to %d, want %d up to %d", from, len(got), gotLast, len(want), wantLast)
			}
			return nil
		})
	}
	seen := map[string]bool{}
	_, err = s.Scan(ctx, ds, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		if seen[r.ID] {
			t.Errorf("%s read twice", r.ID)
		}
		seen[r.ID] = true
		if want := fmt.Sprintf(`"v":%d`, latest[r.ID]); !bytes.Contains(r.Body, []byte(want)) {
			t.Errorf("%s: %s, want the version with %s", r.ID, r.Body, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(latest) {
		t.Fatalf("%d ids read, want %d", len(seen), len(latest))
	}
}
