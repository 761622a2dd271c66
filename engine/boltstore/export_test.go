package boltstore

// SetRecentMin sets how many entries a dataset's "recent" index and a
// commit's updates reach before they become a run; a huge value keeps the
// whole index in one B+tree, as before the runs.
func SetRecentMin(s *Store, n int) { s.recentMin = n }

// PageWrites returns how many page writes bbolt's commits have made.
func PageWrites(s *Store) int64 {
	st := s.db.Stats().TxStats
	return st.GetWrite()
}

// SetRunShape sets how the index runs are shaped: level-0 runs that
// trigger a merge, level 1's size, a merged run's size and the entries a
// transaction merges at most.
func SetRunShape(s *Store, l0Runs, l1Entries, runEntries, budget int) {
	s.l0Runs, s.l1Entries, s.runEntries, s.compactBudget = l0Runs, l1Entries, runEntries, budget
}

// SetPreadRuns makes lookups in datasets not used yet read index runs'
// blocks with pread (blockdir.go), as a release does when a dataset's
// runs do not fit.
func SetPreadRuns(s *Store, on bool) { s.preadDefault = on }
