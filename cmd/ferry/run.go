package main

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
)

func (c *cli) runCmd() *cobra.Command {
	var (
		envFile                              string
		reset, rescan, noSync, acceptDeletes bool
	)
	cmd := &cobra.Command{
		Use:     "run [CONFIG] [PIPE...]",
		GroupID: groupPipelines,
		Short:   "Run pipes once, in dependency order, until nothing changes",
		Long: `Run validates the config (and the connector instances recorded in the store;
CONFIG may then be left out), runs the named pipes (default: all) in
dependency order, writers before readers, and repeats while a pipe still has
unread input. It prints one line per run and exits 1 when a run failed.

Deletions are guarded: a full run whose deletion tracking would delete more
than half of a dataset's live entities (an empty or truncated source) deletes
nothing and fails, and so does a run that trips a configured circuit breaker;
the run log shows what it would have done (would_write, would_delete). When
the changes are right, run the pipe again with --accept-deletes PIPE. See
docs/deletions.md.`,
		Example: `  ferry run examples/demo/config --env examples/demo/env/day1.json
  ferry run config/ crm-person-collect --reset
  ferry run config/ --accept-deletes crm-person-collect
  ferry run                      # every connected connector instance`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: c.completeRunArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			paths, pipeIDs, err := configArgs(args) // CONFIG is optional with connector instances (connect.go)
			if err != nil {
				return err
			}
			if acceptDeletes && len(pipeIDs) == 0 {
				return usagef("run: --accept-deletes applies to the pipes you name: ferry run [CONFIG] --accept-deletes PIPE...")
			}
			plan, _, err := c.loadPlan(ctx, envFile, paths, true)
			if errors.Is(err, errNoInstances) && len(pipeIDs) > 0 {
				return usagef("%q is neither a config file or directory nor a pipe of a connector instance (there are none in %s; ferry connect DIR --system ID)", pipeIDs[0], c.g.data)
			}
			if err != nil {
				return err
			}
			if err := checkPipes(plan, pipeIDs); err != nil {
				return err
			}
			store, err := c.openStore(false, noSync)
			if err != nil {
				return err
			}
			defer store.Close()
			eng := engine.New(store, plan, c.logger())
			if eng.Cluster, err = clusterOf(store); err != nil {
				return failf("%v", err)
			}
			prog := c.progress()
			eng.Progress = prog.update
			recs, err := eng.RunUntilStable(ctx, pipeIDs, engine.RunOptions{Reset: reset, Rescan: rescan, AcceptDeletes: acceptDeletes}, 10)
			prog.done()
			if c.g.json {
				if recs == nil {
					recs = []engine.RunRecord{}
				}
				c.printJSON(recs)
			} else {
				tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PIPE\tSYNC\tREAD\tWRITTEN\tUNCHANGED\tDELETED\tTIME\tERROR\tSHARE")
				for _, r := range recs {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Pipe, r.SyncType, r.Read, would(r.Written, r.WouldWrite), r.Unchanged,
						would(r.Deleted, r.WouldDelete), r.End.Sub(r.Start).Round(time.Millisecond), trunc(r.Error, 60), shareSummary(r.Share))
				}
				tw.Flush()
			}
			if err != nil {
				return failf("%v", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&envFile, "env", "", "JSON file of $ENV(...) values (the process environment is used too)")
	f.BoolVar(&reset, "reset", false, "clear the pipes' offsets first: full runs from the beginning")
	f.BoolVar(&rescan, "rescan", false, "make the first run of each pipe a full run, keeping offsets until it completes")
	f.BoolVar(&noSync, "no-sync", false, "skip fsync on commit (bulk loads only: a power loss can lose or corrupt recent commits)")
	f.BoolVar(&acceptDeletes, "accept-deletes", false, "apply the named pipes' deletions (and changes) beyond the deletion guard and circuit breakers, a share pipe's delete breaker included, once")
	return jsonOK(cmd)
}

// would renders a count with what the run would have done: "0 (would 501)".
func would(did, would int64) string {
	if would == 0 || would == did {
		return strconv.FormatInt(did, 10)
	}
	return fmt.Sprintf("%d (would %d)", did, would)
}

// checkPipes reports pipe ids the plan does not have (exit 2), with a
// suggestion when one is close.
func checkPipes(plan *engine.Plan, ids []string) error {
	var known []string
	for _, p := range plan.Pipes {
		known = append(known, p.ID)
	}
	for _, id := range ids {
		if plan.Pipe(id) == nil {
			if len(known) == 0 {
				return usagef("unknown pipe %q: the config has no pipes", id)
			}
			return usagef("unknown pipe %q%s (the config has %s; see 'ferry pipes CONFIG')", id, didYouMean(id, known), plural(len(known), "pipe"))
		}
	}
	return nil
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
