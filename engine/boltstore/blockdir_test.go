package boltstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"
)

// TestPreadLookupsAgree writes a dataset whose index lies in several runs,
// then looks every _id (and some that are absent) up both ways: through
// bbolt's cursor and with pread through the runs' block directories. The
// answers must be the same, the directories must have been used, and a
// directory made stale on purpose (its offsets shifted, as when bbolt
// moves a run's leaves) must be noticed and rebuilt, not believed.
func TestPreadLookupsAgree(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.recentMin = 64
	s.l0Runs, s.l1Entries, s.runEntries, s.compactBudget = 3, 400, 150, 1<<20
	s.background = false // no commit may move blocks between the lookups
	const ds = "d"
	var ids []string
	for txn := range 30 {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			// _ids sharing long prefixes: blocks whose first keys' 8-byte
			// prefixes tie, so the directory's search must step back.
			id := fmt.Sprintf("customer-%06d", (i*7919+txn*104729)%1000003)
			ids = append(ids, id)
			putModel(t, tx, ds, id, txn, false)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	absent := []string{"", "a", "customer-", "customer-9999999", "zzz", "customer-000000x"}

	lookups := func(pread bool) map[string]string {
		got := map[string]string{}
		s.preadFlag(ds).Store(pread)
		defer s.preadFlag(ds).Store(false)
		err := s.db.View(func(tx *bolt.Tx) error {
			x, err := s.datasetIndex(tx.Bucket(bucketDatasets).Bucket([]byte(ds)), ds)
			if err != nil {
				return err
			}
			if len(x.levels) < 2 {
				t.Fatalf("runs in %d levels, want at least 2", len(x.levels))
			}
			for _, id := range append(ids, absent...) {
				v := x.below([]byte(id), xxh3.HashString128(id))
				if x.recent != nil {
					if r := x.recent.Get([]byte(id)); r != nil {
						continue // newer than the runs; not their answer
					}
				}
				got[id] = string(v)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := lookups(false)
	check := func(what string) {
		t.Helper()
		got := lookups(true)
		for id, w := range want {
			if got[id] != w {
				t.Fatalf("%s: pread lookup of %q: %x, want %x", what, id, got[id], w)
			}
		}
	}
	check("first")
	var dirs []*runFile
	s.db.View(func(tx *bolt.Tx) error {
		levels, _, _ := s.runsOf(tx.Bucket(bucketDatasets).Bucket([]byte(ds)))
		for _, lv := range levels {
			for _, f := range lv {
				if f.dir.Load() != nil {
					dirs = append(dirs, f)
				}
			}
		}
		return nil
	})
	if len(dirs) < 2 {
		t.Fatalf("%d runs have a block directory: the lookups did not read blocks with pread", len(dirs))
	}
	// Stale directories: every block's offset moved by a page.
	orig := map[*runFile]*blockDir{}
	for _, f := range dirs {
		d := f.dir.Load()
		orig[f] = d
		moved := &blockDir{prefix: d.prefix, off: make([]int64, len(d.off)), size: d.size, sum: d.sum}
		for i, o := range d.off {
			moved.off[i] = o + 4096
		}
		f.dir.Store(moved)
	}
	check("stale")
	rebuilt := 0
	for _, f := range dirs {
		d := f.dir.Load()
		if d.off[0] == orig[f].off[0]+4096 {
			continue // not consulted since
		}
		rebuilt++
		if fmt.Sprint(d.off) != fmt.Sprint(orig[f].off) {
			t.Errorf("run %d: rebuilt directory %v, want %v", f.id, d.off, orig[f].off)
		}
	}
	if rebuilt == 0 {
		t.Error("no stale directory was rebuilt")
	}
	// Commits that merge runs and drop others move the leaves of runs
	// that stay: their directories go stale for real.
	for round := range 5 {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			id := fmt.Sprintf("customer-%06d", (i*31+round*7777)%1000003)
			ids = append(ids, id)
			putModel(t, tx, ds, id, 100+round, false)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		want = lookups(false)
		check(fmt.Sprint("after commit ", round))
	}
}

// TestReleaseSwitchesToPread: a release that cannot keep a dataset's runs
// mapped within its budget switches that dataset's lookups to pread, and
// one that can switches them back; other datasets keep their own flag.
func TestReleaseSwitchesToPread(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{NoSync: true, MaxResident: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.recentMin = 64
	s.background = false
	for txn := range 10 {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			putModel(t, tx, "big", fmt.Sprintf("%016x", uint64(txn*1000+i)*0x9e3779b97f4a7c15), 1, false)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	pageSize := s.db.Info().PageSize
	other := s.preadFlag("other")
	s.db.View(func(tx *bolt.Tx) error {
		for _, c := range []struct {
			budget int64
			want   bool
		}{{1 << 30, false}, {int64(pageSize), true}, {0, true}, {1 << 30, false}, {-1, true}} {
			s.hot.mark("big")
			s.keepRuns(tx, pageSize, c.budget)
			if got := s.preadFlag("big").Load(); got != c.want {
				t.Errorf("budget %d: pread %v, want %v", c.budget, got, c.want)
			}
		}
		return nil
	})
	if other.Load() {
		t.Error("a dataset that was not released switched to pread")
	}
}
