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
// GOMEMLIMIT is set: the runner keeps little live data, and without a limit
// the garbage collector lets the heap grow to twice the peak of bbolt's
// per-transaction page buffers.
const defaultMemoryLimit = 152 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := newCLI(os.Stdout, os.Stderr)
	os.Exit(c.run(ctx, os.Args[1:]))
}
