package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/engine/secrets"
	"github.com/ferrydata/ferry/pipes"
)

// mountReceivers mounts POST /api/receivers/{pipe}/entities for every
// http_endpoint pipe of the engine's plan and returns how many it
// mounted. Writes need the API bearer token (token) unless the
// pipe allows anonymous writes or checks a webhook signature. Secrets
// (secret() in validation expressions, a "$SECRET(name)" webhook_secret)
// come from the secret store: the secret of the system whose id prefixes
// the pipe id ("<system>-<datatype>-event", as connectors name their
// webhook pipes), else the global one. A receive that changed the pipe's
// dataset signals the pipes reading it through the engine, as a run does.
func (c *cli) mountReceivers(api *httpapi.API, eng *engine.Engine, sched *engine.Scheduler, store secrets.KV, data, token string, logger *slog.Logger) int {
	sec := secrets.Open(store, data, c.getenv)
	plan := eng.Plan
	hs := pipes.Receivers(eng, pipes.ReceiverOptions{
		APIToken: token,
		Logger:   logger,
		Secret: func(ctx context.Context, pipe, name string) (string, error) {
			v, ok, err := sec.Get(ctx, systemOfPipe(plan, pipe), name)
			if err != nil {
				return "", err
			}
			if !ok {
				return "", fmt.Errorf("no secret %q (add it with 'ferry secret')", name)
			}
			plan.Redactor.Add(v) // resolved per request: redact it from now on
			return v, nil
		},
	})
	for pattern, h := range hs {
		api.HandlePublic(pattern, h) // receivers authenticate on their own
	}
	return len(hs)
}

// systemOfPipe returns the id of the longest system id that prefixes
// pipe followed by "-", or "" (global secrets only).
func systemOfPipe(plan *engine.Plan, pipe string) string {
	best := ""
	for id := range plan.Systems {
		if strings.HasPrefix(pipe, id+"-") && len(id) > len(best) {
			best = id
		}
	}
	return best
}
