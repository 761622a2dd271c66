package main

import (
	"context"

	"github.com/ferrydata/ferry/pipes/rest/sharebench"
)

// benchShareEntities is the size of the share scenario: the write-back
// target is 10,000 changed entities (a fixed size; -n sizes the others).
const benchShareEntities = 10_000

// benchShare runs the "share" scenario (package sharebench): 10,000
// changed customers written back to a fake API on 127.0.0.1, each with
// its lookup, fsync on. EntitiesPerS is updates per second; the fake
// API runs in the same process and its CPU counts.
func benchShare(ctx context.Context, dir string, noSync bool) (*benchResult, error) {
	r, err := sharebench.Run(ctx, dir, benchShareEntities, !noSync)
	if err != nil {
		return nil, err
	}
	return &benchResult{Entities: int(r.Entities), Seconds: r.Seconds, EntitiesPerS: r.UpdatesPerS(), Written: r.Updated,
		FsyncOnCommit: !noSync, Requests: r.Requests, CPUSeconds: r.CPUSeconds}, nil
}
