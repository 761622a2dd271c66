//go:build linux

package boltstore

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestPressure: Options.Pressure hears true once when a release cannot
// keep a dataset's runs mapped (and once for a full release), nothing
// while the runs fit, and false once PressureQuiet has passed without
// either; a store without Pressure notes nothing and does not fail.
func TestPressure(t *testing.T) {
	var mu sync.Mutex
	var got []bool
	s, err := Open(t.TempDir(), Options{NoSync: true, MaxResident: 1 << 30, Pressure: func(near bool) {
		mu.Lock()
		got = append(got, near)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	calls := func() []bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	setQuiet := func(d time.Duration) { // the watcher reads it meanwhile
		s.pressureMu.Lock()
		s.pressureQuiet = d
		s.pressureMu.Unlock()
	}
	s.recentMin = 64
	s.background = false
	setQuiet(time.Hour) // nothing is quiet for long enough until below
	putTxns(t, s, "big", 10, 280, func(txn, i int) string { return fmt.Sprintf("%016x", uint64(txn*1000+i)*0x9e3779b97f4a7c15) })
	pageSize := s.db.Info().PageSize
	s.db.View(func(tx *bolt.Tx) error {
		s.hot.mark("big")
		s.keepRuns(tx, pageSize, 1<<30)
		if c := calls(); len(c) != 0 {
			t.Fatalf("runs that fit: told %v", c)
		}
		s.hot.mark("big")
		s.keepRuns(tx, pageSize, int64(pageSize))
		s.hot.mark("big")
		s.keepRuns(tx, pageSize, int64(pageSize))
		return nil
	})
	if c := calls(); !slices.Equal(c, []bool{true}) {
		t.Fatalf("runs that do not fit, twice: told %v, want [true]", c)
	}
	s.notePressure(false) // the watcher's check, too soon
	if c := calls(); len(c) != 1 {
		t.Fatalf("before PressureQuiet: told %v", c)
	}
	setQuiet(20 * time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for len(calls()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the watcher checks every 10 ms
	}
	if c := calls(); !slices.Equal(c, []bool{true, false}) {
		t.Fatalf("after PressureQuiet: told %v, want [true false]", c)
	}
	s.notePressure(true) // a full release
	s.notePressure(true)
	if c := calls(); !slices.Equal(c, []bool{true, false, true}) {
		t.Fatalf("after full releases: told %v, want [true false true]", c)
	}

	quiet, err := Open(t.TempDir(), Options{NoSync: true, MaxResident: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	quiet.notePressure(true)
	quiet.notePressure(false)
}
