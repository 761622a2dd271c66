// Command ferry is Ferry's command-line interface: validate and run
// configs, serve the scheduler and HTTP API, inspect datasets and pipes,
// expand connectors and measure throughput.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultMemoryLimit is the Go runtime's soft memory limit unless
// GOMEMLIMIT is set: the runner keeps little live data (40-60 MB at its
// peak in a load: one transaction's versions, one merge step of the index
// and bbolt's page buffers for them), and without a limit the garbage
// collector lets the heap grow to twice that. docs/performance.md has the
// measurements behind the figure.
const defaultMemoryLimit = 96 << 20

// defaultGCPercent is the garbage collector's GOGC unless GOGC is set;
// nearGCPercent is the one the process switches to while its store is
// under pressure: it has had to release its whole mapping, or could not
// keep a dataset's index runs mapped, to stay under the resident bound
// (boltstore.Options.Pressure), until boltstore.PressureQuiet has passed
// without (gcPressure).
//
// At 100 the heap grows to twice what is live before a cycle. A 1M load
// keeps 15-35 MB live: at 50 it ran ~285 collections, and the committer,
// which bounds a load, waited behind them. With this switch, alternated
// with 50 throughout on the same build: loads 217k-253k/s against
// 199k-218k, jq 253k-255k against 194k-218k, unchanged 995k against 950k,
// at 10-25% less CPU. Where the index must stay mapped beside the heap (a
// 1M re-sync writing 10%) or cannot (10M), more heap is less index: 10M
// loads at 100 throughout peaked at 148.18-153.02 MiB under a 150 MiB
// bound (six loads, four past it), with the switch at 146.02-146.21 (at 50 throughout,
// 146.62-146.90), and re-syncs writing 10% at 1M ran 361k-422k/s at 100
// throughout against 406k-414k with the switch and 423k-438k at 50
// (within this machine's noise of each other). docs/performance.md has
// the runs.
const (
	defaultGCPercent = 100
	nearGCPercent    = 50
)

// gcPressure returns the store's Options.Pressure that lowers GOGC while
// the store is under pressure (defaultGCPercent, nearGCPercent), or nil
// when GOGC is set: the user's choice then holds throughout.
func gcPressure() func(near bool) {
	if os.Getenv("GOGC") != "" {
		return nil
	}
	return func(near bool) {
		if near {
			debug.SetGCPercent(nearGCPercent)
		} else {
			debug.SetGCPercent(defaultGCPercent)
		}
	}
}

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := newCLI(os.Stdout, os.Stderr)
	os.Exit(c.run(ctx, os.Args[1:]))
}
