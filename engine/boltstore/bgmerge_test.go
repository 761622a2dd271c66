package boltstore

import (
	"context"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestMergeBesideWriterDropsStaleStep: a merge step computed beside the
// writer for a dataset that was deleted and made again meanwhile names
// runs the new dataset does not have; the writer drops it instead of
// installing runs of the old dataset into the new one.
func TestMergeBesideWriterDropsStaleStep(t *testing.T) {
	ctx := context.Background()
	s := openRunsStore(t)
	s.l0Runs, s.l1Entries, s.runEntries = 3, 1000, 100
	commitIDs(t, s, idRange(0, 50)...)
	commitIDs(t, s, idRange(50, 100)...) // two level-0 runs, no merge yet
	s.l0Runs = 2
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tx.(*writeTx).dataset("ds", false)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := st.planMerge(s.compactBudget)
	if err != nil || plan == nil {
		t.Fatalf("no step to plan: %v", err)
	}
	tx.Rollback()
	// Compute the step while a writer holds the lock, so that it is not
	// installed at once; set it aside, replace the dataset under it, and
	// hand it back as a finished step waiting for the writer.
	s.writer <- struct{}{}
	s.startMerge("ds", plan)
	s.bgMu.Lock()
	m := s.bg["ds"]
	s.bgMu.Unlock()
	<-m.done
	s.bgMu.Lock()
	delete(s.bg, "ds") // its goroutine stops waiting for the writer
	s.bgMu.Unlock()
	s.bgWG.Wait()
	<-s.writer
	if m.err != nil || m.gone || len(m.held) == 0 {
		t.Fatalf("the step computed nothing: %+v", m)
	}
	if err := s.DeleteDataset(ctx, "ds"); err != nil {
		t.Fatal(err)
	}
	s.bgMu.Lock()
	s.bg["ds"] = m
	s.bgMu.Unlock()
	commitIDs(t, s, idRange(200, 250)...) // takes the stale step
	commitIDs(t, s, idRange(250, 300)...)
	s.writer <- struct{}{} // steps are installed under the writer lock
	dropped, installed := s.bgDropped, s.bgInstalled
	<-s.writer
	if dropped == 0 {
		t.Errorf("the stale step was not dropped (%d installed)", installed)
	}
	for _, id := range idRange(0, 100) {
		if _, ok, err := s.Get(ctx, "ds", id); err != nil || ok {
			t.Fatalf("%s of the deleted dataset: found %v, %v", id, ok, err)
		}
	}
	for _, id := range idRange(200, 300) {
		if _, ok, err := s.Get(ctx, "ds", id); err != nil || !ok {
			t.Fatalf("%s: found %v, %v", id, ok, err)
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCloseSettlesMergeOfLevel0: closing a store whose merge of level 0 is
// half done finishes it (beside the writer, in transactions of its own),
// so the next open does not start with level 0 at its fullest; every
// entity is still found.
func TestCloseSettlesMergeOfLevel0(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() *Store {
		s, err := Open(dir, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		s.recentMin, s.l0Runs, s.l1Entries, s.runEntries, s.compactBudget = 1, 4, 1000, 20, 20
		return s
	}
	s := open()
	halfDone := false
	for i := 0; i < 40 && !halfDone; i++ {
		commitIDs(t, s, idRange(50*i, 50*i+50)...)
		s.writer <- struct{}{} // no step installs while we look
		s.db.View(func(tx *bolt.Tx) error {
			halfDone = tx.Bucket(bucketDatasets).Bucket([]byte("ds")).Get(keyL0Merge) != nil
			return nil
		})
		<-s.writer
	}
	if !halfDone {
		t.Fatal("no commit left a merge of level 0 half done")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketDatasets).Bucket([]byte("ds")).Get(keyL0Merge) != nil {
			t.Error("the merge of level 0 is still half done after closing")
		}
		return nil
	})
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	info, _, err := s.Dataset(ctx, "ds")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range idRange(0, int(info.Entities)) {
		if _, ok, err := s.Get(ctx, "ds", id); err != nil || !ok {
			t.Fatalf("%s: found %v, %v", id, ok, err)
		}
	}
}

// TestIdleStepInstalled: a merge step that finishes while nothing writes
// is installed by itself (as in a server between runs), not held in
// memory until the dataset's next write.
func TestIdleStepInstalled(t *testing.T) {
	s := openRunsStore(t)
	s.l0Runs, s.l1Entries, s.runEntries = 2, 1000, 100
	commitIDs(t, s, idRange(0, 50)...)
	commitIDs(t, s, idRange(50, 100)...) // two level-0 runs: a step starts
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.writer <- struct{}{}
		installed := s.bgInstalled
		var l0 int
		s.db.View(func(tx *bolt.Tx) error {
			levels, _, err := s.runsOf(tx.Bucket(bucketDatasets).Bucket([]byte("ds")))
			if err == nil && len(levels) > 0 {
				l0 = len(levels[0])
			}
			return err
		})
		<-s.writer
		if installed > 0 && l0 == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no step installed while idle (%d installed, %d runs in level 0)", installed, l0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}
