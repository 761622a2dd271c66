package boltstore_test

import (
	"context"
	"fmt"
	"math"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
)

// benchEntities prepares n entities with ids in random order (a hash of
// the index, as UUID-keyed systems produce) and ~250 bytes of content.
func benchEntities(b *testing.B, n, variant int) []engine.Prepared {
	out := make([]engine.Prepared, n)
	for i := range out {
		h := uint64(i)*0x9E3779B97F4A7C15 ^ 0xD1B54A32D192ED03
		h ^= h >> 31
		e := engine.Entity{
			"_id":  fmt.Sprintf("%016x", h),
			"name": fmt.Sprintf("Customer %d", i), "email": fmt.Sprintf("c%d@example.com", i),
			"address": map[string]any{"street": "Main Street", "city": "Springfield", "country": "NO"},
			"tags":    []any{"retail", "tier-1"}, "version": fmt.Sprint(variant),
		}
		p, err := engine.Prepare(e)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = p
	}
	return out
}

// openBench opens a store without fsync and without the bound on resident
// memory: the benchmarks hold their entities in memory, which would keep
// the process above the bound and make it release the mapping constantly.
func openBench(b *testing.B) *boltstore.Store {
	s, err := boltstore.Open(b.TempDir(), boltstore.Options{NoSync: true, MaxResident: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func writeAll(b *testing.B, s *boltstore.Store, ents []engine.Prepared, perTx int) {
	ctx := context.Background()
	for start := 0; start < len(ents); start += perTx {
		tx, err := s.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for i := start; i < min(start+perTx, len(ents)); i++ {
			if _, _, err := tx.Put("ds", &ents[i], 1); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut writes new versions with random ids, 10,000 per
// transaction, into a dataset that already holds 100,000 entities (no
// fsync: this measures the store's CPU cost; `ferry bench` measures with
// fsync).
func BenchmarkPut(b *testing.B) {
	s := openBench(b)
	writeAll(b, s, benchEntities(b, 100_000, 0), 10_000)
	ents := benchEntities(b, 100_000, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(ents) {
		writeAll(b, s, ents, 10_000)
		b.StopTimer()
		ents = benchEntities(b, 100_000, i+2)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entities/s")
}

// BenchmarkPutNewIDs loads 1,000,000 entities with new random ids into an
// empty dataset, 10,000 per transaction (no fsync), with the index in
// sorted runs (what the store does) and with everything kept in one
// B+tree ("recent" never becoming a run, as before the runs), to show
// what the runs buy on the store alone.
func BenchmarkPutNewIDs(b *testing.B) {
	const n = 1_000_000
	ents := benchEntities(b, n, 0)
	for _, layout := range []string{"runs", "btree"} {
		b.Run("index="+layout, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i += n {
				b.StopTimer()
				s := openBench(b)
				if layout == "btree" {
					boltstore.SetRecentMin(s, math.MaxInt)
				}
				b.StartTimer()
				w0 := boltstore.PageWrites(s)
				writeAll(b, s, ents, 10_000)
				b.ReportMetric(float64(boltstore.PageWrites(s)-w0)/float64(n/10_000), "pagewrites/tx")
			}
			b.ReportMetric(float64((b.N+n-1)/n*n)/b.Elapsed().Seconds(), "entities/s")
		})
	}
}

// BenchmarkIndexFlush loads 300,000 new random ids in transactions of
// several sizes: small ones go through "recent", larger ones straight to
// runs.
func BenchmarkIndexFlush(b *testing.B) {
	const n = 300_000
	ents := benchEntities(b, n, 0)
	for _, perTx := range []int{100, 1000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("tx=%d", perTx), func(b *testing.B) {
			var cpu time.Duration
			for i := 0; i < b.N; i += n {
				b.StopTimer()
				s := openBench(b)
				b.StartTimer()
				w0, c0 := boltstore.PageWrites(s), cpuTime()
				writeAll(b, s, ents, perTx)
				cpu += cpuTime() - c0
				b.ReportMetric(float64(boltstore.PageWrites(s)-w0)/float64(n/perTx), "pagewrites/tx")
			}
			b.ReportMetric(float64((b.N+n-1)/n*n)/b.Elapsed().Seconds(), "entities/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/entity")
		})
	}
}

// BenchmarkPutUnchanged offers versions identical to the stored ones: the
// write rule finds the hash equal and writes nothing.
func BenchmarkPutUnchanged(b *testing.B) {
	s := openBench(b)
	ents := benchEntities(b, 100_000, 0)
	writeAll(b, s, ents, 10_000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(ents) {
		writeAll(b, s, ents, 10_000)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entities/s")
}

// BenchmarkScanLatest reads a dataset's log, latest versions only.
func BenchmarkScanLatest(b *testing.B) {
	s := openBench(b)
	writeAll(b, s, benchEntities(b, 100_000, 0), 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for n < b.N {
		if _, err := s.Scan(ctx, "ds", engine.ScanOptions{LatestOnly: true}, func(engine.Record) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entities/s")
}

// cpuTime is the process's CPU time (user + system): unlike wall time it
// holds when other work shares the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkViewRaw looks up lazily handed-over text in a read view, as an
// unchanged re-sync's workers do (batches of 100, every entity found
// unchanged), in a dataset of 300,000 entities whose index is in runs.
func BenchmarkViewRaw(b *testing.B) {
	ctx := context.Background()
	s := openBench(b)
	ents := benchEntities(b, 300_000, 0)
	for i := range ents {
		ents[i].RawHash = engine.RawTextHash(ents[i].Body)
	}
	writeAll(b, s, ents, 10_000)
	batches := make([][]engine.Prepared, 0, len(ents)/100)
	for start := 0; start < len(ents); start += 100 {
		batch := make([]engine.Prepared, 0, 100)
		for _, p := range ents[start:min(start+100, len(ents))] {
			batch = append(batch, engine.Prepared{ID: p.ID, Lazy: true, Raw: p.Body, RawHash: p.RawHash})
		}
		batches = append(batches, batch)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i += 100 {
		batch := batches[n%len(batches)]
		n++
		for j := range batch {
			batch[j].SameIn = engine.ViewMark{}
		}
		if _, err := s.ViewRaw(ctx, "ds", batch); err != nil {
			b.Fatal(err)
		}
		if batch[0].SameIn == (engine.ViewMark{}) {
			b.Fatalf("%s not found unchanged", batch[0].ID)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entities/s")
}
