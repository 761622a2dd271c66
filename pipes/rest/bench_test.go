package rest_test

import (
	"context"
	"testing"

	"github.com/ferrydata/ferry/pipes/rest/collectbench"
	"github.com/ferrydata/ferry/pipes/rest/sharebench"
)

// BenchmarkCollect100k collects 100,000 customers (~400 bytes each) from
// fakeapi over HTTP in pages of 1,000 into a dataset sink on a fresh bbolt
// file with fsync on: request, JSON decoding, id_expression rendering,
// hashing and the store, end to end (package collectbench; `ferry bench`
// runs the same). It reports the collect's CPU time per entity and, apart,
// the fake API's own (a plain client fetching the same pages). Seeding is
// not timed.
func BenchmarkCollect100k(b *testing.B) {
	const n = 100_000
	var secs, cpu, apiCPU float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		res, err := collectbench.Run(context.Background(), b.TempDir(), n, true)
		if err != nil {
			b.Fatal(err)
		}
		secs += res.Seconds
		cpu += res.CPUSeconds
		apiCPU += res.APICPUSeconds
	}
	total := float64(n) * float64(b.N)
	b.ReportMetric(total/secs, "entities/s")
	b.ReportMetric(cpu/total*1e9, "cpu-ns/entity")
	b.ReportMetric(apiCPU/total*1e9, "api-cpu-ns/entity")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRecollect100k collects the 100,000 customers of
// BenchmarkCollect100k again, all unchanged (the first collect is not
// timed): pages as text, a hash and a lookup per customer. The fake API
// runs in the same process, so cpu-ns/entity includes its share.
func BenchmarkRecollect100k(b *testing.B) {
	const n = 100_000
	var secs, cpu float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		res, err := collectbench.Recollect(context.Background(), b.TempDir(), n, true)
		if err != nil {
			b.Fatal(err)
		}
		secs += res.Seconds
		cpu += res.CPUSeconds
	}
	total := float64(n) * float64(b.N)
	b.ReportMetric(total/secs, "entities/s")
	b.ReportMetric(cpu/total*1e9, "cpu-ns/entity")
	b.ReportMetric(0, "ns/op")
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
