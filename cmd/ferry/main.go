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

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := newCLI(os.Stdout, os.Stderr)
	os.Exit(c.run(ctx, os.Args[1:]))
}
