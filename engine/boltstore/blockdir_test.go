package boltstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"
)

// TestDirLookupsAgree writes a dataset whose index lies in several runs,
// then looks every _id (and some that are absent) up three ways: through
// bbolt's cursor, and through the runs' block directories in the mapping
// and with pread. The answers must be the same and the directories must
// have been used; after commits that write and drop runs (and so move
// the leaves of runs that stay), the directories must be rebuilt, not
// believed.
func TestDirLookupsAgree(t *testing.T) {
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
	put := func(round, n, mul, add int) {
		t.Helper()
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			// _ids sharing long prefixes: blocks whose first keys' 8-byte
			// prefixes tie, so the directory's search must step back.
			id := fmt.Sprintf("customer-%06d", (i*mul+round*add)%1000003)
			ids = append(ids, id)
			putModel(t, tx, ds, id, round, false)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for txn := range 30 {
		put(txn, 100, 7919, 104729)
	}
	absent := []string{"", "a", "customer-", "customer-9999999", "zzz", "customer-000000x"}

	const byCursor, inMapping, byPread = 0, 1, 2
	lookups := func(how int) map[string]string {
		got := map[string]string{}
		s.preadFlag(ds).Store(how == byPread)
		defer s.preadFlag(ds).Store(false)
		err := s.db.View(func(tx *bolt.Tx) error {
			x, err := s.datasetIndex(tx.Bucket(bucketDatasets).Bucket([]byte(ds)), ds)
			if err != nil {
				return err
			}
			if how == byCursor {
				x.sc = &lookupScratch{}
			}
			if len(x.levels) < 2 {
				t.Fatalf("runs in %d levels, want at least 2", len(x.levels))
			}
			for _, id := range append(ids, absent...) {
				got[id] = string(x.below([]byte(id), xxh3.HashString128(id)))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	used := func() (n int, stale int) {
		s.db.View(func(tx *bolt.Tx) error {
			levels, _, _ := s.runsOf(tx.Bucket(bucketDatasets).Bucket([]byte(ds)))
			for _, lv := range levels {
				for _, f := range lv {
					if d := f.dir.Load(); d != nil {
						n++
						if d.built < s.runsChanged.Load() {
							stale++
						}
					}
				}
			}
			return nil
		})
		return n, stale
	}
	check := func(what string) {
		t.Helper()
		want := lookups(byCursor)
		for _, how := range []int{inMapping, byPread} {
			got := lookups(how)
			for id, w := range want {
				if got[id] != w {
					t.Fatalf("%s, way %d: lookup of %q: %x, want %x", what, how, id, got[id], w)
				}
			}
		}
		if n, stale := used(); n < 2 || stale > 0 {
			t.Fatalf("%s: %d runs have a block directory, %d of them stale: the lookups did not use them", what, n, stale)
		}
	}
	check("first")
	// Commits that merge runs and drop others move the leaves of runs
	// that stay: their directories go stale for real.
	for round := range 5 {
		before := s.runsChanged.Load()
		put(100+round, 300, 31, 7777)
		if s.runsChanged.Load() == before {
			t.Fatalf("round %d: a commit that wrote runs did not mark them changed", round)
		}
		if _, stale := used(); stale == 0 {
			t.Fatalf("round %d: no directory is stale after runs moved", round)
		}
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
