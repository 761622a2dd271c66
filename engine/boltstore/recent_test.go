package boltstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/storetest"
)

// modelEntity is what a dataset should hold for one _id.
type modelEntity struct {
	versions int
	latest   int // the "v" of the latest version
	deleted  bool
}

// putModel puts one entity; on failure it rolls tx back (a test that
// stops holding the writer lock would hang in Close).
func putModel(t *testing.T, tx engine.WriteTx, ds, id string, v int, deleted bool) engine.PutResult {
	t.Helper()
	e, err := engine.DecodeEntity(fmt.Appendf(nil, `{"_id":%q,"v":%d,"_deleted":%t}`, id, v, deleted))
	if err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	p, err := engine.Prepare(e)
	if err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	res, _, err := tx.Put(ds, &p, 1)
	if err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	return res
}

// checkModel compares every lookup path of the store with the model.
func checkModel(t *testing.T, s *Store, ds string, model map[string]*modelEntity) {
	t.Helper()
	ctx := context.Background()
	for id, m := range model {
		r, ok, err := s.Get(ctx, ds, id)
		if err != nil || !ok {
			t.Fatalf("Get %q: ok %v, %v", id, ok, err)
		}
		v, err := engine.DecodeValue(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(v.(map[string]any)["v"]); got != fmt.Sprint(m.latest) || r.Deleted != m.deleted {
			t.Fatalf("Get %q: v %s deleted %v, want %d %v", id, got, r.Deleted, m.latest, m.deleted)
		}
		h, err := s.History(ctx, ds, id)
		if err != nil || len(h) != m.versions {
			t.Fatalf("History %q: %d versions (%v), want %d", id, len(h), err, m.versions)
		}
	}
	var latest []string
	if _, err := s.Scan(ctx, ds, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		latest = append(latest, r.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(latest) != len(model) {
		t.Fatalf("latest-only scan: %d entities, want %d", len(latest), len(model))
	}
	var live, wantLive []string
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = tx.ForEachLive(ds, func(id string) error { live = append(live, id); return nil })
	tx.Rollback()
	if err != nil {
		t.Fatal(err)
	}
	for id, m := range model {
		if !m.deleted {
			wantLive = append(wantLive, id)
		}
	}
	slices.Sort(wantLive)
	if !slices.Equal(live, wantLive) {
		t.Fatalf("ForEachLive: %d ids, want %d (in key order)", len(live), len(wantLive))
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTwoLevelIndexAgainstModel writes random new, changed, unchanged and
// deleted entities over many transactions with a small recentMin, so that
// entries move from "recent" to "index" all the time, rolls some
// transactions back and reopens the store now and then. Every lookup path,
// and every Put's changed/unchanged answer (which goes through the
// in-memory filter of "recent"), must agree with a model.
//
// It runs with each way a commit applies index updates to "recent" (in
// place, rebuilt, chosen by size), and checks the store at the end.
func TestTwoLevelIndexAgainstModel(t *testing.T) {
	for _, mode := range []int{recentModeAuto, recentModeInPlace, recentModeRebuild} {
		t.Run(fmt.Sprint("mode=", mode), func(t *testing.T) { testTwoLevelIndexAgainstModel(t, mode) })
	}
}

func testTwoLevelIndexAgainstModel(t *testing.T, mode int) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(dir, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		s.recentMin = 16
		s.recentMode = mode
		return s
	}
	s := open()
	defer func() { s.Close() }()
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string]*modelEntity{}
	var ids []string
	const ds = "people"
	for txn := 0; txn < 80; txn++ {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if txn%7 == 6 {
			// A transaction that moves entries and rolls back: nothing
			// of it may show, and the next ones must still find all.
			for range 1 + rng.IntN(40) {
				id := fmt.Sprintf("%016x", rng.Uint64())
				putModel(t, tx, ds, id, 9, false)
				if len(ids) > 0 {
					putModel(t, tx, ds, ids[rng.IntN(len(ids))], 9, true)
				}
			}
			tx.Rollback()
			continue
		}
		for range 1 + rng.IntN(40) {
			var id string
			if len(ids) == 0 || rng.IntN(3) == 0 {
				id = fmt.Sprintf("%016x", rng.Uint64())
				ids = append(ids, id)
			} else {
				id = ids[rng.IntN(len(ids))]
			}
			m := model[id]
			v, del := rng.IntN(3), rng.IntN(8) == 0
			res := putModel(t, tx, ds, id, v, del)
			changed := m == nil || m.latest != v || m.deleted != del
			if (res == engine.Appended) != changed {
				tx.Rollback()
				t.Fatalf("txn %d: put %q v %d deleted %v: result %v, want changed %v", txn, id, v, del, res, changed)
			}
			if m == nil {
				m = &modelEntity{}
				model[id] = m
			}
			if changed {
				m.versions++
				m.latest, m.deleted = v, del
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if txn%10 == 9 {
			s.Close()
			s = open()
		}
		checkModel(t, s, ds, model)
	}
	// Both levels must be in use, or this test did not test the move.
	s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(ds))
		r, m := b.Bucket(bucketRecent).Stats().KeyN, b.Bucket(bucketIndex).Stats().KeyN
		if r == 0 || m == 0 || r > 4*16+40*recentFanIn {
			t.Errorf("recent holds %d entries and index %d: want both in use, recent bounded", r, m)
		}
		return nil
	})
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestIndexWrittenBeforeTheSplit reads and updates a dataset whose whole
// index is in "index" with no "recent" bucket, as stores written before
// the two-level index have it.
func TestIndexWrittenBeforeTheSplit(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const ds = "old"
	model := map[string]*modelEntity{}
	tx, _ := s.Begin(ctx)
	for i := range 50 {
		id := fmt.Sprintf("id-%03d", i)
		putModel(t, tx, ds, id, 1, false)
		model[id] = &modelEntity{versions: 1, latest: 1}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// Rewrite the dataset into the old layout.
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(ds))
		idx, rec := b.Bucket(bucketIndex), b.Bucket(bucketRecent)
		if err := rec.ForEach(func(k, v []byte) error { return idx.Put(k, v) }); err != nil {
			return err
		}
		if err := b.DeleteBucket(bucketRecent); err != nil {
			return err
		}
		return b.Delete(keyRecentState)
	})
	if err != nil {
		t.Fatal(err)
	}
	checkModel(t, s, ds, model)
	tx, _ = s.Begin(ctx)
	for i := 0; i < 50; i += 5 {
		id := fmt.Sprintf("id-%03d", i)
		if putModel(t, tx, ds, id, 2, i%10 == 0) != engine.Appended {
			tx.Rollback()
			t.Fatalf("update of %q not appended", id)
		}
		model[id] = &modelEntity{versions: 2, latest: 2, deleted: i%10 == 0}
	}
	if putModel(t, tx, ds, "id-001", 1, false) != engine.Unchanged {
		tx.Rollback()
		t.Fatal("unchanged entity appended")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	checkModel(t, s, ds, model)
}

// TestStoreFormat: a file is marked with the layout it was written in, and
// a file from a newer layout is refused with a clear error, read-only too.
func TestStoreFormat(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketStore).Get(keyFormat); len(v) != 8 || v[7] != storeFormat {
			t.Errorf("format marker %x", v)
		}
		return nil
	})
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStore).Put(keyFormat, []byte{0, 0, 0, 0, 0, 0, 0, 99})
	})
	s.Close()
	for _, ro := range []bool{false, true} {
		_, err := Open(dir, Options{ReadOnly: ro})
		if err == nil || !strings.Contains(err.Error(), "newer Ferry (store format 99") || !strings.Contains(err.Error(), dir) {
			t.Errorf("read-only %v: %v", ro, err)
		}
	}
}

// TestListEntitiesTwoLevels runs the EntityLister contract with a
// "recent" level small enough that entries move to "index" between the
// contract's transactions, and checks a listing that merges both levels
// over many transactions against the ids written.
func TestListEntitiesTwoLevels(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.recentMin = 2
	storetest.TestListEntities(t, s)

	ctx := context.Background()
	want := map[string]bool{}
	for txn := range 20 {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 7 {
			id := fmt.Sprintf("k%03d", (txn*37+i*11)%200)
			p := storetest.Prep(t, fmt.Sprintf(`{"_id":%q,"t":%d}`, id, txn))
			if _, _, err := tx.Put("many", &p, 1); err != nil {
				t.Fatal(err)
			}
			want[id] = true
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after := ""
	for {
		n := 0
		err := s.ListEntities(ctx, "many", engine.ListOptions{After: after, Limit: 9}, func(r engine.Record) error {
			got = append(got, r.ID)
			after = r.ID
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if len(got) != len(want) || !slices.IsSorted(got) {
		t.Fatalf("paged listing: %d ids (sorted %v), want %d", len(got), slices.IsSorted(got), len(want))
	}
	for _, id := range got {
		if !want[id] {
			t.Errorf("listed %q, never written", id)
		}
	}
}
