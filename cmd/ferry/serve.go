package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/httpapi"
)

// serveOptions are the flags of `ferry serve`. To add one: a field here,
// its flag in serveCmd, and its use in serve.
type serveOptions struct {
	envFile string
	addr    string
}

func (c *cli) serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:     "serve [CONFIG]",
		GroupID: groupPipelines,
		Short:   "Run the scheduler and the HTTP API until SIGINT/SIGTERM",
		Long: `Serve validates the config (and the connector instances recorded in the store;
CONFIG may then be left out), then runs every pipe on its schedule (interval,
cron, signals from the datasets it reads) and serves the HTTP API and webhook
receivers on --addr. SIGINT or SIGTERM stops it cleanly: running pipes
abandon their open transaction, so nothing is half-written.

The store is locked while serve runs; use the HTTP API instead of the
inspection commands.`,
		Example: `  ferry serve examples/demo/config --env examples/demo/env/day1.json
  ferry --data /var/lib/ferry serve config/ --addr 127.0.0.1:9070 --log-format json`,
		Args: usageArgs(0, 1, "give one config file or directory (or none, to serve the connector instances only)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.serve(cmd.Context(), args, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.envFile, "env", "", "JSON file of $ENV(...) values (the process environment is used too)")
	f.StringVar(&o.addr, "addr", "127.0.0.1:9070", "HTTP API listen address (loopback by default; the API has no authentication)")
	return cmd
}

func (c *cli) serve(ctx context.Context, paths []string, o serveOptions) error {
	plan, _, err := c.loadPlan(ctx, o.envFile, paths, false)
	if err != nil {
		return err
	}
	store, err := c.openStore(false, false)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	logger := c.loggerAt(slog.LevelInfo)
	eng := engine.New(store, plan, logger)
	sched := engine.NewScheduler(eng)
	api := httpapi.New(eng)
	c.mountReceivers(api, eng, sched, store, c.g.data, logger)

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return usagef("serve: %v", err)
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(c.stderr, "ferry: serving %s, API on http://%s/api/pipes (Ctrl-C to stop)\n", plural(len(plan.Pipes), "pipe"), ln.Addr())
	schedDone := make(chan struct{})
	go func() {
		sched.Run(ctx)
		close(schedDone)
	}()
	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			serveErr = failf("serve: %v", err)
		}
	}
	cancel()
	fmt.Fprintln(c.stderr, "ferry: stopping; running pipes abandon their open transaction")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelShutdown()
	srv.Shutdown(shutdownCtx)
	<-schedDone
	return serveErr
}
