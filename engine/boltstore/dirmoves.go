package boltstore

import (
	bolt "go.etcd.io/bbolt"
)

// Directories that outlive commits.
//
// A run's blocks never change, but bbolt moves them: a commit that writes
// or drops runs rewrites the leaves it touches (and the neighbours it
// merges them with) to new pages. Directories (blockdir.go) used to be
// rebuilt after every such commit, all of them: at 10M ids a run writing
// 1M versions spent 35 of its 117 CPU seconds rebuilding directories of
// runs that had not moved, one pread per leaf.
//
// Instead, each commit that wrote or dropped a dataset's runs checks,
// still holding the writer, which of the dataset's directories it may
// have invalidated, and marks only those runs (runFile.moved). It reads
// the runs' B+tree as the commit left it, branch pages only (one pread
// each: a few dozen at 1M ids), and notes every page the tree reaches. A
// directory stays good while every block it names is on a page the tree
// still reaches:
//
//   - bbolt never writes a page that a committed tree reaches; a leaf is
//     rewritten by writing its new copy to another page and freeing the
//     old one;
//   - a page freed by a commit is not reused by that same commit, so the
//     check of the commit that freed a block's page does not find it in
//     the tree, whatever a later commit reuses it for;
//   - only commits that write or drop runs change a dataset's runs
//     bucket, and each is checked before the writer is released, that is
//     before any other commit can reuse what it freed.
//
// So a page that the tree reached when a directory was built and that
// every check since found in the tree still holds what it held then.
// Blocks on pages the tree does not reach directly (the rest of a leaf
// that overflows its first page) count as moved: their runs are rebuilt
// as before. A check that cannot read the tree marks all of the dataset's
// runs. Until a commit's check is done (runsChecked), its readers treat
// every directory built before it as stale, as before.

// dirStale reports whether directory d of f may name blocks where they no
// longer are. runsChanged and runsChecked are loaded before moved: a
// check stores its marks before it stores runsChecked.
func (s *Store) dirStale(f *runFile, d *blockDir) bool {
	if changed := s.runsChanged.Load(); d.built < changed && s.runsChecked.Load() < changed {
		return true
	}
	return d.built < f.moved.Load()
}

// checkMoves marks the runs whose directories w's commit may have made
// stale. Called after the commit, under the writer.
func (w *writeTx) checkMoves(id uint64) {
	s := w.s
	if len(w.newRuns)+len(w.dropRuns) == 0 {
		return
	}
	var tx *bolt.Tx
	for _, st := range w.sets {
		if !st.runsTouched {
			continue
		}
		if tx == nil {
			var err error
			if tx, err = s.db.Begin(false); err != nil {
				tx = nil
			}
		}
		if tx == nil || !s.checkRunMoves(tx, st.name, id) {
			// Nothing could be read: every directory of the
			// dataset's runs is stale.
			for _, lv := range st.levels {
				for _, f := range lv {
					s.markMoved(f, id)
				}
			}
		}
	}
	if tx != nil {
		tx.Rollback()
	}
	s.runsChecked.Store(id)
}

// markMoved marks f, and the run cached under its id if that is another
// copy, as moved in commit id.
func (s *Store) markMoved(f *runFile, id uint64) {
	f.moved.Store(id)
	s.runMu.Lock()
	c := s.runCache[f.id]
	s.runMu.Unlock()
	if c != nil && c != f {
		c.moved.Store(id)
	}
}

// checkRunMoves marks the runs of dataset name, as tx sees them, whose
// blocks may have moved: those with a directory that names a block on a
// page the runs' tree no longer reaches, and those without a current
// directory (where their blocks were is not known; a directory that a
// reader built before this commit and stores after this check is then
// stale, as it must be). false if the runs could not be listed.
func (s *Store) checkRunMoves(tx *bolt.Tx, name string, id uint64) bool {
	b := tx.Bucket(bucketDatasets).Bucket([]byte(name))
	if b == nil {
		return true // dropped with its runs
	}
	levels, rb, err := s.runsOf(b)
	if err != nil {
		return false
	}
	current := func(f *runFile) *blockDir {
		if d := f.dir.Load(); d != nil && d.built >= f.moved.Load() {
			return d
		}
		return nil
	}
	info := s.db.Info()
	if info == nil {
		return false
	}
	pageSize := int64(info.PageSize)
	reached := false
	for _, lv := range levels {
		for _, f := range lv {
			d := current(f)
			if d == nil {
				s.markMoved(f, id)
				continue
			}
			if !reached {
				// Read the tree once, for the first run that has a
				// directory to check.
				if rb == nil || !s.reachedPages(tx, rb, info.PageSize) {
					return false
				}
				reached = true
			}
			for _, off := range d.off {
				p := uint64(off / pageSize)
				if p/64 >= uint64(len(s.moveBits)) || s.moveBits[p/64]&(1<<(p%64)) == 0 {
					s.markMoved(f, id)
					break
				}
			}
		}
	}
	return true
}

// reachedPages sets s.moveBits to the pages rb's B+tree reaches from its
// root through branch pages (walkTree): the branch pages and the first
// page of every leaf, of which it reads none but the leftmost.
func (s *Store) reachedPages(tx *bolt.Tx, rb *bolt.Bucket, pageSize int) bool {
	root := uint64(rb.Root())
	if s.pageFile == nil || root == 0 {
		return false
	}
	maxPage := uint64(tx.Size()) / uint64(pageSize)
	branches, leaves, ok := s.walkTree(root, maxPage, pageSize, make([]byte, pageSize))
	if !ok {
		return false
	}
	words := int((maxPage + 63) / 64)
	if cap(s.moveBits) < words {
		s.moveBits = make([]uint64, words)
	}
	s.moveBits = s.moveBits[:words]
	clear(s.moveBits)
	for _, ps := range [][]uint64{branches, leaves} {
		for _, p := range ps {
			s.moveBits[p/64] |= 1 << (p % 64)
		}
	}
	return true
}
