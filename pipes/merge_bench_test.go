//go:build unix

package pipes_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/pipes/all"
)

// mergeBenchEnv loads two datasets of n entities each, of which every
// other one has a partner in the other dataset, and runs the merge once.
func mergeBenchEnvT(b testing.TB, n int) (*engine.Engine, engine.Store) {
	b.Helper()
	dir := b.TempDir()
	eng, s := enginetest.Engine(b, all.Registry(), dir, `[{"_id":"g","type":"pipe",
	  "source":{"type":"merge","version":2,"datasets":["crm p","erp c"],
	    "equality":[["eq","p.orgnr","c.org_no"],["eq","p.email","c.mail"]]}}]`)
	load := func(ds string, f func(i int) string) {
		for from := 0; from < n; from += 10000 {
			var ents []string
			for i := from; i < min(n, from+10000); i++ {
				ents = append(ents, f(i))
			}
			putJSON(b, s, ds, 1, "["+strings.Join(ents, ",")+"]")
		}
	}
	load("crm", func(i int) string {
		return fmt.Sprintf(`{"_id":"%d","name":"Company %d","orgnr":"%d","email":"c%d@example.com","city":"Oslo"}`, i, i, 900000+i, i)
	})
	load("erp", func(i int) string {
		org := fmt.Sprintf(`"%d"`, 900000+i)
		if i%2 == 1 {
			org = "null"
		}
		return fmt.Sprintf(`{"_id":"K-%d","title":"COMPANY %d","org_no":%s,"mail":"k%d@example.com","terms":30}`, i, i, org, i)
	})
	return eng, s
}

// cpuTime is the process's user plus system CPU time: the benchmarks
// report it per entity besides the wall time, because on a shared
// machine it moves much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMergeInitial measures a first (full) run over 2 × n entities.
func BenchmarkMergeInitial(b *testing.B) {
	const n = 20000
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		eng, _ := mergeBenchEnvT(b, n)
		b.StartTimer()
		c := cpuTime()
		if _, err := eng.Run(context.Background(), "g", engine.RunOptions{}); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(2*n), "ns/input")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(2*n), "cpu-ns/input")
}

// BenchmarkMergeIncremental measures incremental runs over 2 × 20,000
// merged entities, each reading 100 changed entities: 50 content
// changes, 25 that move to another cluster and 25 that leave one.
func BenchmarkMergeIncremental(b *testing.B) {
	const n, changes = 20000, 100
	eng, s := mergeBenchEnvT(b, n)
	ctx := context.Background()
	if _, err := eng.Run(ctx, "g", engine.RunOptions{}); err != nil {
		b.Fatal(err)
	}
	round := 0
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		round++
		var crm, erp []string
		for j := range changes {
			i := (round*7919 + j*131) % n
			switch {
			case j < 50:
				crm = append(crm, fmt.Sprintf(`{"_id":"%d","name":"Company %d v%d","orgnr":"%d","email":"c%d@example.com"}`, i, i, round, 900000+i, i))
			case j < 75:
				other := (i + 2) % n
				erp = append(erp, fmt.Sprintf(`{"_id":"K-%d","title":"x","org_no":"%d","mail":"k%d@example.com","r":%d}`, i, 900000+other, i, round))
			default:
				erp = append(erp, fmt.Sprintf(`{"_id":"K-%d","title":"x","org_no":null,"mail":"k%d@example.com","r":%d}`, i, i, round))
			}
		}
		putJSON(b, s, "crm", 1, "["+strings.Join(crm, ",")+"]")
		putJSON(b, s, "erp", 1, "["+strings.Join(erp, ",")+"]")
		b.StartTimer()
		c := cpuTime()
		rec, err := eng.Run(ctx, "g", engine.RunOptions{})
		if err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c
		if rec.SyncType != "incremental" {
			b.Fatalf("run = %+v", rec)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/changes, "ns/change")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/changes, "cpu-ns/change")
}
