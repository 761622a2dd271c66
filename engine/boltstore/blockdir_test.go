package boltstore

import (
	"context"
	"fmt"
	"maps"
	"math/bits"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"
	bolt "go.etcd.io/bbolt"
)

// TestDirLookupsAgree writes a dataset whose index lies in several runs,
// then looks every _id (and some that are absent) up four ways: through
// bbolt's cursor, and through the runs' block directories in the mapping,
// with pread, and half each way. The answers must be the same and the directories must
// have been used; after commits that write and drop runs (and so move
// the leaves of some runs that stay), the directories of runs that moved
// must be rebuilt, not believed, and some others kept.
func TestDirLookupsAgree(t *testing.T) {
	ctx := context.Background()
	s := smallRunsStore(t)
	const ds = "d"
	var ids []string
	put := func(round, n, mul, add int) {
		t.Helper()
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			// _ids sharing long prefixes, which the directories skip;
			// the later rounds add a second family, so that merged runs
			// hold both and their blocks' 8-byte prefixes tie.
			id := fmt.Sprintf("customer-%06d", (i*mul+round*add)%1000003)
			if round >= 100 && i%2 == 1 {
				id = "account-" + id[len("customer-"):]
			}
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
	absent := []string{"", "a", "account-", "customer-", "customer-9999999", "zzz", "customer-000000x", "account-000000x"}

	// halfMapped: blocks below the median block's offset in the mapping,
	// the others with pread (a release that keeps part of the runs).
	// warmed: in groups, each warmed first and looked up with its hint,
	// as a read view does (viewRawIn).
	const byCursor, inMapping, byPread, halfMapped, warmed = 0, 1, 2, 3, 4
	hinted := 0 // lookups warm found the block of
	lookups := func(how int) map[string]string {
		got := map[string]string{}
		if how == byPread {
			s.reads(ds).preadAll()
		}
		defer s.reads(ds).mapAll()
		err := s.db.View(func(tx *bolt.Tx) error {
			x, err := s.datasetIndex(tx.Bucket(bucketDatasets).Bucket([]byte(ds)), ds)
			if err != nil {
				return err
			}
			if how == halfMapped {
				var offs []int64
				for _, lv := range x.levels {
					for _, f := range lv {
						if d := f.dir.Load(); d != nil && !s.dirStale(f, d) {
							offs = append(offs, d.off...)
						}
					}
				}
				if len(offs) < 2 {
					t.Fatalf("%d blocks in current directories", len(offs))
				}
				slices.Sort(offs)
				s.reads(ds).mapBelow(offs[len(offs)/2])
			}
			if how == byCursor {
				x.sc = &lookupScratch{}
			}
			if len(x.levels) < 2 {
				t.Fatalf("runs in %d levels, want at least 2", len(x.levels))
			}
			all := append(ids[:len(ids):len(ids)], absent...)
			if how != warmed {
				for _, id := range all {
					got[id] = string(x.below([]byte(id), xxh3.HashString128(id)))
				}
				return nil
			}
			hinted += warmedLookups(x, all, got)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// used counts the runs with a directory and the stale ones, and
	// notes the current directories in dirs.
	dirs := map[*runFile]*blockDir{}
	skips := map[bool]bool{} // directories seen that skip a shared prefix, and that do not
	used := func() (n int, stale int) {
		clear(dirs)
		s.db.View(func(tx *bolt.Tx) error {
			levels, _, _ := s.runsOf(tx.Bucket(bucketDatasets).Bucket([]byte(ds)))
			for _, lv := range levels {
				for _, f := range lv {
					if d := f.dir.Load(); d != nil {
						n++
						if s.dirStale(f, d) {
							stale++
						} else {
							dirs[f] = d
							skips[d.skip > 0] = true
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
		for _, how := range []int{inMapping, byPread, halfMapped, warmed} {
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
	// Others keep their directories (dirmoves.go): checked against the
	// cursor's lookups, in every way, after every commit.
	kept := 0
	for round := range 5 {
		before := s.runsChanged.Load()
		had := maps.Clone(dirs)
		put(100+round, 300, 31, 7777)
		if s.runsChanged.Load() == before {
			t.Fatalf("round %d: a commit that wrote runs did not mark them changed", round)
		}
		if s.runsChecked.Load() != s.runsChanged.Load() {
			t.Fatalf("round %d: the commit's moved blocks were not checked (%d, %d)", round, s.runsChecked.Load(), s.runsChanged.Load())
		}
		if _, stale := used(); stale == 0 {
			t.Fatalf("round %d: no directory is stale after runs moved", round)
		}
		for f, d := range dirs {
			if had[f] == d {
				kept++
			}
		}
		check(fmt.Sprint("after commit ", round))
	}
	if kept == 0 {
		t.Fatal("no run kept its directory through a commit that moved others")
	}
	if hinted == 0 {
		t.Fatal("warm found no block: the warmed lookups took the plain path")
	}
	if !skips[true] || !skips[false] {
		t.Fatalf("directories that skip a shared prefix, and that do not: %v, want both", skips)
	}
}

// TestReleaseSwitchesToPread: a release that cannot keep a dataset's runs
// mapped within its budget switches that dataset's lookups to pread, one
// that can keep part of them keeps their lowest pages and reads past them
// with pread, and one that can keep all switches them back; other datasets
// keep their own setting.
func TestReleaseSwitchesToPread(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true, MaxResident: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.recentMin = 64
	s.background = false
	putTxns(t, s, "big", 10, 280, func(txn, i int) string { return fmt.Sprintf("%016x", uint64(txn*1000+i)*0x9e3779b97f4a7c15) })
	pageSize := s.db.Info().PageSize
	other := s.reads("other")
	s.db.View(func(tx *bolt.Tx) error {
		// The runs' pages (branches and leaves), and those of "recent"
		// (kept first).
		s.hot.mark("big")
		s.keepRuns(tx, pageSize, 1<<30)
		runs, recent := s.hot.lastPages(runsKey("big")), s.hot.lastPages(recentKey("big"))
		if runs < 8 {
			t.Fatalf("the runs have %d pages, too few to keep part of", runs)
		}
		const all, part, none = 0, 1, 2
		for _, c := range []struct {
			budget int64
			want   int
		}{
			{1 << 30, all}, {int64(pageSize), none}, {0, none}, {1 << 30, all}, {-1, none},
			{int64(recent+runs*3/4) * int64(pageSize), part}, {int64(recent+runs) * int64(pageSize), all},
			{int64(recent+runs/8) * int64(pageSize), none},
		} {
			s.hot.mark("big")
			kept := s.keepRuns(tx, pageSize, c.budget)
			below := s.reads("big").mappedBelow()
			got := part
			switch below {
			case allMapped:
				got = all
			case 0:
				got = none
			}
			if got != c.want {
				t.Errorf("budget %d: runs read %d (mapped below %d), want %d", c.budget, got, below, c.want)
			}
			var n int64
			for _, r := range kept {
				n += int64(r.end - r.start)
			}
			if n*int64(pageSize) > max(c.budget, 0) {
				t.Errorf("budget %d: %d pages kept", c.budget, n)
			}
			if got == part {
				// Kept: the leaves below the offset, none from it on.
				for _, r := range kept {
					if int64(r.end)*int64(pageSize) > below && int64(r.start)*int64(pageSize) < below {
						t.Errorf("budget %d: kept pages %d-%d straddle the offset %d", c.budget, r.start, r.end, below)
					}
				}
			}
		}
		return nil
	})
	if other.mappedBelow() != allMapped {
		t.Error("a dataset that was not released switched to pread")
	}
}

// TestDirFromFileMatches: a directory built from the file with pread is the
// directory built through the mapping, for every run, with 4 KiB and 16
// KiB pages and keys long enough to need overflow pages.
func TestDirFromFileMatches(t *testing.T) {
	for _, c := range []struct {
		pageSize int
		idLen    int
	}{{4096, 16}, {16384, 16}, {4096, 700}, {16384, 3000}} {
		t.Run(fmt.Sprintf("page%d-id%d", c.pageSize, c.idLen), func(t *testing.T) {
			s := openPageSize(t, c.pageSize)
			s.recentMin = 64
			s.l0Runs, s.l1Entries, s.runEntries, s.compactBudget = 3, 400, 150, 1<<20
			s.background = false
			putTxns(t, s, "d", 12, 150, func(txn, i int) string { return fmt.Sprintf("%0*x", c.idLen, uint64(txn*1000+i)*0x9e3779b97f4a7c15) })
			runs := 0
			err := s.db.View(func(tx *bolt.Tx) error {
				db := tx.Bucket(bucketDatasets).Bucket([]byte("d"))
				levels, _, err := s.runsOf(db)
				if err != nil {
					return err
				}
				rb := db.Bucket(bucketIxRuns)
				sc := &lookupScratch{s: s}
				for _, lv := range levels {
					for _, f := range lv {
						runs++
						want, got := s.buildDir(rb, f), s.buildDirFromFile(rb, f, sc)
						if want == nil || got == nil {
							t.Fatalf("run %d: directory through the mapping %v, from the file %v", f.id, want != nil, got != nil)
						}
						if !slices.Equal(want.prefix, got.prefix) || !slices.Equal(want.off, got.off) || !slices.Equal(want.size, got.size) || want.built != got.built || want.skip != got.skip {
							t.Fatalf("run %d: from the file %d blocks at %v, through the mapping %d at %v", f.id, len(got.off), got.off, len(want.off), want.off)
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if runs < 3 {
				t.Fatalf("%d runs", runs)
			}
		})
	}
}

// openPageSize opens a store in a new file of the given page size.
func openPageSize(t *testing.T, pageSize int) *Store {
	t.Helper()
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if got := s.db.Info().PageSize; got != pageSize {
		t.Fatalf("page size %d, want %d", got, pageSize)
	}
	return s
}

// FuzzPageElements: reading an element of any page (a corrupt file, a page
// reused meanwhile) never panics, and what it returns lies inside the page.
func FuzzPageElements(f *testing.F) {
	page := make([]byte, 64)
	page[pageHeaderSize+4] = 32 // a branch element: pos 32, ksize 4
	page[pageHeaderSize+8] = 4
	f.Add(page, 0)
	f.Add(page, 1)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, page []byte, i int) {
		if i < 0 || i > 1<<16 {
			return
		}
		if key, _, ok := branchElement(page, i); ok && len(key) > len(page) {
			t.Fatalf("branch key of %d bytes in a page of %d", len(key), len(page))
		}
		if _, key, val, vsize, ok := leafElement(page, i); ok && (len(key) > len(page) || val < 0 || val+vsize > len(page)) {
			t.Fatalf("leaf key %d, value %d+%d in a page of %d", len(key), val, vsize, len(page))
		}
	})
}

// putTxns writes txns transactions of per entities each into dataset ds,
// entity i of transaction txn with _id id(txn, i) and version txn.
func putTxns(t *testing.T, s *Store, ds string, txns, per int, id func(txn, i int) string) {
	t.Helper()
	for txn := range txns {
		tx, err := s.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range per {
			putModel(t, tx, ds, id(txn, i), txn, false)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// smallRunsStore opens a store in t.TempDir() whose index makes runs of a
// few hundred entries in several levels, merged only by its writer (no
// commit moves blocks between a test's lookups).
func smallRunsStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	smallRuns(s)
	return s
}

// smallRuns shapes s's index runs small, and merges on the writer.
func smallRuns(s *Store) {
	s.recentMin = 64
	s.l0Runs, s.l1Entries, s.runEntries, s.compactBudget = 3, 400, 150, 1<<20
	s.background = false
}

// putRounds writes rounds transactions of per entities each into dataset
// ds, entity i of round r with _id id(r, i), and returns the _ids.
func putRounds(t *testing.T, s *Store, ds string, rounds, per int, id func(r, i int) string) []string {
	t.Helper()
	var ids []string
	for r := range rounds {
		tx, err := s.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range per {
			ids = append(ids, id(r, i))
			putModel(t, tx, ds, ids[len(ids)-1], r, false)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestDirSharedPrefixes looks up every _id of a large run whose ids share
// long prefixes. Where all of them share it ("customer-0001234"), the
// directory skips those bytes and a lookup reads one block (two when the
// id is a block's first key). Where two families share a run, their first
// 8 bytes tie over about half the blocks each, and a lookup reads a
// binary search's worth of them, not every tied block as it once did;
// so do ids that are prefixes of one another (ties and zero-padded
// prefixes). Every answer, and those for absent ids, agrees with bbolt's
// cursor.
func TestDirSharedPrefixes(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   func(i int) string
		skip int
	}{
		{"one family", func(i int) string { return fmt.Sprintf("customer-%07d", i) }, len("customer-00")},
		{"two families", func(i int) string {
			if i%2 == 0 {
				return fmt.Sprintf("account-%07d", i)
			}
			return fmt.Sprintf("customer-%07d", i)
		}, 0},
		// i in binary over "ab": ids of every length up to 16 that are
		// prefixes of one another, and 8-byte prefixes shared by a few
		// dozen ids each.
		{"prefixes of each other", func(i int) string {
			return strings.Map(func(r rune) rune { return 'a' + r - '0' }, strconv.FormatInt(int64(i), 2))
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(t.TempDir(), Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const ds, n = "d", 20000
			tx, err := s.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for i := range n {
				ids = append(ids, tc.id((i*7919)%n))
				putModel(t, tx, ds, ids[i], i, false)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			absent := []string{"", "a", "account-", "account-0000001x", "customer-", "customer-00", "customer-9999999", "customer-0000000\x00", "zzz"}
			err = s.db.View(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketDatasets).Bucket([]byte(ds))
				x, err := s.datasetIndex(b, ds)
				if err != nil {
					return err
				}
				byCursor, err := s.datasetIndex(b, ds)
				if err != nil {
					return err
				}
				byCursor.sc = &lookupScratch{}
				if len(x.levels) != 1 || len(x.levels[0]) != 1 || x.levels[0][0].count != n {
					t.Fatalf("want one run of %d entries, have %d levels", n, len(x.levels))
				}
				f := x.levels[0][0]
				maxReads, found := 0, 0
				for k, id := range append(ids, absent...) {
					h := xxh3.HashString128(id)
					before := x.sc.blockReads
					got := x.below([]byte(id), h)
					maxReads = max(maxReads, x.sc.blockReads-before)
					if want := byCursor.below([]byte(id), h); string(got) != string(want) {
						t.Fatalf("lookup of %q: %x, want %x", id, got, want)
					}
					if got != nil && k < n {
						found++
					}
				}
				if found != n {
					t.Fatalf("found %d of %d ids", found, n)
				}
				d := f.dir.Load()
				if d == nil {
					t.Fatal("the run has no directory: the lookups did not use one")
				}
				if d.skip != tc.skip {
					t.Errorf("directory skips %d bytes, want %d", d.skip, tc.skip)
				}
				// One block, or a binary search over the tied ones and
				// then the block itself.
				limit := 2
				if tc.skip == 0 {
					limit = bits.Len(uint(len(d.off))) + 1
				}
				if maxReads > limit {
					t.Errorf("a lookup read %d of the run's %d blocks, want at most %d", maxReads, len(d.off), limit)
				}
				t.Logf("%d blocks, at most %d read by a lookup", len(d.off), maxReads)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// warmedLookups looks ids up in x as a read view does (viewRawIn): in
// groups, each warmed first, then looked up with its hint. It notes the
// values in got and returns how many lookups had a block from warm.
func warmedLookups(x idIndex, ids []string, got map[string]string) (hinted int) {
	x.sc.hits = true
	for g := 0; g < len(ids); g += warmGroup {
		group := ids[g:min(g+warmGroup, len(ids))]
		bs := make([][]byte, len(group))
		for k, id := range group {
			bs[k] = []byte(id)
		}
		x.warm(bs)
		for k, id := range group {
			if x.sc.warmHints[k].b != nil {
				hinted++
			}
			x.sc.warmed = &x.sc.warmHints[k]
			got[id] = string(x.below(bs[k], xxh3.HashString128(id)))
		}
		x.sc.warmed = nil
	}
	return hinted
}

// TestWarmedLookupsTiedPrefixes: where the bottom level's blocks start
// with keys whose 8 bytes after the run's shared prefix tie, the block an
// _id is in is found by reading first keys, which warm does not do; its
// lookups must agree with the cursor's all the same, for _ids of both
// kinds, present and absent.
func TestWarmedLookupsTiedPrefixes(t *testing.T) {
	s := smallRunsStore(t)
	const ds = "d"
	ids := putRounds(t, s, ds, 12, 120, func(r, i int) string {
		j := (i*7919 + r*104729) % 100003
		if i%2 == 1 {
			return fmt.Sprintf("%d-shared-middle-%06d", j%3, j) // tied
		}
		return fmt.Sprintf("customer-%06d", j) // 8-byte prefixes apart
	})
	probe := append(ids[:len(ids):len(ids)], "0-shared-middle-", "1-shared-middle-000000", "2-shared-middle-999999", "1-shared-middlf", "customer-", "")
	for _, id := range ids[:50] { // just below and above present _ids
		probe = append(probe, id[:len(id)-1], id+"0")
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(ds))
		byCursor, err := s.datasetIndex(b, ds)
		if err != nil {
			return err
		}
		byCursor.sc = &lookupScratch{}
		want := map[string]string{}
		for _, id := range probe {
			want[id] = string(byCursor.below([]byte(id), xxh3.HashString128(id)))
		}
		for pass := range 2 { // the first builds the directories
			x, err := s.datasetIndex(b, ds)
			if err != nil {
				return err
			}
			if len(x.levels) < 2 {
				t.Fatalf("runs in %d levels, want at least 2", len(x.levels))
			}
			got := map[string]string{}
			hinted := warmedLookups(x, probe, got)
			for _, id := range probe {
				if got[id] != want[id] {
					t.Fatalf("pass %d: lookup of %q: %x, want %x", pass, id, got[id], want[id])
				}
			}
			if pass == 1 && hinted == 0 {
				t.Fatal("warm found no block")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWriteLookupsBuildDirLate: a write transaction's lookups in a run
// without a current directory take the cursor, and only a run looked up
// more than writeDirAfter times that way gets a directory; the values
// agree with the cursor's either way.
func TestWriteLookupsBuildDirLate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	smallRuns(s)
	const ds = "d"
	ids := putRounds(t, s, ds, 12, 120, func(r, i int) string { return fmt.Sprintf("customer-%06d", (i*7919+r*104729)%100003) })
	s.Close()
	// Reopened: no run has a directory yet.
	if s, err = Open(dir, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	w := tx.(*writeTx)
	if err := w.upgrade(); err != nil {
		t.Fatal(err)
	}
	st, err := w.dataset(ds, false)
	if err != nil || st == nil {
		t.Fatal(st, err)
	}
	x, byCursor := st.idIndex(), st.idIndex()
	byCursor.sc = &lookupScratch{}
	if len(x.levels) < 2 {
		t.Fatalf("runs in %d levels, want at least 2", len(x.levels))
	}
	built := func() (n int) {
		for _, lv := range x.levels {
			for _, f := range lv {
				if f.dir.Load() != nil {
					n++
				}
			}
		}
		return n
	}
	lookup := func(ids []string) {
		t.Helper()
		for _, id := range ids {
			got, want := x.get([]byte(id)), byCursor.get([]byte(id))
			if string(got) != string(want) || got == nil {
				t.Fatalf("lookup of %q: %x, want %x", id, got, want)
			}
		}
	}
	if n := built(); n != 0 {
		t.Fatalf("%d directories before any lookup", n)
	}
	lookup(ids[:writeDirAfter])
	if n := built(); n != 0 {
		t.Fatalf("%d directories built after %d lookups, want none", n, writeDirAfter)
	}
	lookup(ids)
	if n := built(); n == 0 {
		t.Fatalf("no directory built after %d lookups", len(ids)+writeDirAfter)
	}
}
