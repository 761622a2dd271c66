//go:build linux

package boltstore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
)

// fillIndex writes n entities with random-looking ids into dataset ds.
func fillIndex(t *testing.T, s *Store, ds string, n int) {
	t.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += 5000 {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := start; i < min(n, start+5000); i++ {
			e, _ := engine.DecodeEntity(fmt.Appendf(nil, `{"_id":"%016x","i":%d}`, uint64(i)*0x9E3779B97F4A7C15, i))
			p, _ := engine.Prepare(e)
			if _, _, err := tx.Put(ds, &p, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWalkIndexFindsEveryPage checks the page walk that decides what a
// release keeps against bbolt's own statistics: of "recent" as a big
// B+tree (runs off), and of the runs' bucket, whose leaves overflow.
func TestWalkIndexFindsEveryPage(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		n      int
		bucket []byte
		runs   bool
	}{{3, bucketRecent, false}, {40000, bucketRecent, false}, {3, bucketIxRuns, true}, {40000, bucketIxRuns, true}} {
		ds := fmt.Sprintf("ds%d-%s", c.n, c.bucket)
		s.recentMin = defaultRecentMin
		if !c.runs {
			s.recentMin = 1 << 30
		} else if c.n < 100 {
			s.recentMin = 1
		}
		fillIndex(t, s, ds, c.n)
		s.db.View(func(tx *bolt.Tx) error {
			ib := tx.Bucket(bucketDatasets).Bucket([]byte(ds)).Bucket(c.bucket)
			if ib == nil {
				t.Fatalf("%s: no %s bucket", ds, c.bucket)
			}
			st := ib.Stats()
			if ib.Root() == 0 {
				// Small indexes live inline in their parent: nothing to keep.
				if c.n > 100 {
					t.Errorf("%s: index of %d ids is inline", ds, c.n)
				}
				return nil
			}
			ps := s.db.Info().PageSize
			branches, leaves, ok := s.walkIndex(ds, uint64(ib.Root()), uint64(tx.Size())/uint64(ps), ps, make([]byte, ps), c.runs, math.MaxInt)
			if !ok {
				t.Fatalf("%s: walk failed", ds)
			}
			if len(branches) != st.BranchPageN+st.BranchOverflowN || len(leaves) != st.LeafPageN+st.LeafOverflowN {
				t.Errorf("%s: walk found %d branch and %d leaf pages, bbolt counts %d(+%d) and %d(+%d)", ds, len(branches), len(leaves), st.BranchPageN, st.BranchOverflowN, st.LeafPageN, st.LeafOverflowN)
			}
			// A second walk takes the overflows from the first, which
			// remembered every leaf's: the same pages.
			if c.runs {
				if got := len(s.hot.overflows(ds)); got != st.LeafPageN {
					t.Errorf("%s: the walk remembered %d leaves' overflow, want %d", ds, got, st.LeafPageN)
				}
			}
			b3, l3, ok := s.walkIndex(ds, uint64(ib.Root()), uint64(tx.Size())/uint64(ps), ps, make([]byte, ps), c.runs, math.MaxInt)
			if !ok || !slices.Equal(b3, branches) || !slices.Equal(l3, leaves) {
				t.Errorf("%s: second walk: ok %v, %d branch and %d leaf pages, want %d and %d", ds, ok, len(b3), len(l3), len(branches), len(leaves))
			}
			if c.runs && c.n > 100 && st.LeafOverflowN == 0 {
				t.Errorf("%s: no leaf overflows: the walk's overflow reading is not tested", ds)
			}
			// A tree that cannot fit in room pages is not read leaf by
			// leaf: the walk stops at the leaves' count, a lower bound.
			room := len(branches) + st.LeafPageN - 1
			b2, l2, ok := s.walkIndex("", uint64(ib.Root()), uint64(tx.Size())/uint64(ps), ps, make([]byte, ps), c.runs, room)
			if !ok || len(b2) != len(branches) || len(l2) != st.LeafPageN {
				t.Errorf("%s: walk within %d pages: ok %v, %d branch and %d leaf pages, want %d and %d (no overflow read)", ds, room, ok, len(b2), len(l2), len(branches), st.LeafPageN)
			}
			return nil
		})
	}
}

// TestReleaseKeepsIndexPages releases the mapping while an index is hot:
// what stays mapped must include the index, and everything still reads.
func TestReleaseKeepsIndexPages(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true, MaxResident: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fillIndex(t, s, "big", 40000)
	s.recentMin = 1 << 30
	fillIndex(t, s, "big", 41000) // the last 1,000 go to "recent"
	s.hot.mark("big")
	var runs []pageRun
	s.db.View(func(tx *bolt.Tx) error {
		runs = s.keepRuns(tx, s.db.Info().PageSize, 1<<30)
		s.releaseIn(tx)
		return nil
	})
	if len(runs) == 0 {
		t.Fatal("nothing kept for a hot index")
	}
	kept := uint64(0)
	for _, r := range runs {
		kept += r.end - r.start
	}
	s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte("big"))
		st, rst := b.Bucket(bucketIxRuns).Stats(), b.Bucket(bucketRecent).Stats()
		if rst.LeafPageN == 0 || st.LeafPageN == 0 {
			t.Fatalf("want recent and runs on pages, have %d and %d leaves", rst.LeafPageN, st.LeafPageN)
		}
		want := st.BranchPageN + st.BranchOverflowN + st.LeafPageN + st.LeafOverflowN + rst.BranchPageN + rst.LeafPageN
		if kept != uint64(want) {
			t.Errorf("kept %d pages, recent and the runs have %d", kept, want)
		}
		return nil
	})
	// With no budget nothing is kept.
	s.db.View(func(tx *bolt.Tx) error {
		if r := s.keepRuns(tx, s.db.Info().PageSize, 4096); r != nil {
			t.Errorf("kept %d runs within a one-page budget", len(r))
		}
		return nil
	})
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	seven := uint64(7)
	if _, ok, err := s.Get(context.Background(), "big", fmt.Sprintf("%016x", seven*0x9E3779B97F4A7C15)); !ok || err != nil {
		t.Fatalf("Get after release = %v, %v", ok, err)
	}
}

