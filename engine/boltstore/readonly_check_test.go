//go:build linux

package boltstore

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestReadOnlyCheckBesideReleases: Check on a read-only store while its
// watcher releases the mapping every 10 ms (a bound far below what the
// process holds), as `ferry bench` checks its store at the end. bbolt
// loads a read-only file's freelist lazily, in the checker's goroutine,
// while the watcher's releases begin read transactions that read it: a
// data race that `go test -race` reported here every time until the store
// loaded the freelist as it opens. Without -race the test checks only
// that Check passes beside the releases.
func TestReadOnlyCheckBesideReleases(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	putTxns(t, s, "ds", 60, 2000, func(txn, i int) string { return fmt.Sprintf("%016x", uint64(txn*2000+i)*0x9e3779b97f4a7c15) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(dir, Options{ReadOnly: true, MaxResident: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	time.Sleep(15 * time.Millisecond) // a release or two first
	if err := ro.Check(context.Background()); err != nil {
		t.Error(err)
	}
	if _, full, _ := ro.ReleaseStats(); full == 0 {
		t.Error("no release beside the check")
	}
}
