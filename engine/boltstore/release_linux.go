//go:build linux

package boltstore

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped drops the store file's pages from this process's page
// tables (MADV_DONTNEED on bbolt's read-only shared mapping). The data
// stays in the kernel's page cache and faults back in on the next access,
// so nothing is lost; what changes is that a process reading or writing a
// large dataset does not keep the whole file resident. It runs inside a
// read transaction, which stops bbolt from remapping meanwhile, so the
// address range is the live mapping.
func (s *Store) releaseMapped() {
	s.db.View(func(tx *bolt.Tx) error {
		info := s.db.Info()
		size := uintptr(tx.Size())
		if info == nil || info.Data == 0 || size == 0 {
			return nil
		}
		syscall.Syscall(syscall.SYS_MADVISE, info.Data, size, uintptr(syscall.MADV_DONTNEED))
		return nil
	})
}
