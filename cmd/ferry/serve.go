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

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/httpapi"
)

func (c *cli) cmdServe(ctx context.Context, args []string) int {
	f := c.newFlags("serve").withEnv()
	addr := f.fs.String("addr", "127.0.0.1:9070", "HTTP listen address (loopback by default; other addresses need the API token)")
	allowHosts := f.fs.String("allow-host", "", "comma-separated host names the server answers to besides localhost and IP addresses (\".example.com\": subdomains too)")
	noAuth := f.fs.Bool("no-auth", false, "serve without the API token (loopback addresses only; for development)")
	noUI := f.fs.Bool("no-ui", false, "do not serve the web browser at /")
	budget := f.fs.Int("body-budget-mib", httpapi.DefaultBodyBudget>>20, "MiB of request bodies (webhooks) held at once by all requests; more get 429")
	pos, err := f.parse(args)
	if err != nil {
		return exitUsage
	}
	if len(pos) > 1 {
		c.errorf("serve: give one config file or directory (or none, to serve the connector instances only)")
		return exitUsage
	}
	access, err := httpapi.Secure(*addr, *f.data, *noAuth, c.getenv)
	if err != nil {
		c.errorf("serve: %v", err)
		return exitUsage
	}
	shown := false
	defer func() {
		// A token generated for a start that failed before showing it
		// would never be shown: drop it so the next start makes another.
		if access.Created && !shown {
			os.Remove(access.Source)
		}
	}()
	plan, ok := c.loadPlan(ctx, f, pos, false)
	if !ok {
		return exitUsage
	}
	store, ok := c.openStore(f, false)
	if !ok {
		return exitUsage
	}
	defer store.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	eng := engine.New(store, plan, logger)
	sched := engine.NewScheduler(eng)
	var schedRunning atomic.Bool
	api, err := httpapi.New(eng, httpapi.Options{
		Token: access.Token, NoAuth: access.NoAuth, AllowedHosts: listFlag(*allowHosts),
		BodyBudget: int64(*budget) << 20, UI: !*noUI, Logger: logger,
		Ready: map[string]func() error{"scheduler": func() error {
			if !schedRunning.Load() {
				return errors.New("not running")
			}
			return nil
		}},
	})
	if err != nil {
		c.errorf("serve: %v", err)
		return exitFailed
	}
	c.mountReceivers(api, eng, sched, store, *f.data, access.Token, logger)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		c.errorf("serve: %v", err)
		return exitUsage
	}
	// ReadTimeout bounds how long a slow sender can hold its share of the
	// body budget; runs started by a request may take longer (no WriteTimeout).
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(c.stderr, "ferry: serving %d pipes, API on http://%s/api/pipes (Ctrl-C to stop)\n", len(plan.Pipes), ln.Addr())
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
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			c.errorf("serve: %v", err)
		}
	}
	cancel()
	fmt.Fprintln(c.stderr, "ferry: stopping; running pipes abandon their open transaction")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelShutdown()
	srv.Shutdown(shutdownCtx)
	<-schedDone
	return exitOK
}
