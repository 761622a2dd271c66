//go:build linux

package boltstore

import (
	"context"
	"fmt"
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
// release keeps against bbolt's own statistics of the index bucket.
func TestWalkIndexFindsEveryPage(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range []int{3, 40000} {
		ds := fmt.Sprintf("ds%d", n)
		fillIndex(t, s, ds, n)
		s.db.View(func(tx *bolt.Tx) error {
			ib := tx.Bucket(bucketDatasets).Bucket([]byte(ds)).Bucket(bucketIndex)
			st := ib.Stats()
			if ib.Root() == 0 {
				// Small indexes live inline in their parent: nothing to keep.
				if n > 100 {
					t.Errorf("%s: index of %d ids is inline", ds, n)
				}
				return nil
			}
			ps := s.db.Info().PageSize
			branches, leaves, ok := s.walkIndex(uint64(ib.Root()), uint64(tx.Size())/uint64(ps), ps, make([]byte, ps))
			if !ok {
				t.Fatalf("%s: walk failed", ds)
			}
			if len(branches) != st.BranchPageN+st.BranchOverflowN || len(leaves) != st.LeafPageN {
				t.Errorf("%s: walk found %d branch and %d leaf pages, bbolt counts %d(+%d) and %d", ds, len(branches), len(leaves), st.BranchPageN, st.BranchOverflowN, st.LeafPageN)
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
		st, rst := b.Bucket(bucketIndex).Stats(), b.Bucket(bucketRecent).Stats()
		if rst.LeafPageN == 0 || st.LeafPageN == 0 {
			t.Fatalf("want both index levels on pages, have %d and %d leaves", rst.LeafPageN, st.LeafPageN)
		}
		if want := st.BranchPageN + st.LeafPageN + rst.BranchPageN + rst.LeafPageN; kept != uint64(want) {
			t.Errorf("kept %d pages, the two index levels have %d", kept, want)
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
