package rest_test

import (
	"context"
	"testing"

	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
	"github.com/ferrydata/ferry/pipes/rest/sharebench"
)

// BenchmarkCollect100k collects 100,000 customers (~400 bytes each) from
// fakeapi over HTTP in pages of 1,000 into a dataset sink on a fresh bbolt
// file with fsync on: request, JSON decoding, id_expression rendering,
// hashing and the store, end to end.
func BenchmarkCollect100k(b *testing.B) {
	const n = 100_000
	cfg := collectConfig("", `"params": {"limit": 1000}, "next_page_link": "{{ body.nextPageUrl }}"`, "")
	e := newEnv(b, fakeapi.Options{Seed: map[string]int{"customers": n}, LogLimit: -1}, cfg, envOptions{sync: true})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 {
			b.StopTimer()
			e.compile(cfg, envOptions{sync: true}) // a fresh store: an initial load each time
			b.StartTimer()
		}
		rec := e.mustRun("c")
		if rec.Written != n {
			b.Fatalf("run = %+v", rec)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entities/s")
}

// BenchmarkShare10k shares 10,000 changed customers to fakeapi over HTTP
// with fsync on: per entity a lookup (GET) and an update (PUT), under the
// write-back protocol, with the system's worker_threads (8) as
// concurrency (package sharebench; `ferry bench` runs the same). Setup
// (seeding, collect, desired state) is not timed.
func BenchmarkShare10k(b *testing.B) {
	var updated int64
	var secs float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		res, err := sharebench.Run(context.Background(), b.TempDir(), 10_000, true)
		if err != nil {
			b.Fatal(err)
		}
		updated += res.Updated
		secs += res.Seconds
	}
	b.ReportMetric(float64(updated)/secs, "updates/s")
	b.ReportMetric(0, "ns/op")
}
