package boltstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// TestSeekFloorOverEmptiedLeaves: in a write transaction that deleted
// every key of some leaves, bbolt's Cursor.Prev returns nil on reaching
// such a leaf (leaves are rebalanced at commit). seekFloor must still find
// the last key <= its target, behind the emptied leaves, and leave the
// cursor there.
func TestSeekFloorOverEmptiedLeaves(t *testing.T) {
	for _, pageSize := range []int{4096, 16 << 10} {
		t.Run(fmt.Sprint(pageSize), func(t *testing.T) {
			db, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), 0o600, &bolt.Options{PageSize: pageSize, NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var keys [][]byte
			for _, p := range []string{"a", "b", "c"} {
				for i := range 40 {
					keys = append(keys, fmt.Appendf(nil, "%s%03d", p, i))
				}
			}
			fillBucket(t, db, keys, make([]byte, runBlockSize))
			err = db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket([]byte("b"))
				for i := 39; i >= 0; i-- {
					if err := b.Delete(fmt.Appendf(nil, "b%03d", i)); err != nil {
						return err
					}
				}
				c := b.Cursor()
				// The premise: Prev from "c000" finds nothing.
				if k, _ := c.Seek([]byte("a999")); string(k) != "c000" {
					t.Fatalf("seek a999: %q", k)
				}
				if k, _ := c.Prev(); k != nil {
					t.Logf("bbolt's Prev stepped over the emptied leaves (%q): the case below is no longer special", k)
				}
				for _, tc := range []struct{ prefix, key, want, next string }{
					{"a", "a999", "a039", "c000"}, // behind the emptied leaves
					{"a", "a0205", "a020", "a021"},
					{"a", "a020", "a020", "a021"}, // exact
					{"c", "c999", "c039", ""},     // past the end
					{"0", "0zz", "", ""},          // nothing <= key
					{"a01", "a01", "", ""},        // only keys before the prefix
				} {
					k, _ := seekFloor(c, []byte(tc.prefix), []byte(tc.key))
					if string(k) != tc.want {
						t.Errorf("seekFloor(%q): %q, want %q", tc.key, k, tc.want)
						continue
					}
					if k == nil {
						continue
					}
					if next, _ := c.Next(); string(next) != tc.next {
						t.Errorf("seekFloor(%q): next key %q, want %q", tc.key, next, tc.next)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMergeAfterDroppedRuns is the 10M index loss: a merge step that
// resumes after a key, in the transaction that dropped runs lying between
// its upper run's blocks and the next ones, must still read that run's
// tail; a lookup and a walk from a key must find it too.
func TestMergeAfterDroppedRuns(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	val := make([]byte, indexValSize)
	write := func(st *dsState, prefix string, n int) *runFile {
		t.Helper()
		rw, err := st.newRunWriter(uint64(n), 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := rw.add(fmt.Appendf(nil, "%s-%05d", prefix, i), val); err != nil {
				t.Fatal(err)
			}
		}
		out, err := rw.finish()
		if err != nil || len(out) != 1 {
			t.Fatalf("writing run %s: %d runs, %v", prefix, len(out), err)
		}
		return out[0]
	}
	begin := func() *dsState {
		t.Helper()
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w := tx.(*writeTx)
		if err := w.upgrade(); err != nil {
			t.Fatal(err)
		}
		st, err := w.dataset("d", true)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := begin()
	// a: a few blocks; m: enough blocks to fill many leaves on its own;
	// z: after it. Their blocks lie in that order (by run id).
	a, m, z := write(st, "a", 300), write(st, "m", 6000), write(st, "z", 300)
	st.w.changed = true
	if err := st.w.Commit(); err != nil {
		t.Fatal(err)
	}
	if a.id >= m.id || m.id >= z.id {
		t.Fatalf("run ids %d, %d, %d", a.id, m.id, z.id)
	}

	st = begin()
	defer st.w.Rollback()
	rb, err := st.runsBucket()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.dropRuns([]*runFile{m}); err != nil {
		t.Fatal(err)
	}
	after := []byte("a-00290") // in a's last block, past its first key
	r, err := mergeRuns(rb, mergeStep{upper: [][]*runFile{{a}}, after: after}, &runWriter{maxEntries: 1 << 15}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.n != 9 || !r.finished || string(r.last) != "a-00299" {
		t.Errorf("merge after %s: read %d entries to %q (finished %v), want 9 to a-00299", after, r.n, r.last, r.finished)
	}
	if a.get(rb, []byte("a-00295"), nil) == nil || a.get(rb, []byte("a-00295"), &lookupScratch{}) == nil {
		t.Error("lookup of a-00295 found nothing")
	}
	it := newRunIter(rb, []*runFile{a, z})
	it.seek(after)
	if string(it.k) != "a-00290" {
		t.Errorf("walk from %s starts at %q", after, it.k)
	}
}

// fillBucket makes bucket "b" of db anew, packed (as the runs' bucket),
// with keys, each holding val.
func fillBucket(t *testing.T, db *bolt.DB, keys [][]byte, val []byte) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("b")); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		b.FillPercent = 1.0
		for _, k := range keys {
			if err := b.Put(k, val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzSeekFloor checks seekFloor against the plain answer (the last key <=
// the target) in a write transaction that deleted keys first, so that
// some leaves may be empty: the data picks which keys exist, which are
// deleted, the values' size (how many keys share a leaf) and the targets.
func FuzzSeekFloor(f *testing.F) {
	f.Add([]byte{40, 3, 0xf0, 0x0f, 0xaa, 7, 200, 13})
	f.Add([]byte{120, 0, 0xff, 0xff, 0xff, 0, 1, 2, 3, 250})
	f.Add([]byte{60, 2, 0x00, 0xff, 0x00, 60, 59, 0})
	db, err := bolt.Open(filepath.Join(f.TempDir(), "x.db"), 0o600, &bolt.Options{PageSize: 4096, NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 5 {
			return
		}
		n := int(data[0])
		val := make([]byte, 1+int(data[1]%4)*1000) // up to four keys a 4 KiB leaf, or many
		mask := data[2:5]
		targets := data[5:]
		key := func(i int) []byte { return fmt.Appendf(nil, "k%03d", i) }
		keys := make([][]byte, n)
		for i := range keys {
			keys[i] = key(i)
		}
		fillBucket(t, db, keys, val)
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("b"))
			var live []string
			for i := range n {
				// Delete runs of keys: bit i/8 of the mask, so that whole
				// leaves empty.
				if mask[(i/8)%3]&(1<<((i/8/3)%8)) != 0 {
					if err := b.Delete(key(i)); err != nil {
						return err
					}
					continue
				}
				live = append(live, string(key(i)))
			}
			c := b.Cursor()
			for _, tg := range targets {
				target := fmt.Appendf(nil, "k%03d~", int(tg)%(n+2)-1) // between keys, before the first, past the last
				want := ""
				for _, k := range live {
					if k <= string(target) {
						want = k
					}
				}
				k, _ := seekFloor(c, []byte("k"), target)
				if string(k) != want {
					t.Fatalf("%d keys, %d live: seekFloor(%s) = %q, want %q", n, len(live), target, k, want)
				}
				if k != nil {
					next, _ := c.Next()
					wantNext := ""
					for _, l := range live {
						if l > want {
							wantNext = l
							break
						}
					}
					if string(next) != wantNext {
						t.Fatalf("seekFloor(%s): next %q, want %q", target, next, wantNext)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
