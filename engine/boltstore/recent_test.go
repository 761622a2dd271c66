package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/bloom"
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

// TestIndexAgainstModel writes random new, changed, unchanged and deleted
// entities over many transactions with small runs, so that "recent"
// becomes runs and runs merge down several levels all the time (merges
// spanning transactions where the budget is small), rolls some
// transactions back and reopens the store now and then. Every lookup
// path, and every Put's changed/unchanged answer (which goes through the
// in-memory filter of "recent" and the runs' Bloom filters), must agree
// with a model.
func TestIndexAgainstModel(t *testing.T) {
	for _, sh := range []runShape{
		{recentMin: 16, l0Runs: 2, l1Entries: 40, runEntries: 16, budget: 1 << 20},
		{recentMin: 16, l0Runs: 4, l1Entries: 60, runEntries: 24, budget: 30},
		{recentMin: 1, l0Runs: 3, l1Entries: 20, runEntries: 5, budget: 1},
		{recentMin: 16, l0Runs: 2, l1Entries: 40, runEntries: 16, budget: 1 << 20, background: true},
		{recentMin: 16, l0Runs: 4, l1Entries: 60, runEntries: 24, budget: 30, background: true},
		{recentMin: 1, l0Runs: 3, l1Entries: 20, runEntries: 5, budget: 1, background: true},
		// Lookups read the runs' blocks with pread (blockdir.go).
		{recentMin: 16, l0Runs: 2, l1Entries: 40, runEntries: 16, budget: 1 << 20, pread: true},
		{recentMin: 16, l0Runs: 4, l1Entries: 60, runEntries: 24, budget: 30, background: true, pread: true},
		{recentMin: 1, l0Runs: 3, l1Entries: 20, runEntries: 5, budget: 1, pread: true},
	} {
		t.Run(fmt.Sprintf("%+v", sh), func(t *testing.T) { testIndexAgainstModel(t, sh) })
	}
}

// runShape sizes the index runs for a test; background: merges beside
// the writer (else in the writing transaction, as the budget allows);
// pread: lookups read the runs' blocks with pread.
type runShape struct {
	recentMin, l0Runs, l1Entries, runEntries, budget int
	background, pread                                bool
}

func testIndexAgainstModel(t *testing.T, sh runShape) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func() *Store {
		s, err := Open(dir, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		s.recentMin = sh.recentMin
		s.l0Runs, s.l1Entries, s.runEntries, s.compactBudget = sh.l0Runs, sh.l1Entries, sh.runEntries, sh.budget
		s.background = sh.background
		s.preadDefault = sh.pread
		return s
	}
	s := open()
	defer func() { s.Close() }()
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string]*modelEntity{}
	var ids []string
	const ds = "people"
	inL0Merge := 0 // commits that left a merge of level 0 in progress
	installed := 0 // merge steps installed beside the writer
	// 80 transactions, and more (up to 400) until a commit has left a
	// merge of level 0 in progress where the budget allows one: with the
	// merges beside the writer, whether one does depends on timing.
	for txn := 0; txn < 80 || (sh.budget < 100 && inL0Merge == 0 && txn < 400); txn++ {
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
		s.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bucketDatasets).Bucket([]byte(ds)).Get(keyL0Merge); v != nil {
				inL0Merge++
			}
			return nil
		})
		if txn%10 == 9 {
			s.Close()
			installed += s.bgInstalled // no goroutine of a closed store runs
			s = open()
		}
		checkModel(t, s, ds, model)
	}
	// With a small budget, merges of level 0 must have been left half
	// done at commits (and picked up again after reopening).
	if sh.budget < 100 && inL0Merge == 0 {
		t.Errorf("no commit left a merge of level 0 in progress")
	}
	s.writer <- struct{}{} // steps are installed under the writer lock
	installed += s.bgInstalled
	<-s.writer
	if sh.background && installed == 0 {
		t.Errorf("no merge step beside the writer was installed")
	}
	t.Logf("merge steps installed beside the writer: %d", installed)
	// Runs must be in several levels, or this test did not test merges.
	s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(ds))
		levels, _, err := s.runsOf(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(levels) < 3 || levels.entries(len(levels)-1) == 0 {
			t.Errorf("runs in %d levels (%v): want at least 3 in use", len(levels), levels)
		}
		if r := b.Bucket(bucketRecent); r != nil && r.Stats().KeyN >= sh.recentMin {
			t.Errorf("recent holds %d entries, want fewer than %d", r.Stats().KeyN, sh.recentMin)
		}
		return nil
	})
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestIndexFromOlderFormats reads and updates datasets in the layouts
// older stores have: the whole index in "index" with no "recent" (format
// 1), and the two B+tree levels of format 2, where "recent" holds newer
// entries than the stale ones "index" still has for the same _ids. Updates
// then go to runs on top of them.
func TestIndexFromOlderFormats(t *testing.T) {
	for _, twoLevels := range []bool{false, true} {
		t.Run(fmt.Sprint("two levels ", twoLevels), func(t *testing.T) { testIndexFromOlderFormat(t, twoLevels) })
	}
}

