package boltstore

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Merges beside the writer.
//
// bbolt has one writer, and the writer was the bound of a load: computing
// the merges of the index runs took a fifth of its time while the second
// core waited. So a write transaction that flushes a run only plans the
// next merge step (planMerge); once it commits, a goroutine computes that
// step in a read transaction (the runs it reads are committed and never
// change) and holds the new runs' blocks in memory. A later write
// transaction of the same dataset installs them: it numbers the runs,
// puts their blocks, drops the step's inputs (applyMerge) and plans the
// next step. When the writer is free, the goroutine installs the step in
// a transaction of its own (installIdle), so merges go on while nothing
// writes; closing the store installs what finished and completes a merge
// of level 0 left half done (stopMerges). Nothing of a step is in the file
// before the transaction that installs it commits, so a crash loses at
// most work, never index entries; a transaction that took a step and
// rolled back loses the step, and the next flush plans it again.
//
// One step per dataset is under way at a time. A step is installed only
// if its inputs are still what the plan saw (planHolds): only the writer
// changes the levels, and while a step is under way it merges nothing
// itself unless the levels fall far behind (dsState.behind), in which
// case it first waits for that step. A step that no longer holds (its
// dataset was deleted and made again) is dropped.

// heldRun is a run written beside the writer: its description (id 0
// until installed) and its blocks, whose keys have room for the id.
type heldRun struct {
	f      *runFile
	keys   [][]byte
	blocks [][]byte
}

// bgMerge is a merge step under way beside the writer.
type bgMerge struct {
	plan *mergePlan
	done chan struct{} // closed when res, held and err are set
	res  mergeResult
	held []heldRun
	gone bool // the dataset was no longer there
	err  error
}

// startMerge computes plan for dataset name beside the writer. Called
// after the transaction that planned it committed.
func (s *Store) startMerge(name string, plan *mergePlan) {
	m := &bgMerge{plan: plan, done: make(chan struct{})}
	s.bgMu.Lock()
	if s.bgClosed || s.bgSettling && s.bgSettleLeft <= 0 {
		s.bgMu.Unlock()
		return
	}
	if s.bgSettling {
		s.bgSettleLeft--
	}
	if s.bg == nil {
		s.bg = map[string]*bgMerge{}
	}
	s.bg[name] = m
	s.bgWG.Add(1)
	s.bgMu.Unlock()
	go func() {
		defer s.bgWG.Done()
		m.err = s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketDatasets).Bucket([]byte(name))
			var rb *bolt.Bucket
			if b != nil {
				rb = b.Bucket(bucketIxRuns)
			}
			if rb == nil {
				m.gone = true
				return nil
			}
			rw := &runWriter{maxEntries: uint64(s.runEntries)}
			// Beside the writer too, reading the runs maps them: keep
			// the process within its bound as the writer does. (A
			// release from here sees this transaction's snapshot: the
			// pages of commits since are not dropped and what it keeps
			// is chosen from older trees, until the next release of the
			// writer or the watcher. The bound is what matters here: a
			// merge took a 1M jq run from 129 to 156 MiB in 25 ms.)
			r, err := mergeRuns(rb, plan.step, rw, func() { s.boundAhead(tx, mergeRoom) })
			m.res, m.held = r, rw.held
			return err
		})
		close(m.done)
		// While the writer is busy, its next flush of the dataset takes
		// the step; a dataset nothing writes to gets it installed once
		// the writer is free.
		for !s.installIdle(name, m) {
			select {
			case <-time.After(idleRetry):
			case <-s.closing:
				return // stopMerges installs it
			}
		}
	}()
}

// idleRetry is how often a finished step waits for the writer to be free.
const idleRetry = 50 * time.Millisecond

// installIdle installs dataset name's finished step m in a transaction
// of its own if the writer is free, and starts the next step if the
// levels are still over their sizes: merges go on while nothing writes.
// It reports false if the writer was busy and m still waits; m nil:
// wait for the writer, and install whatever step of name has finished.
func (s *Store) installIdle(name string, m *bgMerge) bool {
	if m == nil {
		s.writer <- struct{}{}
	} else {
		select {
		case s.writer <- struct{}{}:
		default:
			s.bgMu.Lock()
			waiting := s.bg[name] == m
			s.bgMu.Unlock()
			return !waiting
		}
	}
	m, _ = s.takeMerge(name, false)
	if m == nil {
		<-s.writer
		return true
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		<-s.writer
		return true
	}
	w := &writeTx{s: s, tx: tx, sets: map[string]*dsState{}}
	err = w.upgrade()
	var st *dsState
	if err == nil {
		st, err = w.dataset(name, false)
	}
	if err == nil && st != nil {
		if _, err = st.installMerge(m); err == nil && (st.l0m != nil || !s.settling()) {
			st.bgPlan, err = st.planMerge(max(s.compactBudget, s.runEntries))
		}
	}
	if err != nil || st == nil {
		// The step is lost, not the index: the next write plans it again
		// and meets (and reports) whatever failed here.
		w.Rollback()
		return true
	}
	w.Commit() // an error leaves the index as it was, as above
	return true
}

