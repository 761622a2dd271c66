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
// resident file pages exceed the store's limit. Hot loops call it every
// few dozen operations: random index access maps whole neighbourhoods
// of the file, faster than a background watcher can notice.
func (s *Store) boundMapped(tx *bolt.Tx) {
	if s.mappedLimit <= 0 {
		return
	}
	var buf [128]byte
	if s.mappedResident(buf[:]) > s.mappedLimit {
		s.releaseIn(tx)
	}
}

// mappedResident returns the process's resident file-backed pages in
// bytes (the "shared" field of /proc/self/statm), or -1 if unknown. statm
// is kept open and read with pread: one cheap syscall per check.
func (s *Store) mappedResident(buf []byte) int64 {
	if s.statm == nil {
		return -1
	}
	n, _ := s.statm.ReadAt(buf, 0)
	fields := bytes.Fields(buf[:n])
	if len(fields) < 3 {
		return -1
	}
	pages, err := strconv.ParseInt(string(fields[2]), 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize())
}

// openStatm opens /proc/self/statm for mappedResident.
func openStatm() *os.File {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return nil
	}
	return f
}

// watchMapped keeps the store file's resident mapped pages below limit:
// every interval it reads /proc/self/statm (a few microseconds) and
// releases the mapping when the process's resident file pages exceed the
// limit. Random lookups fault in whole neighbourhoods of the file (the
// kernel maps up to 16 cached pages around each fault), so counting
// traffic cannot bound residency; measuring it can.
func (s *Store) watchMapped(limit int64, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	buf := make([]byte, 128)
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			if r := s.mappedResident(buf); r > limit {
				s.releaseMapped()
			}
		}
	}
}