func testIndexFromOlderFormat(t *testing.T, twoLevels bool) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	ctx := context.Background()
	const ds = "old"
	model := map[string]*modelEntity{}
	commit := func(version int, step int) {
		t.Helper()
		tx, _ := s.Begin(ctx)
		for i := 0; i < 50; i += step {
			id := fmt.Sprintf("id-%03d", i)
			putModel(t, tx, ds, id, version, false)
			if model[id] == nil {
				model[id] = &modelEntity{}
			}
			model[id].versions++
			model[id].latest = version
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	entries := func() map[string][]byte {
		m := map[string][]byte{}
		s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketDatasets).Bucket([]byte(ds)).Bucket(bucketRecent).ForEach(func(k, v []byte) error {
				m[string(k)] = bytes.Clone(v)
				return nil
			})
		})
		return m
	}
	commit(1, 1)
	first := entries()
	commit(2, 5)
	now := entries()
	// Rewrite the dataset's index into the old layout.
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(ds))
		if err := b.DeleteBucket(bucketRecent); err != nil {
			return err
		}
		idx, err := b.CreateBucket(bucketIndex)
		if err != nil {
			return err
		}
		if !twoLevels {
			for k, v := range now {
				if err := idx.Put([]byte(k), v); err != nil {
					return err
				}
			}
			return b.Delete(keyRecentState)
		}
		for k, v := range first {
			if err := idx.Put([]byte(k), v); err != nil {
				return err
			}
		}
		rec, err := b.CreateBucket(bucketRecent)
		if err != nil {
			return err
		}
		n := 0
		for k, v := range now {
			if !bytes.Equal(v, first[k]) {
				n++
				if err := rec.Put([]byte(k), v); err != nil {
					return err
				}
			}
		}
		// Format 2's state: the count, then where the next move starts.
		return b.Put(keyRecentState, append(binary.BigEndian.AppendUint64(nil, uint64(n)), "id-020"...))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.filters = nil // what Open starts with
	checkModel(t, s, ds, model)
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	s.recentMin = 8
	tx, _ := s.Begin(ctx)
	for i := 0; i < 50; i += 3 {
		id := fmt.Sprintf("id-%03d", i)
		if putModel(t, tx, ds, id, 3, i%2 == 0) != engine.Appended {
			tx.Rollback()
			t.Fatalf("update of %q not appended", id)
		}
		model[id].versions++
		model[id].latest, model[id].deleted = 3, i%2 == 0
	}
	if putModel(t, tx, ds, "id-001", 1, false) != engine.Unchanged {
		tx.Rollback()
		t.Fatal("unchanged entity appended")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	checkModel(t, s, ds, model)
	s.Close()
	if s, err = Open(dir, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	checkModel(t, s, ds, model)
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
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

// openRunsStore opens a store in a temporary directory (no fsync) in which
// every commit writes a run.
func openRunsStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.recentMin = 1
	return s
}

// commitIDs puts version 1 of each id into dataset "ds" in one
// transaction.
func commitIDs(t *testing.T, s *Store, ids ...string) {
	t.Helper()
	tx, err := s.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		putModel(t, tx, "ds", id, 1, false)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func idRange(from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, fmt.Sprintf("id-%04d", i))
	}
	return ids
}

// TestCheckFindsBrokenRuns: Check verifies the runs themselves, not only
// the answers they give: a run whose description disagrees with its
// blocks is reported.
func TestCheckFindsBrokenRuns(t *testing.T) {
	s := openRunsStore(t)
	ctx := context.Background()
	commitIDs(t, s, idRange(0, 300)...)
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	rewriteRunMeta(t, s, func(g *runFile) *runFile {
		return &runFile{id: g.id, count: g.count + 1, min: g.min, max: g.max, bloom: g.bloom}
	})
	if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), "300 entries, its description says 301") {
		t.Fatalf("Check = %v, want the run's count reported", err)
	}

	// A description whose filter lost its bits (the right size, nothing
	// added) would hide the run's keys from lookups.
	rewriteRunMeta(t, s, func(g *runFile) *runFile {
		return &runFile{id: g.id, count: 300, min: g.min, max: g.max, bloom: bloom.NewExact(len(g.bloom.Words()) * 64)}
	})
	if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), "its Bloom filter does not hold") {
		t.Fatalf("Check = %v, want the run's filter reported", err)
	}
}

