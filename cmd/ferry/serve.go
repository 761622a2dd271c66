package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/httpapi"
)

func (c *cli) cmdServe(ctx context.Context, args []string) int {
	f := c.newFlags("serve").withEnv()
	addr := f.fs.String("addr", "127.0.0.1:9070", "HTTP API listen address (loopback by default; the API has no authentication)")
	pos, err := f.parse(args)
	if err != nil {
		return exitUsage
	}
	if len(pos) > 1 {
		c.errorf("serve: give one config file or directory (or none, to serve the connector instances only)")
		return exitUsage
	}
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
	if eng.Cluster, err = clusterOf(store); err != nil {
		c.errorf("serve: %v", err)
		return exitFailed
	}
	sched := engine.NewScheduler(eng)
	api := httpapi.New(eng)
	c.mountReceivers(api, eng, sched, store, *f.data, logger)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		c.errorf("serve: %v", err)
		return exitUsage
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(c.stderr, "ferry: serving %d pipes, API on http://%s/api/pipes (Ctrl-C to stop)\n", len(plan.Pipes), ln.Addr())
	schedDone := make(chan struct{})
	go func() {
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
