package sinks

import (
	"fmt"
	"testing"

	"github.com/ferrydata/ferry/engine"
)

// TestFreshIDs: every id added is reported seen when added again, before
// and after the move to the large filter, and ids never added are rarely
// reported seen.
func TestFreshIDs(t *testing.T) {
	for _, n := range []int{1, 300, freshSmallIDs, freshSmallIDs + 1, 200_000} {
		f := newFreshIDs()
		falsePos := 0
		for i := range n {
			if f.add(hashID(fmt.Sprint("id-", i))) {
				falsePos++
			}
		}
		if (f.big != nil) != (n > freshSmallIDs) {
			t.Errorf("n=%d: large filter %v", n, f.big != nil)
		}
		for i := range n {
			if !f.add(hashID(fmt.Sprint("id-", i))) {
				t.Fatalf("n=%d: id-%d added before, reported new", n, i)
			}
		}
		if falsePos > n/100 {
			t.Errorf("n=%d: %d new ids reported seen", n, falsePos)
		}
	}
}

// TestFreshHashBatch: hashBatch gives each entity's hashID, in order,
// whichever filter is in use, and changes nothing: a filter fed through
// it answers every add as one fed id by id does.
func TestFreshHashBatch(t *testing.T) {
	for _, n := range []int{0, 1, 100, freshSmallIDs + 100} {
		f, twin := newFreshIDs(), newFreshIDs()
		batch := make([]engine.Prepared, 0, 100)
		var hs []idHash
		for i := range n {
			batch = append(batch, engine.Prepared{ID: fmt.Sprint("id-", i%(n/2+1))}) // each id twice
			if len(batch) < cap(batch) && i < n-1 {
				continue
			}
			hs = f.hashBatch(hs, batch)
			if len(hs) != len(batch) {
				t.Fatalf("n=%d: %d hashes for %d entities", n, len(hs), len(batch))
			}
			for k := range batch {
				h := hashID(batch[k].ID)
				if hs[k] != h {
					t.Fatalf("n=%d: hash %d is not %s's", n, k, batch[k].ID)
				}
				if got, want := f.add(hs[k]), twin.add(h); got != want {
					t.Fatalf("n=%d: %s: seen %v, id by id %v", n, batch[k].ID, got, want)
				}
			}
			batch = batch[:0]
		}
	}
}

// BenchmarkFreshIDs: the fresh-dataset filter of a 1M load, past its
// move to the 2 MiB filter, adding batches of 100 _ids: each hashed and
// added in turn ("add"), or the batch's blocks touched first in one loop
// (hashBatch, as datasetRun.Write does). Between batches the benchmark
// writes 128 KiB of a 64 MiB ring, as a committer writes versions
// between them (~310 bytes each plus bbolt's copies), which moves the
// filter out of the nearer caches: without it, the filter stays cached
// and the touches are pure cost.
func BenchmarkFreshIDs(b *testing.B) {
	const n = 1 << 20
	ids := make([]engine.Prepared, n)
	for i := range ids {
		ids[i].ID = fmt.Sprintf("%016x", uint64(i)*0x9E3779B97F4A7C15)
	}
	ring := make([]byte, 64<<20)
	for _, cold := range []bool{false, true} {
		for _, mode := range []string{"add", "batch"} {
			name := mode
			if cold {
				name += "/cold"
			}
			b.Run(name, func(b *testing.B) {
				f := newFreshIDs()
				for i := range freshSmallIDs + 1 {
					f.add(hashID(fmt.Sprint("warm-", i)))
				}
				var hs []idHash
				at := 0
				b.ResetTimer()
				for i := 0; i < b.N; i += 100 {
					if cold {
						b.StopTimer()
						clear(ring[at : at+128<<10])
						at = (at + 128<<10) % len(ring)
						b.StartTimer()
					}
					start := i % n
					batch := ids[start:min(start+100, n)]
					if mode == "batch" {
						hs = f.hashBatch(hs, batch)
						for k := range hs {
							f.add(hs[k])
						}
						continue
					}
					for k := range batch {
						f.add(hashID(batch[k].ID))
					}
				}
			})
		}
	}
}
