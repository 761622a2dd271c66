//go:build !linux

package boltstore

import (
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped is a no-op where MADV_DONTNEED semantics are not assured.
func (s *Store) releaseMapped() {}

// watchMapped does nothing where residency cannot be measured.
func (s *Store) watchMapped(limit int64, interval time.Duration) { <-s.closing }

// boundMapped does nothing where residency cannot be measured.
func (s *Store) boundMapped(tx *bolt.Tx) {}

// boundAhead does nothing where residency cannot be measured.
func (s *Store) boundAhead(tx *bolt.Tx, room int64) {}

// openStatm returns nil: residency is not measured here.
func openStatm() *os.File { return nil }

// boundBeforeCommit does nothing where residency cannot be measured.
func (s *Store) boundBeforeCommit(tx *bolt.Tx) {}

// openSelfPidfd returns -1: process_madvise is Linux only.
func openSelfPidfd() int { return -1 }

func closePidfd(fd int) {}

// dropExecutable does nothing where MADV_DONTNEED semantics are not
// assured.
func (s *Store) dropExecutable() {}

// noHugePages does nothing where residency cannot be measured.
func (s *Store) noHugePages() {}

// noteOtherFiles does nothing where residency cannot be measured.
func (s *Store) noteOtherFiles() {}
