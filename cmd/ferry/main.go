// Command ferry is Ferry's command-line interface: validate and run
// configs, serve the scheduler and HTTP API, inspect datasets and pipes,
// expand connectors and measure throughput.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := newCLI(os.Stdout, os.Stderr)
	os.Exit(c.run(ctx, os.Args[1:]))
}
