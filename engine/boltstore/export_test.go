package boltstore

// SetRecentMin sets how many entries a dataset's "recent" index holds
// before commits move entries to "index"; a huge value keeps the whole
// index in one tree, as before the two-level index.
func SetRecentMin(s *Store, n int) { s.recentMin = n }
