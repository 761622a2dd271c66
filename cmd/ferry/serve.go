package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/httpapi"
)

// serveOptions are the flags of `ferry serve`. To add one: a field here,
// its flag in serveCmd, and its use in serve.
type serveOptions struct {
	envFile    string
	addr       string
	allowHosts string
	noAuth     bool
	noUI       bool
	budgetMiB  int
}

func (c *cli) serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:     "serve [CONFIG]",
		GroupID: groupPipelines,
		Short:   "Run the scheduler, the HTTP API, metrics and the web browser until SIGINT/SIGTERM",
		Long: `Serve validates the config (and the connector instances recorded in the store;
CONFIG may then be left out), then runs every pipe on its schedule (interval,
cron, signals from the datasets it reads) and serves the HTTP API and webhook
receivers on --addr, with Prometheus metrics at /metrics, health at /healthz
and /ready, and a web dataset browser at /. Every route but the health checks
and webhook receivers needs the API token: FERRY_API_TOKEN, or a token
generated into DATA/api.token on first start and printed once. SIGINT or
SIGTERM stops it cleanly: running pipes abandon their open transaction, so
nothing is half-written. See docs/operations.md.

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
	f.StringVar(&o.addr, "addr", "127.0.0.1:9070", "HTTP listen address (loopback by default; other addresses need the API token)")
	f.StringVar(&o.allowHosts, "allow-host", "", "comma-separated host names the server answers to besides localhost and IP addresses (\".example.com\": subdomains too)")
	f.BoolVar(&o.noAuth, "no-auth", false, "serve without the API token (loopback addresses only; for development)")
	f.BoolVar(&o.noUI, "no-ui", false, "do not serve the web browser at /")
	f.IntVar(&o.budgetMiB, "body-budget-mib", httpapi.DefaultBodyBudget>>20, "MiB of request bodies (webhooks) held at once by all requests; more get 429")
	return cmd
}

func (c *cli) serve(ctx context.Context, paths []string, o serveOptions) error {
	access, err := httpapi.Secure(o.addr, c.g.data, o.noAuth, c.getenv)
	if err != nil {
		return usagef("serve: %v", err)
	}
	shown := false
	defer func() {
		// A token generated for a start that failed before showing it
		// would never be shown: drop it so the next start makes another.
		if access.Created && !shown {
			os.Remove(access.Source)
		}
	}()
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
	if eng.Cluster, err = clusterOf(store); err != nil {
		return failf("serve: %v", err)
	}
	sched := engine.NewScheduler(eng)
	var schedRunning atomic.Bool
	api, err := httpapi.New(eng, httpapi.Options{
		Token: access.Token, NoAuth: access.NoAuth, AllowedHosts: listFlag(o.allowHosts),
		BodyBudget: int64(o.budgetMiB) << 20, UI: !o.noUI, Logger: logger,
		Ready: map[string]func() error{"scheduler": func() error {
			if !schedRunning.Load() {
				return errors.New("not running")
			}
			return nil
		}},
	})
	if err != nil {
		return failf("serve: %v", err)
	}
	c.mountReceivers(api, eng, sched, store, c.g.data, access.Token, logger)

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return usagef("serve: %v", err)
	}
	// ReadTimeout bounds how long a slow sender can hold its share of the
	// body budget; runs started by a request may take longer (no WriteTimeout).
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(c.stderr, "ferry: serving %s, API on http://%s/api/pipes (Ctrl-C to stop)\n", plural(len(plan.Pipes), "pipe"), ln.Addr())
	fmt.Fprint(c.stderr, access.Notice("http://"+ln.Addr().String()))
	shown = true
	plan.Redactor.Add(access.Token) // shown once above, never again
	schedDone := make(chan struct{})
	go func() {
		schedRunning.Store(true)
		defer schedRunning.Store(false)
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