// rewriteRunMeta replaces the description of dataset "ds"'s one run with
// what change makes of it, and empties the store's cache of runs.
func rewriteRunMeta(t *testing.T, s *Store, change func(g *runFile) *runFile) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		levels, rb, err := s.runsOf(tx.Bucket(bucketDatasets).Bucket([]byte("ds")))
		if err != nil || len(levels) == 0 || len(levels[0]) != 1 {
			return fmt.Errorf("runs %v, %v: want one level-0 run", levels, err)
		}
		f := change(levels[0][0])
		return rb.Put(runMetaKey(f.id), encodeRunMeta(f))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.runCache = nil
}

// TestRunLookupSharedPrefixes: a block's lookup searches the first 8
// bytes of keys and then the full keys; ids that share long prefixes, and
// ids shorter than 8 bytes, must all be found, and absent ones not.
func TestRunLookupSharedPrefixes(t *testing.T) {
	s := openRunsStore(t)
	ctx := context.Background()
	var ids []string
	for i := range 500 {
		ids = append(ids, fmt.Sprintf("shared-prefix-%04d", i*2), fmt.Sprint(i*2))
	}
	commitIDs(t, s, ids...)
	for _, id := range ids {
		if _, ok, err := s.Get(ctx, "ds", id); !ok || err != nil {
			t.Fatalf("Get %q: %v %v", id, ok, err)
		}
	}
	for i := range 500 {
		for _, id := range []string{fmt.Sprintf("shared-prefix-%04d", i*2+1), fmt.Sprint(i*2 + 1), "shared-p", "shared-prefix-", "shared-prefix-99999"} {
			if _, ok, err := s.Get(ctx, "ds", id); ok || err != nil {
				t.Fatalf("Get %q (never written): %v %v", id, ok, err)
			}
		}
	}
}

// TestReplacedRunsLeaveTheCache: a reader of an older state loads runs a
// later commit replaced, from its snapshot, and still finds its entities;
// the store does not keep those runs cached, and forgets that they were
// replaced once no older reader can be open.
func TestReplacedRunsLeaveTheCache(t *testing.T) {
	s := openRunsStore(t)
	s.l0Runs, s.l1Entries, s.runEntries = 2, 1000, 100
	s.background = false // the merge must happen in the second commit
	commitIDs(t, s, idRange(0, 50)...)
	old, err := s.db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	commitIDs(t, s, idRange(50, 100)...) // the second level-0 run: both merge into level 1
	s.runMu.Lock()
	cached := len(s.runCache)
	s.runMu.Unlock()
	x, err := s.datasetIndex(old.Bucket(bucketDatasets).Bucket([]byte("ds")), "ds")
	if err != nil {
		t.Fatal(err)
	}
	if len(x.levels) != 1 || len(x.levels[0]) != 1 {
		t.Fatalf("old state has runs %v, want one level-0 run", x.levels)
	}
	if v := x.get([]byte("id-0007")); v == nil {
		t.Fatal("old state does not find id-0007")
	}
	s.runMu.Lock()
	_, kept := s.runCache[x.levels[0][0].id]
	after := len(s.runCache)
	s.runMu.Unlock()
	if kept || after != cached {
		t.Errorf("a replaced run was cached again (%d cached before, %d after)", cached, after)
	}
	old.Rollback()
	commitIDs(t, s, idRange(100, 101)...)
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if len(s.runDropped) != 0 {
		t.Errorf("%d replaced runs still remembered with no old reader open", len(s.runDropped))
	}
}

// TestLongestID: the longest _id the store takes goes into a run (whose
// block keys add 9 bytes to it) and is found again; one byte more is
// refused with an error naming the size, before anything is written.
func TestLongestID(t *testing.T) {
	s := openRunsStore(t)
	long := strings.Repeat("x", maxIDSize)
	commitIDs(t, s, long, "short")
	if _, ok, err := s.Get(context.Background(), "ds", long); !ok || err != nil {
		t.Fatalf("Get of a %d-byte _id: %v %v", len(long), ok, err)
	}
	tx, _ := s.Begin(context.Background())
	defer tx.Rollback()
	e, _ := engine.DecodeEntity([]byte(`{"_id":"` + long + `x"}`))
	p, err := engine.Prepare(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tx.Put("ds", &p, 1); err == nil || !strings.Contains(err.Error(), "cannot be stored") {
		t.Fatalf("Put of a %d-byte _id = %v, want refused", len(p.ID), err)
	}
}
