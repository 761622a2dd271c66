//go:build !linux

package boltstore

// releaseMapped is a no-op where MADV_DONTNEED semantics are not assured.
func (s *Store) releaseMapped() {}