// TestTreeRootsMatchBuckets: the index trees' roots a release reads with
// pread (treeRoots) are those bbolt's buckets give, for hundreds of
// datasets (a "datasets" bucket of several levels with 4 KiB pages),
// small and large, with trees inline in their dataset's bucket, and for
// names that are not datasets. And what a release keeps is the same
// whether the walks of unchanged trees are taken from the last release or
// walked again, before and after commits that change some of the trees.
func TestTreeRootsMatchBuckets(t *testing.T) {
	s := openPageSize(t, 4096)
	var names []string
	for d := range 400 {
		name := fmt.Sprintf("system-%03d-datatype-collect", d)
		names = append(names, name)
		n := 1
		switch {
		case d%50 == 0:
			n = 9000 // runs and a "recent" of several levels
		case d%7 == 0:
			n = 300
		}
		putTxns(t, s, name, 1, n, func(_, i int) string { return fmt.Sprintf("%s-%d", name, i) })
		s.hot.mark(name)
	}
	hot := append(slices.Clone(names), "not-a-dataset", "", "system-")
	for _, n := range hot {
		s.hot.mark(n)
	}
	ps := s.db.Info().PageSize
	view := func(fn func(tx *bolt.Tx)) {
		t.Helper()
		if err := s.db.View(func(tx *bolt.Tx) error { fn(tx); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	view(func(tx *bolt.Tx) {
		root := tx.Bucket(bucketDatasets)
		buf := make([]byte, ps)
		roots := s.treeRoots(uint64(root.Root()), hot, uint64(tx.Size())/uint64(ps), ps, &buf)
		if roots == nil {
			t.Fatal("treeRoots: nil")
		}
		if len(roots) != len(names) {
			t.Errorf("treeRoots found %d datasets, want %d", len(roots), len(names))
		}
		inline, trees := 0, 0
		for _, name := range names {
			b := root.Bucket([]byte(name))
			for _, tree := range indexTrees {
				var want uint64
				if ib := b.Bucket(tree); ib != nil {
					want = uint64(ib.Root())
					if want == 0 {
						inline++
					} else {
						trees++
					}
				}
				if got := roots[name][string(tree)]; got != want {
					t.Fatalf("%s/%s: root %d, want %d", name, tree, got, want)
				}
			}
		}
		if inline == 0 || trees < 16 {
			t.Errorf("%d inline trees and %d of their own: want both", inline, trees)
		}
	})
	keep := func(cached bool) (runs []pageRun) {
		if !cached {
			s.hot.mu.Lock()
			s.hot.walks = nil
			s.hot.mu.Unlock()
		}
		view(func(tx *bolt.Tx) { runs = s.keepRuns(tx, ps, math.MaxInt64/2) })
		return runs
	}
	fresh := keep(false)
	if len(fresh) == 0 {
		t.Fatal("a release with room for everything keeps nothing")
	}
	if again := keep(true); !slices.Equal(again, fresh) {
		t.Fatalf("kept with the last walks: %d runs, walked again: %d", len(again), len(fresh))
	}
	if len(s.hot.walks) == 0 {
		t.Fatal("no walk was kept for the next release")
	}
	// Commits that change some trees (and move others' pages).
	for _, d := range []int{0, 7, 13, 100} {
		putTxns(t, s, names[d], 1, 500, func(_, i int) string { return fmt.Sprintf("%s-new-%d", names[d], i) })
	}
	cached := keep(true)
	if walked := keep(false); !slices.Equal(cached, walked) {
		t.Fatalf("after commits, kept with the last walks: %d runs, walked again: %d", len(cached), len(walked))
	}
}
