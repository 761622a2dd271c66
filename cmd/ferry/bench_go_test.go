package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"testing"
)

// benchGoScenarios are the ferry bench scenarios BenchmarkScenarios runs,
// each with the store it starts from: none (a first load), the store a
// load left ("loaded") or the one changed10 left after it ("changed"). The
// floors use files of their own.
var benchGoScenarios = []struct{ name, from string }{
	{"floor", ""}, {"floor-unchanged", ""}, {"floor-changed10", ""}, {"floor-jq", ""}, {"floor-deleted10", ""},
	{"initial", "empty"}, {"unchanged", "loaded"}, {"changed10", "loaded"},
	{"jq", "loaded"}, {"dtl", "loaded"}, {"dtl-jq", "loaded"}, {"deleted10", "changed"},
}

// BenchmarkScenarios runs the pipe scenarios of `ferry bench` (and their
// floors) as Go benchmarks, in the test process, on the same generated
// entities and the same code: runScenario, which the bench command's
// child processes run. Each iteration starts from a copy of the store the
// scenario expects (made before the clock), so iterations measure the same
// work. Besides ns/op (a whole scenario, opening the store included) each
// reports entities/s and cpu-µs/entity as `ferry bench` measures them:
// the run alone, from its start to the store closed.
//
// The targets are set at 1,000,000 entities; the default here is
// 100,000 so that a run of every scenario takes a minute or two.
// FERRY_BENCH_N sets another:
//
//	go test -run x -bench Scenarios ./cmd/ferry
//	FERRY_BENCH_N=1000000 go test -run x -bench 'Scenarios/^(initial|unchanged)$' -benchtime 3x ./cmd/ferry
//
// The process runs with Ferry's own garbage collector settings (main.go)
// and the store's default 150 MiB resident bound, as `ferry bench` does;
// peak memory is `ferry bench`'s to report (each scenario in a process of
// its own), not this benchmark's.
func BenchmarkScenarios(b *testing.B) {
	n := 100_000
	if v := os.Getenv("FERRY_BENCH_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			b.Fatalf("FERRY_BENCH_N=%q: want a number of entities, at least 1000", v)
		}
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(defaultMemoryLimit))
	defer debug.SetGCPercent(debug.SetGCPercent(defaultGCPercent))
	ctx := context.Background()
	const ckpt = 100 // ferry bench's default checkpoint interval
	dir := b.TempDir()
	if err := genBenchFiles(dir, n, "hash", true); err != nil {
		b.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	// The stores the scenarios start from, made once. run fails the
	// benchmark it is given: a sub-benchmark's, in its own goroutine.
	run := func(b *testing.B, sc string) *benchResult {
		b.Helper()
		res, err := runScenario(ctx, sc, dir, n, false, ckpt, 0, "")
		if err != nil {
			b.Fatalf("%s: %v", sc, err)
		}
		return res
	}
	run(b, "initial")
	copyStore(b, store, filepath.Join(dir, "loaded"))
	run(b, "changed10")
	copyStore(b, store, filepath.Join(dir, "changed"))

	for _, sc := range benchGoScenarios {
		b.Run(sc.name, func(b *testing.B) {
			var entities int
			var seconds, cpu float64
			for range b.N {
				b.StopTimer()
				switch sc.from {
				case "empty":
					if err := os.RemoveAll(store); err != nil {
						b.Fatal(err)
					}
				case "loaded", "changed":
					copyStore(b, filepath.Join(dir, sc.from), store)
				}
				b.StartTimer()
				res := run(b, sc.name)
				if res.Entities != n {
					b.Fatalf("%s: %d entities, want %d", sc.name, res.Entities, n)
				}
				entities += res.Entities
				seconds += res.Seconds
				cpu += res.CPUSeconds
			}
			b.ReportMetric(float64(entities)/seconds, "entities/s")
			if cpu > 0 {
				b.ReportMetric(cpu*1e6/float64(entities), "cpu-µs/entity")
			}
		})
	}
}

// copyStore replaces the store directory dst with a copy of src.
func copyStore(b *testing.B, src, dst string) {
	b.Helper()
	if err := os.RemoveAll(dst); err != nil {
		b.Fatal(err)
	}
	copyTree(b, src, dst) // test_test.go
}
