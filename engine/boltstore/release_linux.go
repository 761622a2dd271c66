//go:build linux

package boltstore

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"

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
		s.releaseIn(tx)
		return nil
	})
}

// releaseIn releases the mapping from within an open transaction, which
// pins the current mapping (a read transaction blocks remapping; a write
// transaction only remaps on its own goroutine, inside Commit).
func (s *Store) releaseIn(tx *bolt.Tx) {
	info := s.db.Info()
	size := uintptr(tx.Size())
	if info == nil || info.Data == 0 || size == 0 {
		return
	}
	syscall.Syscall(syscall.SYS_MADVISE, info.Data, size, uintptr(syscall.MADV_DONTNEED))
}

// boundMapped releases the mapping from within tx when the process's
// resident memory exceeds the store's bound. Hot loops call it every few
// dozen operations: random index access maps whole neighbourhoods of the
// file, faster than a background watcher can notice.
func (s *Store) boundMapped(tx *bolt.Tx) {
	if s.residentLimit <= 0 {
		return
	}
	var buf [128]byte
	if s.overBound(buf[:]) {
		s.releaseIn(tx)
	}
}

// commitHeadroom is kept free below the bound before a commit: bbolt
// allocates a buffer for every dirty page while it commits, a spike no
// check can interrupt.
const commitHeadroom = 48 << 20

// boundBeforeCommit releases the mapping if the process is within
// commitHeadroom of its bound.
func (s *Store) boundBeforeCommit(tx *bolt.Tx) {
	if s.residentLimit <= 0 {
		return
	}
	var buf [128]byte
	total, shared := s.resident(buf[:])
	if total > s.residentLimit-commitHeadroom && shared > minReleasable {
		s.releaseIn(tx)
	}
}

// minReleasable is how much of the file must be resident before a release
// is worth it; it also keeps a process whose heap alone exceeds the bound
// from releasing on every check.
const minReleasable = 16 << 20

// overBound reports whether the process's resident memory is above the
// bound and enough of it is the mapped file to be worth releasing.
func (s *Store) overBound(buf []byte) bool {
	total, shared := s.resident(buf)
	return total > s.residentLimit && shared > minReleasable
}

// resident returns the process's resident memory and its file-backed part
// in bytes (fields "resident" and "shared" of /proc/self/statm), or -1s if
// unknown. statm is kept open and read with pread: one cheap syscall per
// check.
func (s *Store) resident(buf []byte) (total, shared int64) {
	if s.statm == nil {
		return -1, -1
	}
	n, _ := s.statm.ReadAt(buf, 0)
	fields := bytes.Fields(buf[:n])
	if len(fields) < 3 {
		return -1, -1
	}
	t, err1 := strconv.ParseInt(string(fields[1]), 10, 64)
	sh, err2 := strconv.ParseInt(string(fields[2]), 10, 64)
	if err1 != nil || err2 != nil {
		return -1, -1
	}
	page := int64(os.Getpagesize())
	return t * page, sh * page
}

// openStatm opens /proc/self/statm for resident.
func openStatm() *os.File {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return nil
	}
	return f
}

// watchMapped keeps the process's resident memory near the store's bound:
// every interval it reads /proc/self/statm (a few microseconds) and
// releases the file mapping when the bound is exceeded. Random lookups
// fault in whole neighbourhoods of the file (fault-around, large folios),
// so counting traffic cannot bound residency; measuring it can.
func (s *Store) watchMapped(limit int64, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	buf := make([]byte, 128)
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			if s.overBound(buf) {
				s.releaseMapped()
			}
		}
	}
}
