package boltstore_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/storetest"
)

// open opens a store in a temp dir and checks the file's consistency when
// the test ends.
func open(t *testing.T) engine.Store {
	t.Helper()
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		check(t, dir)
	})
	return s
}

// check runs bbolt's consistency check over a closed store's file.
func check(t *testing.T, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, boltstore.FileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("reopening for check: %v", err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("consistency: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func TestContract(t *testing.T) {
	storetest.Run(t, open)
}

// TestContractPreadRuns runs the contract with every index update in a
// run and lookups reading the runs' blocks with pread.
func TestContractPreadRuns(t *testing.T) {
	storetest.Run(t, func(t *testing.T) engine.Store {
		s := open(t).(*boltstore.Store)
		boltstore.SetRecentMin(s, 1)
		boltstore.SetPreadRuns(s, true)
		return s
	})
}

func TestReopenPersists(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tx, _ := s.Begin(ctx)
	for i := 0; i < 3; i++ {
		p := storetest.Prep(t, fmt.Sprintf(`{"_id":"e%d","n":%d}`, i, i))
		if _, _, err := tx.Put("ds", &p, 7); err != nil {
			t.Fatal(err)
		}
	}
	p := storetest.Prep(t, `{"_id":"e0","_deleted":true}`)
	tx.Put("ds", &p, 8)
	tx.SetPopulated("ds")
	tx.SetPipeState("pipe", engine.PipeState{Since: "3"})
	tx.AddRun(engine.RunRecord{Pipe: "pipe", Read: 3})
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, ok, err := s.Dataset(ctx, "ds")
	if err != nil || !ok {
		t.Fatalf("Dataset after reopen: %v %v", ok, err)
	}
	if in.Versions != 4 || in.Entities != 3 || in.Deleted != 1 || in.LastOffset != 3 || !in.Populated {
		t.Errorf("info after reopen = %+v", in)
	}
	if st, _ := s.PipeState(ctx, "pipe"); st.Since != "3" {
		t.Errorf("pipe state after reopen = %+v", st)
	}
	if runs, _ := s.Runs(ctx, "pipe", 0); len(runs) != 1 || runs[0].Read != 3 {
		t.Errorf("runs after reopen = %+v", runs)
	}
	hist, _ := s.History(ctx, "ds", "e0")
	if len(hist) != 2 || !hist[1].Deleted || hist[1].Previous != 0 || hist[1].TS != 8 {
		t.Errorf("history after reopen = %+v", hist)
	}
	// Offsets continue after the reopened log.
	tx, _ = s.Begin(ctx)
	p = storetest.Prep(t, `{"_id":"new"}`)
	_, rec, _ := tx.Put("ds", &p, 9)
	tx.Commit()
	if rec.Offset != 4 {
		t.Errorf("offset after reopen = %d, want 4", rec.Offset)
	}
}

func TestCorruptFile(t *testing.T) {
	for _, size := range []int{0, 100, 4096, 8192, 64 << 10, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			dir := t.TempDir()
			junk := make([]byte, size)
			rand.Read(junk)
			path := filepath.Join(dir, boltstore.FileName)
			if err := os.WriteFile(path, junk, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := boltstore.Open(dir, boltstore.Options{LockTimeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				if size == 0 {
					return // an empty file is initialised as a new store
				}
				t.Fatal("opening a file of random bytes succeeded")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if !strings.Contains(err.Error(), "corrupt") && !strings.Contains(err.Error(), "not a valid ferry store") {
				t.Errorf("error %q does not say the file is corrupt", err)
			}
		})
	}
}

func TestLockedFile(t *testing.T) {
	dir := t.TempDir()
	s, err := boltstore.Open(dir, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s2, err := boltstore.Open(dir, boltstore.Options{LockTimeout: 50 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !strings.Contains(err.Error(), "locked by another ferry process") || !strings.Contains(err.Error(), filepath.Join(dir, boltstore.FileName)) {
		t.Errorf("error = %q, want it to name the file and say it is locked by another ferry process", err)
	}
}

func TestRunsTrimmed(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	tx, _ := s.Begin(ctx)
	for i := 0; i < 1005; i++ {
		if err := tx.AddRun(engine.RunRecord{Pipe: "p", Read: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	tx.Commit()
	runs, err := s.Runs(ctx, "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1000 {
		t.Fatalf("%d runs kept, want 1000", len(runs))
	}
	if runs[0].Read != 1004 || runs[999].Read != 5 {
		t.Errorf("kept runs %d..%d, want 1004..5", runs[0].Read, runs[999].Read)
	}
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	s, _ := boltstore.Open(dir, boltstore.Options{})
	tx, _ := s.Begin(context.Background())
	p := storetest.Prep(t, `{"_id":"a"}`)
	tx.Put("ds", &p, 1)
	tx.Commit()
	s.Close()
	ro, err := boltstore.Open(dir, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, ok, err := ro.Get(context.Background(), "ds", "a"); !ok || err != nil {
		t.Errorf("read-only Get = %v %v", ok, err)
	}
}

// TestLatestScanOfDatasetLoadedOnce: a latest-only scan of a long log
// where every _id has one version skips reading the log for superseded
// versions (none can be); once some are replaced or deleted, the scan
// reads it again and leaves the replaced versions out, from any offset.
func TestLatestScanOfDatasetLoadedOnce(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	write := func(from, to int, variant string) {
		t.Helper()
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			p, err := engine.Prepare(engine.Entity{"_id": fmt.Sprintf("e%05d", i), "v": variant, "_deleted": variant == "gone"})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := tx.Put("ds", &p, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	latest := func(from uint64) (n int, ids map[string]string) {
		t.Helper()
		var cache engine.ScanCache
		ids = map[string]string{}
		for {
			next, err := s.Scan(ctx, "ds", engine.ScanOptions{From: from, Limit: 700, LatestOnly: true, Cache: &cache}, func(r engine.Record) error {
				if _, dup := ids[r.ID]; dup {
					t.Fatalf("%s twice", r.ID)
				}
				ids[r.ID] = string(r.Body)
				n++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if next == from {
				return n, ids
			}
			from = next
		}
	}
	write(0, 5000, "a")
	if n, _ := latest(0); n != 5000 {
		t.Fatalf("loaded once: %d latest versions, want 5000", n)
	}
	if n, _ := latest(3000); n != 2000 {
		t.Fatalf("loaded once, from 3000: %d latest versions, want 2000", n)
	}
	write(100, 1300, "b")
	write(200, 210, "gone")
	n, ids := latest(0)
	if n != 5000 || !strings.Contains(ids["e00150"], `"b"`) || !strings.Contains(ids["e00205"], `"_deleted":true`) || !strings.Contains(ids["e04000"], `"a"`) {
		t.Fatalf("after changes: %d latest versions; e00150 %s, e00205 %s", n, ids["e00150"], ids["e00205"])
	}
	if n, _ := latest(4000); n != 2200 {
		t.Fatalf("after changes, from 4000: %d latest versions, want 1000 + 1190 + 10", n)
	}
}
