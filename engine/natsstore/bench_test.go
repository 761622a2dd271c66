package natsstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/natsstore"
	"github.com/ferrydata/ferry/engine/natsstore/natstest"
	"github.com/ferrydata/ferry/engine/storetest"
)

func benchStore(b *testing.B) *natsstore.Store {
	srv := natstest.Start(b, b.TempDir())
	return natstest.Store(b, srv.ClientURL(), natsstore.Options{Prefix: newPrefix()})
}

func prepN(b *testing.B, n, variant int) []engine.Prepared {
	out := make([]engine.Prepared, n)
	for i := range out {
		out[i] = storetest.Prep(b, fmt.Sprintf(`{"_id":"e%08d","name":"Customer %d","v":%d,"address":{"city":"Oslo"}}`, i, i, variant))
	}
	return out
}

// writeAll puts ps in transactions of 10,000 (as the engine's default
// group), prefetching per 100 as the dataset sink does.
func writeAll(b *testing.B, s *natsstore.Store, ds string, ps []engine.Prepared, knownNew bool) {
	ctx := context.Background()
	for start := 0; start < len(ps); start += 10000 {
		tx, err := s.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for j := start; j < min(start+10000, len(ps)); j += 100 {
			batch := ps[j:min(j+100, len(ps))]
			if !knownNew {
				ids := make([]string, len(batch))
				for k := range batch {
					ids[k] = batch[k].ID
				}
				if err := tx.(engine.Prefetcher).Prefetch(ds, ids); err != nil {
					b.Fatal(err)
				}
			}
			for k := range batch {
				batch[k].KnownNew = knownNew
				if _, _, err := tx.Put(ds, &batch[k], 1); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInitialLoad writes new entities (no lookups) in transactions
// of 10,000: the append and commit path.
func BenchmarkInitialLoad(b *testing.B) {
	s := benchStore(b)
	ps := prepN(b, 20000, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		writeAll(b, s, fmt.Sprintf("ds%d", i), ps, true)
	}
	b.ReportMetric(float64(b.N*len(ps))/b.Elapsed().Seconds(), "entities/s")
}

// BenchmarkUnchanged writes entities that are all unchanged: the lookup
// path (one multi-get per 100 ids), nothing appended.
func BenchmarkUnchanged(b *testing.B) {
	s := benchStore(b)
	ps := prepN(b, 20000, 0)
	writeAll(b, s, "ds", ps, true)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		writeAll(b, s, "ds", ps, false)
	}
	b.ReportMetric(float64(b.N*len(ps))/b.Elapsed().Seconds(), "entities/s")
}

// BenchmarkScanLatest reads a dataset's latest versions in pages of 100.
func BenchmarkScanLatest(b *testing.B) {
	s := benchStore(b)
	ps := prepN(b, 20000, 0)
	writeAll(b, s, "ds", ps, true)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var cache engine.ScanCache
		from, n := uint64(0), 0
		for {
			next, err := s.Scan(ctx, "ds", engine.ScanOptions{From: from, Limit: 100, LatestOnly: true, Cache: &cache}, func(engine.Record) error { n++; return nil })
			if err != nil {
				b.Fatal(err)
			}
			if next == from {
				break
			}
			from = next
		}
		if n != len(ps) {
			b.Fatalf("scanned %d", n)
		}
	}
	b.ReportMetric(float64(b.N*len(ps))/b.Elapsed().Seconds(), "entities/s")
}
