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

// defaultGCPercent is the garbage collector's GOGC unless GOGC is set. At
// 100 the heap grows to twice what is live before a cycle; a re-sync keeps
// little live (its seen set and the batches in flight, about 30 MB at 1M
// entities) but allocates a batch's text and prepared values per batch, so
// half of its peak anonymous memory was garbage waiting for the next
// cycle. At 50 a 1M unchanged run peaks at about 50 MiB of anonymous
// memory instead of 64 and at about 142 MiB of RSS instead of 156, for
// twice the (cheap: 2-4 ms) cycles; loads are held by the memory limit
// either way. docs/performance.md has the runs.
const defaultGCPercent = 50

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
