package boltstore

// SetRecentMin sets how many entries a dataset's "recent" index holds
// before commits move entries to "index"; a huge value keeps the whole
// index in one tree, as before the two-level index.
func SetRecentMin(s *Store, n int) { s.recentMin = n }

// PageWrites returns how many page writes bbolt's commits have made.
func PageWrites(s *Store) int64 {
	st := s.db.Stats().TxStats
	return st.GetWrite()
}

// SetRecentMode forces how commits apply index updates to "recent":
// "inplace", "rebuild" or "" (decide by size).
func SetRecentMode(s *Store, mode string) {
	s.recentMode = map[string]int{"": recentModeAuto, "inplace": recentModeInPlace, "rebuild": recentModeRebuild}[mode]
}