// takeMerge returns dataset name's merge step under way once it has
// finished, waiting for it if wait is set; running reports a step still
// under way (not waited for).
func (s *Store) takeMerge(name string, wait bool) (m *bgMerge, running bool) {
	s.bgMu.Lock()
	m = s.bg[name]
	s.bgMu.Unlock()
	if m == nil {
		return nil, false
	}
	select {
	case <-m.done:
	default:
		if !wait {
			return nil, true
		}
		<-m.done
	}
	s.bgMu.Lock()
	if s.bg[name] == m {
		delete(s.bg, name)
	}
	s.bgMu.Unlock()
	return m, false
}

// settleSteps is how many more merge steps a store being closed runs
// (each installed as the one before it) while a merge of level 0 is half
// done: enough to finish one a load left, so that the next open does not
// start with level 0 at its fullest.
const settleSteps = 8

// settling reports whether the store is being closed.
func (s *Store) settling() bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	return s.bgSettling
}

// stopMerges lets the steps under way finish and installs them, with up
// to settleSteps more after them to finish a merge of level 0, and then
// starts no more.
func (s *Store) stopMerges() {
	s.bgMu.Lock()
	s.bgSettling, s.bgSettleLeft = true, settleSteps
	s.bgMu.Unlock()
	for {
		s.bgWG.Wait()
		s.bgMu.Lock()
		names := slices.Collect(maps.Keys(s.bg)) // all finished: none runs
		s.bgMu.Unlock()
		if len(names) == 0 {
			break
		}
		for _, name := range names {
			s.installIdle(name, nil) // takes it, and may start one more
		}
	}
	s.bgMu.Lock()
	s.bgClosed = true
	s.bgMu.Unlock()
}

// installMerge installs a finished step if it still holds, and returns
// the entries it read (0 if it was dropped).
func (st *dsState) installMerge(m *bgMerge) (int, error) {
	if m.gone || !st.planHolds(m.plan) {
		// Whatever it met (an error too) was about runs that are gone.
		st.w.s.bgDropped++
		return 0, nil
	}
	if m.err != nil {
		return 0, fmt.Errorf("merging index runs beside the writer: %w", m.err)
	}
	st.w.s.bgInstalled++
	rb, err := st.runsBucket()
	if err != nil {
		return 0, err
	}
	seq := st.w.tx.Bucket(bucketStore)
	r := m.res
	r.out = nil
	for _, h := range m.held {
		id, err := seq.NextSequence()
		if err != nil {
			return 0, fmt.Errorf("numbering an index run: %w", err)
		}
		f := &runFile{id: id, count: h.f.count, min: h.f.min, max: h.f.max, bloom: h.f.bloom}
		for i, k := range h.keys {
			binary.BigEndian.PutUint64(k[1:9], id)
			if err := rb.Put(k, h.blocks[i]); err != nil {
				return 0, fmt.Errorf("writing an index run: %w", err)
			}
		}
		if err := rb.Put(runMetaKey(id), encodeRunMeta(f)); err != nil {
			return 0, fmt.Errorf("writing an index run: %w", err)
		}
		st.w.newRuns = append(st.w.newRuns, f)
		st.runsTouched = true
		r.out = append(r.out, f)
	}
	if err := st.applyMerge(m.plan, r); err != nil {
		return 0, err
	}
	return r.n, nil
}

// planHolds reports whether plan's inputs are still where it found them:
// the runs it reads in their levels, the merge of level 0 it continues at
// the same key, and the runs of the level below that it replaces the same.
func (st *dsState) planHolds(p *mergePlan) bool {
	sameRuns := func(a, b []*runFile) bool {
		return slices.EqualFunc(a, b, func(x, y *runFile) bool { return x.id == y.id })
	}
	if p.l0 == nil {
		pick := p.step.upper[0][0]
		if !slices.ContainsFunc(st.levelAt(p.from), func(f *runFile) bool { return f.id == pick.id }) {
			return false
		}
		return sameRuns(st.overlapping(p.from+1, pick), p.step.below)
	}
	if m := st.l0m; m != nil {
		if !sameRuns(m.runs, p.l0.runs) || (m.done == nil) != (p.l0.done == nil) || string(m.done) != string(p.l0.done) {
			return false
		}
	} else {
		l0 := st.levelAt(0)
		if p.l0.done != nil || len(l0) < len(p.l0.runs) || !sameRuns(l0[len(l0)-len(p.l0.runs):], p.l0.runs) {
			return false
		}
	}
	below, err := st.l1After(p.l0.done)
	return err == nil && sameRuns(below, p.step.below)
}
