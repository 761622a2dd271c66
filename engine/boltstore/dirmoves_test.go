package boltstore

import (
	"fmt"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// runDirs builds, in one read transaction, the directory of every run of
// dataset ds, through the mapping, as a lookup would.
func runDirs(t *testing.T, s *Store, tx *bolt.Tx, ds string) map[*runFile]*blockDir {
	t.Helper()
	levels, rb, err := s.runsOf(tx.Bucket(bucketDatasets).Bucket([]byte(ds)))
	if err != nil || len(levels) == 0 {
		t.Fatalf("runs of %q: %v (%d levels)", ds, err, len(levels))
	}
	out := map[*runFile]*blockDir{}
	for _, lv := range levels {
		for _, f := range lv {
			d := s.buildDir(rb, f)
			if d == nil {
				t.Fatalf("run %d: no directory", f.id)
			}
			out[f] = d
		}
	}
	return out
}

// TestMovedDirsAreStale: after a commit that writes and drops runs, every
// directory that no longer says where its run's blocks are is stale, and
// so is one that a reader built before the commit and stores only after
// the commit's check (a race the check cannot see: it marks runs without
// a current directory). Directories whose blocks stayed put stay current.
func TestMovedDirsAreStale(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprint("stored late ", late), func(t *testing.T) {
			s := smallRunsStore(t)
			const ds = "d"
			id := func(txn, i int) string { return fmt.Sprintf("customer-%06d", (i*7919+txn*104729)%1000003) }
			putTxns(t, s, ds, 30, 100, id)

			stale, current := 0, 0
			for round := range 6 {
				// The directories as of the state before the commit,
				// stored now (the run's current ones) or after it.
				tx, err := s.db.Begin(false)
				if err != nil {
					t.Fatal(err)
				}
				before := runDirs(t, s, tx, ds)
				tx.Rollback()
				if !late {
					for f, d := range before {
						f.dir.Store(d)
					}
				} else {
					for f := range before {
						f.dir.Store(nil)
					}
				}
				putTxns(t, s, ds, 1, 300, func(_, i int) string { return id(1000+round, i) })
				if late {
					for f, d := range before {
						f.dir.Store(d)
					}
				}
				err = s.db.View(func(tx *bolt.Tx) error {
					for f, d := range runDirs(t, s, tx, ds) {
						old := before[f]
						if old == nil {
							continue // written by the commit
						}
						moved := !slices.Equal(old.off, d.off)
						switch isStale := s.dirStale(f, f.dir.Load()); {
						case moved && !isStale:
							t.Fatalf("round %d: run %d moved, but its directory is believed", round, f.id)
						case isStale:
							stale++
						default:
							current++
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if stale == 0 {
				t.Fatal("no directory went stale: the commits moved nothing")
			}
			if !late && current == 0 {
				t.Fatal("every directory went stale: none outlived a commit")
			}
		})
	}
}
