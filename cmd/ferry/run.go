package main

import (
	"context"
	"fmt"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ferrydata/ferry/engine"
)

func (c *cli) cmdRun(ctx context.Context, args []string) int {
	f := c.newFlags("run").withEnv()
	reset := f.fs.Bool("reset", false, "clear the pipes' offsets first: full runs from the beginning")
	rescan := f.fs.Bool("rescan", false, "make the first run of each pipe a full run, keeping offsets until it completes")
	f.noSync = f.fs.Bool("no-sync", false, "skip fsync on commit (bulk loads only: a power loss can lose or corrupt recent commits)")
	pos, err := f.parse(args)
	if err != nil {
		return exitUsage
	}
	paths, pipeIDs := configArgs(pos) // CONFIG is optional with connector instances (connect.go)
	plan, ok := c.loadPlan(ctx, f, paths, true)
	if !ok {
		return exitUsage
	}
	store, ok := c.openStore(f, false)
	if !ok {
		return exitUsage
	}
	defer store.Close()
	eng := engine.New(store, plan, c.logger())
	if eng.Cluster, err = clusterOf(store); err != nil {
		c.errorf("%v", err)
		return exitFailed
	}
	prog := c.progress()
	eng.Progress = prog.update
	recs, err := eng.RunUntilStable(ctx, pipeIDs, engine.RunOptions{Reset: *reset, Rescan: *rescan}, 10)
	prog.done()
	if *f.json {
		if recs == nil {
			recs = []engine.RunRecord{}
		}
		c.printJSON(recs)
	} else {
		tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PIPE\tSYNC\tREAD\tWRITTEN\tUNCHANGED\tDELETED\tTIME\tERROR")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Pipe, r.SyncType, r.Read, r.Written, r.Unchanged, r.Deleted,
				r.End.Sub(r.Start).Round(time.Millisecond), trunc(r.Error, 60))
		}
		tw.Flush()
	}
	if err != nil {
		c.errorf("%v", err)
		return exitFailed
	}
	return exitOK
}

// progress prints a live line on stderr for runs longer than a second,
// when stderr is a terminal.
type progress struct {
	c       *cli
	mu      sync.Mutex
	start   time.Time
	pipe    string
	pstart  time.Time
	shown   bool
	enabled bool
}

func (c *cli) progress() *progress {
	return &progress{c: c, start: time.Now(), enabled: c.stderrTTY}
}

func (p *progress) update(pipe string, st engine.RunStats) {
	if !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if pipe != p.pipe {
		p.pipe, p.pstart = pipe, now
	}
	el := now.Sub(p.pstart)
	if el < time.Second {
		return
	}
	rate := float64(st.Read) / el.Seconds()
	fmt.Fprintf(p.c.stderr, "\r\x1b[K%s: %d entities read, %d written, %.0f entities/s", pipe, st.Read, st.Written, rate)
	p.shown = true
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.c.stderr, "\r\x1b[K")
	}
}
