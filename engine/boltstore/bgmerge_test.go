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

// TestPlanMergeMostDue: the next merge step comes from the level
// furthest over its size, not from the uppermost one over it; a level
// left far over its size (level 2 at 9 times its size at 10M ids, with
// 90 runs in level 0) made every merge into it long and every lookup ask
// level 0's many runs.
func TestPlanMergeMostDue(t *testing.T) {
	run := func(id, count uint64, lo, hi string) *runFile {
		return &runFile{id: id, count: count, min: []byte(lo), max: []byte(hi)}
	}
	s := &Store{l0Runs: 4, l1Entries: 100}
	l0 := func(n int) []*runFile {
		var rs []*runFile
		for i := range n {
			rs = append(rs, run(uint64(900-i), 10, "a", "z"))
		}
		return rs
	}
	cases := []struct {
		name   string
		levels runLevels
		want   int // -1: no step; 0: level 0
	}{
		{"within sizes", runLevels{l0(3), {run(1, 100, "a", "z")}, {run(2, 800, "a", "z")}}, -1},
		{"level 0 due", runLevels{l0(4), {run(1, 100, "a", "z")}}, 0},
		{"level 1 over by more", runLevels{l0(5), {run(1, 140, "a", "m"), run(3, 140, "n", "z")}}, 1},
		{"level 2 over by most", runLevels{l0(8), {run(1, 150, "a", "z")}, {run(2, 2000, "a", "m"), run(4, 2000, "n", "z")}}, 2},
		{"level 0 over by most", runLevels{l0(20), {run(1, 150, "a", "z")}, {run(2, 2000, "a", "m"), run(4, 2000, "n", "z")}}, 0},
	}
	for _, c := range cases {
		st := &dsState{w: &writeTx{s: s}, levels: c.levels}
		p, err := st.planMerge(1000)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := -1
		if p != nil && p.l0 != nil {
			got = 0
		} else if p != nil {
			got = p.from
		}
		if got != c.want {
			t.Errorf("%s: merges level %d, want %d", c.name, got, c.want)
		}
	}

	// A merge of level 0 under way goes on even once level 0 is short.
	st := &dsState{w: &writeTx{s: s}, levels: runLevels{l0(2), {run(1, 50, "a", "z")}}}
	st.l0m = &l0Merge{runs: st.levels[0]}
	if p, err := st.planMerge(1000); err != nil || p == nil || p.l0 == nil {
		t.Errorf("a merge of level 0 under way was not continued: %+v, %v", p, err)
	}
}

// TestPlanMergeCheapestRun: a step of level 1 or below takes the run that
// rewrites the fewest entries of the level below per entry it moves, not
// the oldest: an old run written while the level below was small spans
// most of it.
func TestPlanMergeCheapestRun(t *testing.T) {
	run := func(id, count uint64, lo, hi string) *runFile {
		return &runFile{id: id, count: count, min: []byte(lo), max: []byte(hi)}
	}
	s := &Store{l0Runs: 4, l1Entries: 100}
	wide := run(1, 100, "a", "p")   // oldest, spans five runs below
	narrow := run(7, 100, "q", "r") // overlaps one small run
	mid := run(5, 100, "s", "z")    // overlaps one large run
	below := []*runFile{
		run(2, 100, "a", "c"), run(3, 100, "d", "f"), run(4, 100, "g", "i"), run(6, 100, "j", "l"), run(8, 100, "m", "p"),
		run(9, 10, "q", "r"), run(10, 200, "s", "z"),
	}
	st := &dsState{w: &writeTx{s: s}, levels: runLevels{nil, {wide, narrow, mid}, below}}
	p, err := st.planMerge(1000)
	if err != nil || p == nil || p.from != 1 {
		t.Fatalf("planned %+v, %v; want a step of level 1", p, err)
	}
	if got := p.step.upper[0][0]; got != narrow {
		t.Fatalf("merges run %d of level 1, want run %d (the cheapest)", got.id, narrow.id)
	}
	if len(p.step.below) != 1 || p.step.below[0].id != 9 {
		t.Fatalf("reads runs %v of level 2, want run 9", p.step.below)
	}
	// On a tie the oldest goes first.
	twin := run(11, 100, "0", "1")
	st.levels[1] = []*runFile{twin, wide, narrow, mid}
	st.levels[2] = append([]*runFile{run(12, 10, "0", "1")}, below...)
	if p, _ := st.planMerge(1000); p == nil || p.step.upper[0][0] != narrow {
		t.Fatalf("on a tie, merged %+v, want the older run %d", p, narrow.id)
	}
}
