package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
)

// TestLogReader: reading a log's versions with pread gives what bbolt
// gives, for every version committed (small ones, and ones larger than a
// page, on overflow pages), in any order; versions written in the
// reading transaction and offsets past the log are reported missing.
func TestLogReader(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const ds, n = "people", 6000
	rng := rand.New(rand.NewPCG(5, 6))
	for txn := 0; txn < n/500; txn++ {
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 500 {
			size := 20 + rng.IntN(300)
			if rng.IntN(100) == 0 {
				size = 20_000 + rng.IntN(40_000) // past a 16 KiB page
			}
			e, err := engine.DecodeEntity(fmt.Appendf(nil, `{"_id":"e%d-%d","text":%q}`, txn, i, strings.Repeat("x", size)))
			if err != nil {
				t.Fatal(err)
			}
			p, err := engine.Prepare(e)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := tx.Put(ds, &p, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	wtx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer wtx.Rollback()
	w := wtx.(*writeTx)
	putModel(t, wtx, ds, "written-here", 1, false) // offset n, in this transaction only
	st, err := w.dataset(ds, false)
	if err != nil || st == nil {
		t.Fatal(err)
	}
	lr := s.newLogReader(w.tx, st.log)
	if lr == nil {
		t.Fatal("no log reader for a log of many pages")
	}
	check := func(off uint64) {
		t.Helper()
		got, ok := lr.get(off)
		want := st.log.Get(offsetKey(off))
		if off >= n {
			if ok {
				t.Fatalf("offset %d: read %d bytes, want it missing", off, len(got))
			}
			return
		}
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("offset %d: read %d bytes (ok %v), want bbolt's %d", off, len(got), ok, len(want))
		}
	}
	for off := uint64(0); off < n+2; off++ { // in order: the same leaf again
		check(off)
	}
	for range 3000 {
		check(uint64(rng.IntN(n + 5)))
	}
	if len(lr.branches) == 0 {
		t.Error("no branch page read: the test's log is a single leaf")
	}
}
